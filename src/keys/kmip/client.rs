//! The KMIP operations sectorcrypt uses, against a list of servers tried in order.
//!
//! Each call opens a session on the first server that completes a handshake, runs its requests on it
//! and closes it. Servers that cannot be reached or time out are skipped (failover); a server that
//! answers decides, even when it refuses. When no server answers, the error is the most telling one:
//! a TLS failure (permanent: the configuration is wrong) before a timeout or a refused connection
//! (transient: the servers may come back).

use super::config::{KmipConfig, read_named};
use super::conn::{ConnError, Session};
use super::messages::{self, Failure, KeyState, Operation, RevocationReason, reason};
use super::ttlv::Item;
use crate::error::{Error, ProviderFault, Result};
use crate::keys::material::Kek;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// A KMIP client for the servers of one configuration.
pub struct KmipClient {
    config: KmipConfig,
    tls: Arc<rustls::ClientConfig>,
}

impl core::fmt::Debug for KmipClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KmipClient")
            .field("config", &self.config.path)
            .field("servers", &self.config.servers)
            .finish()
    }
}

/// What `keys kmip check` reports about the server that answered.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// The server (`host:port`) that answered.
    pub server: String,
    /// The TLS version negotiated.
    pub tls: String,
    /// The KMIP version this client speaks to it.
    pub protocol: (i32, i32),
    /// Every KMIP version the server offers.
    pub server_versions: Vec<(i32, i32)>,
    /// The server's vendor identification, if it says.
    pub vendor: Option<String>,
    /// Servers that came before it and did not answer, with why.
    pub skipped: Vec<String>,
}

fn tls_config(config: &KmipConfig) -> Result<Arc<rustls::ClientConfig>> {
    let path = &config.path;
    let bad = |what: &str, why: String| super::config::config_error(path, format!("{what}: {why}"));
    let ca = read_named(path, "the CA file", &config.ca, false)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        let cert = cert.map_err(|e| bad("the CA file", e.to_string()))?;
        roots.add(cert).map_err(|e| bad("the CA file", e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("the CA file", format!("{} holds no certificate", config.ca.display())));
    }
    let chain = read_named(path, "the client certificate", &config.client_cert, false)?;
    let chain = CertificateDer::pem_slice_iter(&chain)
        .collect::<core::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("the client certificate", e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(
            "the client certificate",
            format!("{} holds no certificate", config.client_cert.display()),
        ));
    }
    let key = read_named(path, "the client key", &config.client_key, true)?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| bad("the client key", e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| bad("TLS", e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad("the client certificate and key", e.to_string()))?;
    Ok(Arc::new(tls))
}

impl KmipClient {
    /// A client for `config`: reads and checks the CA, the client certificate and its key (which
    /// neither group nor others may read). Connects to nothing yet.
    pub fn new(config: KmipConfig) -> Result<KmipClient> {
        let tls = tls_config(&config)?;
        Ok(KmipClient { config, tls })
    }

    /// The configuration.
    pub fn config(&self) -> &KmipConfig {
        &self.config
    }

    fn error(&self, fault: ProviderFault, reason: String) -> Error {
        Error::KeyProvider { provider: self.config.provider_name(), fault, reason }
    }

    /// A session on the first server that answers, with the failures of those skipped.
    fn session(&self) -> Result<(Session, String, Vec<String>)> {
        let mut skipped = Vec::new();
        let mut worst: Option<(ProviderFault, String)> = None;
        for server in &self.config.servers {
            let err = match Session::connect(&self.tls, server, self.config.timeout) {
                Ok(session) => return Ok((session, server.clone(), skipped)),
                Err(err) => err,
            };
            let fault = match err {
                ConnError::Unreachable(_) | ConnError::Io(_) => ProviderFault::Unreachable,
                ConnError::TimedOut => ProviderFault::TimedOut,
                ConnError::UntrustedServer(_) => ProviderFault::UntrustedServer,
                ConnError::Rejected(_) => ProviderFault::Denied,
                ConnError::Tls(_) | ConnError::Protocol(_) => ProviderFault::Misconfigured,
            };
            let line = format!("key server {server}: {err}");
            // A permanent failure says more than a transient one; among equals the first is kept.
            let permanent = !matches!(fault, ProviderFault::Unreachable | ProviderFault::TimedOut);
            if worst.as_ref().is_none_or(|(f, _)| {
                permanent && matches!(f, ProviderFault::Unreachable | ProviderFault::TimedOut)
            }) {
                worst = Some((fault, line.clone()));
            }
            skipped.push(line);
        }
        let (fault, _) = worst.expect("at least one server is configured");
        let reason = if skipped.len() == 1 {
            skipped.remove(0)
        } else {
            format!("no key server could be used: {}", skipped.join("; "))
        };
        Err(self.error(fault, reason))
    }

