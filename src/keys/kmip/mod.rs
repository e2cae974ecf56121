//! The standard key provider: KEKs held by KMIP key servers, as vSphere's standard key provider keeps
//! them.
//!
//! `create_kek` asks a server to Create an AES-256 key (usage encrypt, decrypt, wrap, unwrap; named
//! after the key id, or `sectorcrypt-` and random hex) and Activate it; the key reference keeps the
//! server's unique identifier, never the key. A key id given by the user is looked up first (Locate by
//! name), so the same id names the same KEK, as with the native provider. `get_kek` asks the key's
//! State and then Gets it: only an Active key is used, since a server hands out material in any state.
//!
//! With `[persistence]` configured, every KEK fetched is also kept in a TPM-sealed store
//! ([`crate::keys::persist`]). When no server answers, a kept KEK is used and the provider leaves a
//! notice saying so; when a server reports a key revoked or gone, the kept copy is removed. The wire
//! format is TTLV ([`ttlv`]), the messages KMIP 1.2 ([`messages`]), over mutually authenticated TLS
//! ([`conn`]).

mod client;
mod config;
mod conn;
mod messages;
#[doc(hidden)]
pub mod ttlv;

pub use client::{KmipClient, ServerInfo};
pub use config::{KmipConfig, PersistenceConfig};
pub(crate) use config::{PersistenceSection, read_for};
pub use messages::{KeyState, RevocationReason};

use super::material::{Kek, KeyRef, ProviderKind, check_id, random_bytes};
use super::persist::{Kept, KeyStore};
use super::provider::KeyProvider;
use crate::error::{Error, ProviderFault, Result};
use std::path::Path;

/// The encoding of every request the client sends (with sample arguments), for interoperability tests.
#[doc(hidden)]
pub fn wire_samples() -> Vec<(&'static str, Vec<u8>)> {
    messages::samples().into_iter().map(|(name, item)| (name, item.to_bytes())).collect()
}

/// Fuzzing entry point: any bytes as a KMIP response, through the TTLV decoder (which must round-trip
/// what it accepts) and every reading of an answer the client does.
#[doc(hidden)]
pub fn fuzz_response(input: &[u8]) {
    ttlv::fuzz_decode(input);
    let Ok(item) = ttlv::Item::from_bytes(input) else { return };
    for op in [messages::Operation::Get, messages::Operation::Locate, messages::Operation::Query] {
        if let Ok(Ok(payload)) = messages::response_payload(&item, op) {
            let _ = messages::payload_id(&payload);
            let _ = messages::located_ids(&payload);
            let _ = messages::state(&payload);
            let _ = messages::symmetric_key(&payload);
            let _ = messages::versions(&payload);
            let _ = messages::vendor(&payload);
        }
    }
}

/// KEKs from KMIP servers, optionally persisted under the TPM.
#[derive(Debug)]
pub struct KmipProvider {
    client: KmipClient,
    kept: Kept,
}

impl KmipProvider {
    /// Opens the provider a `kmip:CONFIG` file describes: reads the configuration, the CA, the client
    /// certificate and key. Connects to no server yet.
    pub fn open(config: impl AsRef<Path>) -> Result<KmipProvider> {
        let config = KmipConfig::load(config)?;
        let kept = Kept::new(config.persistence.as_ref().map(KeyStore::new));
        Ok(KmipProvider { client: KmipClient::new(config)?, kept })
    }

    /// The KMIP client, for operations beyond the provider's (check, revoke, destroy).
    pub fn client(&self) -> &KmipClient {
        &self.client
    }

    /// The persistence store, if configured.
    pub fn store(&self) -> Option<&KeyStore> {
        self.kept.store()
    }

    fn key_ref(&self, id: &str) -> Result<KeyRef> {
        let config = self.client.config();
        KeyRef::new(ProviderKind::Kmip, &config.name, id).map_err(|_| Error::KeyProvider {
            provider: config.provider_name(),
            fault: ProviderFault::Misconfigured,
            reason: format!(
                "the server's key id {id:?} cannot be kept in a key reference (1 to 64 of A-Z a-z 0-9 . _ -)"
            ),
        })
    }
}

impl KeyProvider for KmipProvider {
    fn name(&self) -> String {
        self.client.config().provider_name()
    }

    fn create_kek(&self, key_id: Option<&str>) -> Result<KeyRef> {
        let id = match key_id {
            Some(name) => {
                check_id(name)?;
                let found = self.client.locate(name)?;
                match found.as_slice() {
                    [] => self.client.create_key(name)?,
                    [id] => id.clone(),
                    _ => {
                        return Err(Error::KeyProvider {
                            provider: self.name(),
                            fault: ProviderFault::Misconfigured,
                            reason: format!(
                                "{} keys on the key server are named {name:?}: name one by its id",
                                found.len()
                            ),
                        });
                    }
                }
            }
            None => {
                let mut random = [0u8; 8];
                random_bytes(&mut random)?;
                self.client.create_key(&format!("sectorcrypt-{}", hex::encode(random)))?
            }
        };
        self.key_ref(&id)
    }

    fn get_kek(&self, key_ref: &KeyRef) -> Result<Kek> {
        let config = self.client.config();
        if key_ref.kind() != ProviderKind::Kmip || key_ref.provider_id() != config.name {
            return Err(Error::KeyProvider {
                provider: self.name(),
                fault: ProviderFault::NotFound,
                reason: format!(
                    "the key is {key_ref}, but this provider holds keys kmip:{}/...",
                    config.name
                ),
            });
        }
        self.kept.settle(key_ref, self.client.get_key(key_ref.key_id()))
    }

    fn take_notices(&self) -> Vec<String> {
        self.kept.take_notices()
    }
}
