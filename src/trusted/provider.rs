//! The trusted key provider (`trusted:CONFIG`): KEKs released by an attestation authority only to a
//! host whose TPM proves it runs a known base image.
//!
//! Attestation (once, then again when the token expires): the host sends its EK (and EK certificate)
//! and a fresh AK; the authority seals a nonce to both by MakeCredential; the TPM recovers it by
//! ActivateCredential, which only the TPM of that EK holding that AK can do, and quotes the PCRs over
//! it; the authority checks the quote and the PCRs against its base images and signs a token naming
//! this host's AK. Each key request then carries the token *and* a quote by that AK over a fresh nonce,
//! so a token copied to another host, or a replayed quote, gets nothing. The messages are in
//! [`super::protocol`]; the flow, with a diagram, in `docs/TRUSTED.md`.
//!
//! Authorities are tried in order: one that does not answer passes the request to the next (tokens
//! are valid at every replica). When none answers, a KEK kept by key persistence serves, with a
//! notice; a refusal (unknown image, untrusted EK) is final and nothing kept is used for it.

use super::client::{AuthorityClient, CallError};
use super::config::TrustedConfig;
use super::host::{self, AttestationKey};
use super::protocol::{
    AttestChallenge, Enrol, Evidence, KeyChallenge, KeyOp, KeyReply, KeyRequest, RefusalCode, Token,
};
use super::{AttestError, ImageInfo};
use crate::error::{Error, ProviderFault, Result};
use crate::keys::persist::{Kept, KeyStore};
use crate::keys::{Kek, KeyProvider, KeyRef, ProviderKind, check_id, kmip::read_for};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token is renewed this long before it expires, so a request never carries one about to lapse.
const RENEW_MARGIN: Duration = Duration::from_secs(10);

/// KEKs from attestation authorities.
#[derive(Debug)]
pub struct TrustedProvider {
    config: TrustedConfig,
    client: AuthorityClient,
    kept: Kept,
    session: Mutex<Session>,
}

#[derive(Debug, Default)]
struct Session {
    ak: Option<AttestationKey>,
    token: Option<(String, Instant, ImageInfo)>,
    /// The replica that answered last: asked first next time.
    replica: usize,
}

/// Why one replica could not serve a request.
enum Failure {
    /// Try the next one.
    NoAnswer(CallError),
    /// Final.
    Error(Error),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        Failure::Error(err)
    }
}

impl TrustedProvider {
    /// Opens the provider a `trusted:CONFIG` file describes: reads it and the CA. Contacts nothing yet.
    pub fn open(config: impl AsRef<Path>) -> Result<TrustedProvider> {
        let config = TrustedConfig::load(config)?;
        let name = config.provider_name();
        let ca = read_for(&name, "the CA file", &config.ca, false)?;
        let client =
            AuthorityClient::new(config.authorities.clone(), &ca, config.timeout).map_err(|why| {
                Error::KeyProvider {
                    provider: name.clone(),
                    fault: ProviderFault::Misconfigured,
                    reason: why,
                }
            })?;
        let kept = Kept::new(config.persistence.as_ref().map(KeyStore::new));
        Ok(TrustedProvider { config, client, kept, session: Mutex::default() })
    }

    /// The configuration.
    pub fn config(&self) -> &TrustedConfig {
        &self.config
    }

    /// The persistence store, if configured.
    pub fn store(&self) -> Option<&KeyStore> {
        self.kept.store()
    }