    /// Runs one request on `session`, turning every failure into the provider's error.
    fn call(
        &self,
        session: &mut Session,
        server: &str,
        request: Item,
        op: Operation,
        id: Option<&str>,
    ) -> Result<Item> {
        match session.call(&request, op) {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(failure)) => Err(self.failure(server, op, id, failure)),
            Err(err) => {
                let fault = match err {
                    ConnError::TimedOut => ProviderFault::TimedOut,
                    ConnError::Rejected(_) => ProviderFault::Denied,
                    ConnError::Protocol(_) | ConnError::Tls(_) | ConnError::UntrustedServer(_) => {
                        ProviderFault::Misconfigured
                    }
                    ConnError::Unreachable(_) | ConnError::Io(_) => ProviderFault::Unreachable,
                };
                Err(self.error(fault, format!("key server {server}: {err}")))
            }
        }
    }

    fn failure(&self, server: &str, op: Operation, id: Option<&str>, failure: Failure) -> Error {
        let what = match id {
            Some(id) => format!("{op:?} of key {id}"),
            None => format!("{op:?}"),
        };
        let fault = match failure.reason {
            Some(reason::ITEM_NOT_FOUND) => ProviderFault::NotFound,
            Some(reason::PERMISSION_DENIED | reason::AUTHENTICATION_NOT_SUCCESSFUL) => ProviderFault::Denied,
            // Failures on the server's side, which may pass (PyKMIP answers so while it shuts down).
            Some(
                reason::GENERAL_FAILURE
                | reason::INTERNAL_SERVER_ERROR
                | reason::SERVER_LIMIT_EXCEEDED
                | reason::PROTECTION_STORAGE_UNAVAILABLE,
            ) => ProviderFault::ServerFailure,
            _ => ProviderFault::Misconfigured,
        };
        let why = match fault {
            ProviderFault::NotFound => "the server has no such key (destroyed, or never created there)".to_owned(),
            ProviderFault::Denied => "the server denies it to this client certificate (a key belongs to the client that created it)".to_owned(),
            ProviderFault::ServerFailure => format!("the server failed (result reason {:?}); it may recover", failure.reason),
            _ => format!("the server refused it (result reason {:?})", failure.reason),
        };
        let message =
            if failure.message.is_empty() { String::new() } else { format!(": {:?}", failure.message) };
        self.error(fault, format!("key server {server}: {what}: {why}{message}"))
    }

    /// Creates an AES-256 key named `name` and activates it; returns its unique identifier.
    pub fn create_key(&self, name: &str) -> Result<String> {
        let (mut session, server, _) = self.session()?;
        let payload = self.call(&mut session, &server, messages::create(name), Operation::Create, None)?;
        let id = messages::payload_id(&payload).map_err(|why| self.malformed(&server, why))?;
        self.call(
            &mut session,
            &server,
            messages::by_id(Operation::Activate, &id),
            Operation::Activate,
            Some(&id),
        )?;
        Ok(id)
    }

    /// The unique identifiers of the symmetric keys named `name`.
    pub fn locate(&self, name: &str) -> Result<Vec<String>> {
        let (mut session, server, _) = self.session()?;
        let payload = self.call(&mut session, &server, messages::locate(name), Operation::Locate, None)?;
        Ok(messages::located_ids(&payload))
    }

    /// A key's state.
    pub fn state(&self, id: &str) -> Result<KeyState> {
        let (mut session, server, _) = self.session()?;
        self.state_on(&mut session, &server, id)
    }

    fn state_on(&self, session: &mut Session, server: &str, id: &str) -> Result<KeyState> {
        let request = messages::by_id(Operation::GetAttributes, id);
        let payload = self.call(session, server, request, Operation::GetAttributes, Some(id))?;
        messages::state(&payload).map_err(|why| self.malformed(server, why))
    }

    /// The key material of an Active AES-256 key. Any other state is refused with an error that names
    /// it ([`ProviderFault::Revoked`]): servers (PyKMIP among them) hand out material in any state, so
    /// the state is asked first.
    pub fn get_key(&self, id: &str) -> Result<Kek> {
        let (mut session, server, _) = self.session()?;
        let state = self.state_on(&mut session, &server, id)?;
        if state != KeyState::Active {
            let fault = if state == KeyState::PreActive {
                ProviderFault::Misconfigured
            } else {
                ProviderFault::Revoked
            };
            return Err(self.error(
                fault,
                format!("key server {server}: key {id} is {}, not Active: it may not be used", state.name()),
            ));
        }
        let request = messages::by_id(Operation::Get, id);
        let payload = self.call(&mut session, &server, request, Operation::Get, Some(id))?;
        let material = messages::symmetric_key(&payload).map_err(|why| self.malformed(&server, why))?;
        Kek::from_bytes(&material)
    }

    /// Revokes a key (it becomes Compromised or Deactivated, as `reason` says).
    pub fn revoke(&self, id: &str, reason: RevocationReason) -> Result<()> {
        let (mut session, server, _) = self.session()?;
        self.call(&mut session, &server, messages::revoke(id, reason), Operation::Revoke, Some(id)).map(drop)
    }

    /// Destroys a key (the server may require it to be revoked first).
    pub fn destroy(&self, id: &str) -> Result<()> {
        let (mut session, server, _) = self.session()?;
        self.call(
            &mut session,
            &server,
            messages::by_id(Operation::Destroy, id),
            Operation::Destroy,
            Some(id),
        )
        .map(drop)
    }

    /// Connects, and asks the server its versions and vendor.
    pub fn check(&self) -> Result<ServerInfo> {
        let (mut session, server, skipped) = self.session()?;
        let versions = self.call(
            &mut session,
            &server,
            messages::discover_versions(),
            Operation::DiscoverVersions,
            None,
        )?;
        let server_versions = messages::versions(&versions);
        if !server_versions.is_empty() && !server_versions.contains(&messages::VERSION) {
            return Err(self.error(
                ProviderFault::Misconfigured,
                format!(
                    "key server {server} does not speak KMIP {}.{}",
                    messages::VERSION.0,
                    messages::VERSION.1
                ),
            ));
        }
        // Query is optional in KMIP: a server that refuses it is still usable.
        let vendor = self
            .call(&mut session, &server, messages::query(), Operation::Query, None)
            .ok()
            .and_then(|payload| messages::vendor(&payload));
        Ok(ServerInfo {
            tls: session.tls_version(),
            server,
            protocol: messages::VERSION,
            server_versions,
            vendor,
            skipped,
        })
    }

    fn malformed(&self, server: &str, why: &str) -> Error {
        self.error(ProviderFault::Misconfigured, format!("key server {server}: unexpected answer: {why}"))
    }
}
