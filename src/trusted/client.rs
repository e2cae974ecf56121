//! HTTPS to the attestation authorities (ureq over rustls, trusting only the configured CA): one JSON
//! request to one replica, its refusal read from the body's code, and every failure to get an answer
//! sorted from a refusal, since only the former lets the host try the next replica or its kept keys.

use super::protocol::Refusal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// Why a request got no answer, or which refusal it got.
#[derive(Debug)]
#[non_exhaustive]
pub enum CallError {
    /// Nothing answered (connection refused, reset, DNS): transient.
    Unreachable(String),
    /// No answer in time: transient.
    TimedOut(String),
    /// The TLS handshake failed: the authority's certificate is not trusted (or not its name).
    Untrusted(String),
    /// The answer is not the protocol's.
    Garbled(String),
    /// The authority refused.
    Refused(Refusal),
}

/// The authorities a host may ask.
#[derive(Debug)]
pub struct AuthorityClient {
    urls: Vec<String>,
    agent: ureq::Agent,
}

impl AuthorityClient {
    /// A client for `urls` (base URLs), trusting the CA certificates in `ca_pem`.
    pub fn new(urls: Vec<String>, ca_pem: &[u8], timeout: Duration) -> Result<AuthorityClient, String> {
        let mut roots = Vec::new();
        for item in ureq::tls::parse_pem(ca_pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => roots.push(cert),
                Ok(_) => {}
                Err(err) => return Err(format!("the CA file is not PEM: {err}")),
            }
        }
        if roots.is_empty() {
            return Err("the CA file holds no certificate".into());
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .https_only(true)
            .build()
            .new_agent();
        Ok(AuthorityClient { urls, agent })
    }

    /// The authorities' base URLs, in the order they are tried.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// POSTs `body` to `path` on the authority `replica` and reads its answer.
    pub fn post<Q: Serialize, A: DeserializeOwned>(
        &self,
        replica: usize,
        path: &str,
        body: &Q,
    ) -> Result<A, CallError> {
        let url = format!("{}{path}", self.urls[replica]);
        let mut response = self.agent.post(&url).send_json(body).map_err(|err| classify(&url, err))?;
        let status = response.status().as_u16();
        let body = response.body_mut();
        if status == 200 {
            return body.read_json::<A>().map_err(|err| CallError::Garbled(format!("{url}: {err}")));
        }
        match body.read_json::<Refusal>() {
            Ok(refusal) => Err(CallError::Refused(refusal)),
            Err(_) => Err(CallError::Garbled(format!("{url}: HTTP status {status} without a refusal"))),
        }
    }
}

fn classify(url: &str, err: ureq::Error) -> CallError {
    let text = format!("{url}: {err}");
    match err {
        ureq::Error::Timeout(_) => CallError::TimedOut(text),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => CallError::Untrusted(text),
        ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::InvalidData => CallError::Untrusted(text),
        ureq::Error::Json(_) | ureq::Error::Protocol(_) => CallError::Garbled(text),
        _ => CallError::Unreachable(text),
    }
}