    /// Attests now (whatever token is held) and returns the image the authority found.
    pub fn attest(&self) -> Result<ImageInfo> {
        let mut session = self.lock();
        session.token = None;
        self.on_replicas(&mut session, |this, session, replica| this.attest_on(session, replica))?;
        Ok(session.token.as_ref().map(|(_, _, image)| image.clone()).expect("attested"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn error(&self, fault: ProviderFault, reason: String) -> Error {
        Error::KeyProvider { provider: self.name(), fault, reason }
    }

    fn tpm_error(&self, err: AttestError) -> Error {
        let fault = match err {
            AttestError::Tpm { unavailable: true, .. } => ProviderFault::Unreachable,
            _ => ProviderFault::Misconfigured,
        };
        self.error(fault, format!("this host's TPM ({}): {err}", self.config.tcti))
    }

    fn refused(&self, replica: usize, call: CallError) -> Failure {
        let url = &self.client.urls()[replica];
        match call {
            CallError::Refused(refusal) => {
                let fault = match refusal.code {
                    RefusalCode::KeyNotFound => ProviderFault::NotFound,
                    RefusalCode::KeyRevoked => ProviderFault::Revoked,
                    RefusalCode::KeyServer | RefusalCode::Internal => ProviderFault::Unreachable,
                    _ => ProviderFault::Denied,
                };
                Failure::Error(self.error(fault, format!("the authority {url} refused: {}", refusal.message)))
            }
            CallError::Untrusted(why) => Failure::Error(self.error(
                ProviderFault::UntrustedServer,
                format!(
                    "the authority's TLS certificate is not signed by the CA in {} ({why})",
                    self.config.ca.display()
                ),
            )),
            other => Failure::NoAnswer(other),
        }
    }

    /// Runs `step` on each replica in turn, from the one that answered last, until one answers.
    fn on_replicas<T>(
        &self,
        session: &mut Session,
        mut step: impl FnMut(&Self, &mut Session, usize) -> core::result::Result<T, Failure>,
    ) -> Result<T> {
        let count = self.client.urls().len();
        let mut silent = Vec::new();
        let mut timed_out = true;
        for offset in 0..count {
            let replica = (session.replica + offset) % count;
            match step(self, session, replica) {
                Ok(out) => {
                    session.replica = replica;
                    return Ok(out);
                }
                Err(Failure::Error(err)) => return Err(err),
                Err(Failure::NoAnswer(call)) => {
                    timed_out &= matches!(call, CallError::TimedOut(_));
                    silent.push(match call {
                        CallError::Unreachable(why) | CallError::TimedOut(why) | CallError::Garbled(why) => {
                            why
                        }
                        other => format!("{other:?}"),
                    });
                }
            }
        }
        let fault = if timed_out { ProviderFault::TimedOut } else { ProviderFault::Unreachable };
        Err(self.error(fault, format!("no attestation authority answers ({})", silent.join("; "))))
    }

    fn post<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        replica: usize,
        path: &str,
        body: &Q,
    ) -> core::result::Result<A, Failure> {
        self.client.post(replica, path, body).map_err(|call| self.refused(replica, call))
    }

    /// A quote by the session's AK over `nonce`, as evidence for `challenge`.
    fn evidence(
        &self,
        ak: &AttestationKey,
        challenge: String,
        nonce: &[u8],
        pcrs: &[u8],
    ) -> Result<Evidence> {
        let quote = host::quote(&self.config.tcti, ak, nonce, pcrs).map_err(|e| self.tpm_error(e))?;
        Ok(Evidence {
            challenge,
            ak_public: ak.public.clone(),
            attest: quote.attest,
            signature: quote.signature,
            pcr_values: quote.pcrs.iter().map(|(_, value)| hex::encode(value)).collect(),
        })
    }

    fn attest_on(&self, session: &mut Session, replica: usize) -> core::result::Result<(), Failure> {
        let tcti = &self.config.tcti;
        if session.ak.is_none() {
            session.ak = Some(host::create_ak(tcti).map_err(|e| self.tpm_error(e))?);
        }
        let ak = session.ak.as_ref().expect("made above");
        let identity = host::identity(tcti).map_err(|e| self.tpm_error(e))?;
        let enrol = Enrol {
            ek_public: identity.ek_public,
            ek_certificate: identity.ek_certificate,
            ak_public: ak.public.clone(),
        };
        let challenge: AttestChallenge = self.post(replica, "/v1/attest/challenge", &enrol)?;
        let nonce = host::activate(tcti, ak, &challenge.id_object, &challenge.encrypted_secret)
            .map_err(|e| self.tpm_error(e))?;
        let evidence = self.evidence(ak, challenge.challenge, &nonce, &challenge.pcrs)?;
        let token: Token = self.post(replica, "/v1/attest", &evidence)?;
        let expires = Instant::now() + Duration::from_secs(token.expires_in);
        session.token = Some((token.token, expires, token.image));
        self.kept.check_once(&self.name());
        Ok(())
    }

    /// One key request on `replica`, attesting first when no valid token is held, and once more when
    /// the authority finds the token expired.
    fn key_on(
        &self,
        session: &mut Session,
        replica: usize,
        op: &KeyOp,
    ) -> core::result::Result<KeyReply, Failure> {
        let mut attested_now = false;
        loop {
            let fresh =
                matches!(&session.token, Some((_, expires, _)) if Instant::now() + RENEW_MARGIN < *expires);
            if !fresh {
                self.attest_on(session, replica)?;
                attested_now = true;
            }
            let token = session.token.as_ref().map(|(token, _, _)| token.clone()).expect("attested");
            let ak = session.ak.as_ref().expect("attested");
            let challenge: KeyChallenge = self.post(replica, "/v1/keys/challenge", &serde_json::json!({}))?;
            let evidence = self.evidence(ak, challenge.challenge, &challenge.nonce, &challenge.pcrs)?;
            let request = KeyRequest { token, evidence, key: op.clone() };
            match self.client.post(replica, "/v1/keys", &request) {
                Ok(reply) => return Ok(reply),
                Err(CallError::Refused(refusal))
                    if refusal.code == RefusalCode::ExpiredToken && !attested_now =>
                {
                    session.token = None;
                }
                Err(call) => return Err(self.refused(replica, call)),
            }
        }
    }

    fn request(&self, op: KeyOp) -> Result<(KeyRef, Kek)> {
        let mut session = self.lock();
        let reply =
            self.on_replicas(&mut session, |this, session, replica| this.key_on(session, replica, &op))?;
        let bad =
            |why: &str| self.error(ProviderFault::Misconfigured, format!("the authority's answer: {why}"));
        let key_ref = KeyRef::new(ProviderKind::Trusted, &self.config.name, &reply.id)
            .map_err(|_| bad("a key id that cannot be kept in a key reference"))?;
        let kek = Kek::from_bytes(&reply.key).map_err(|_| bad("a key that is not 32 bytes"))?;
        Ok((key_ref, kek))
    }
}

impl KeyProvider for TrustedProvider {
    fn name(&self) -> String {
        self.config.provider_name()
    }

    fn create_kek(&self, key_id: Option<&str>) -> Result<KeyRef> {
        if let Some(name) = key_id {
            check_id(name)?;
        }
        let (key_ref, kek) = self.request(KeyOp::Create { name: key_id.map(str::to_owned) })?;
        self.kept.remember(&key_ref, &kek);
        Ok(key_ref)
    }

    fn get_kek(&self, key_ref: &KeyRef) -> Result<Kek> {
        if key_ref.kind() != ProviderKind::Trusted || key_ref.provider_id() != self.config.name {
            return Err(self.error(
                ProviderFault::NotFound,
                format!(
                    "the key is {key_ref}, but this provider holds keys trusted:{}/...",
                    self.config.name
                ),
            ));
        }
        let fetched = self.request(KeyOp::Get { id: key_ref.key_id().to_owned() }).map(|(_, kek)| kek);
        self.kept.settle(key_ref, fetched)
    }

    fn take_notices(&self) -> Vec<String> {
        self.kept.take_notices()
    }
}
