//! What a provider with key persistence does with each fetch: keep what the server released, drop what
//! it revoked, and, when no server can be asked, use the kept copy and say so. The KMIP and trusted
//! providers share it, so both follow one rule.

use super::KeyStore;
use crate::error::{Error, ProviderFault, Result};
use crate::keys::material::{Kek, KeyRef};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A provider's optional store and the notices it leaves for the caller.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    store: Option<KeyStore>,
    notices: Mutex<Vec<String>>,
    checked: AtomicBool,
}

impl Kept {
    pub(crate) fn new(store: Option<KeyStore>) -> Kept {
        Kept { store, notices: Mutex::default(), checked: AtomicBool::new(false) }
    }

    /// Once per process: checks that this host's TPM still unseals the store, and leaves a notice
    /// saying how to re-enrol it when not. A key already listed is not sealed again on each fetch,
    /// so without this a TPM clear would go unnoticed until the copies are needed, and fail then.
    pub(crate) fn check_once(&self, provider: &str) {
        let Some(store) = &self.store else { return };
        if self.checked.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Err(err) = store.check() {
            self.notice(format!(
                "{err}; keys are not persisted until it is re-enrolled: if this host's TPM was cleared or replaced, run `sectorcrypt keys persistence clear {provider}`"
            ));
        }
    }

    pub(crate) fn store(&self) -> Option<&KeyStore> {
        self.store.as_ref()
    }

    fn notice(&self, text: String) {
        let mut notices = self.notices.lock().unwrap_or_else(|p| p.into_inner());
        if !notices.contains(&text) {
            notices.push(text);
        }
    }

    pub(crate) fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies the rule to the outcome of asking a server for `key_ref`.
    pub(crate) fn settle(&self, key_ref: &KeyRef, fetched: Result<Kek>) -> Result<Kek> {
        match fetched {
            Ok(kek) => {
                self.remember(key_ref, &kek);
                Ok(kek)
            }
            Err(err @ Error::KeyProvider { fault: ProviderFault::Revoked | ProviderFault::NotFound, .. }) => {
                // The server says the key may not be used: no copy may outlive that.
                if let Some(store) = &self.store
                    && let Err(store_err) = store.forget(key_ref)
                {
                    self.notice(format!("the persisted copy of {key_ref} could not be removed: {store_err}"));
                }
                Err(err)
            }
            Err(err) if err.is_transient() => self.fall_back(key_ref, err),
            Err(err) => Err(err),
        }
    }

    /// Keeps a KEK just released (a failure to keep it is a notice, not an error).
    pub(crate) fn remember(&self, key_ref: &KeyRef, kek: &Kek) {
        if let Some(store) = &self.store
            && let Err(err) = store.remember(key_ref, kek)
        {
            self.notice(format!("{key_ref} was not persisted: {err}"));
        }
    }

    /// What to do when the server cannot be asked: a kept copy, or an error that says why there is none.
    fn fall_back(&self, key_ref: &KeyRef, err: Error) -> Result<Kek> {
        let Error::KeyProvider { provider, fault, reason } = err else { return Err(err) };
        let Some(store) = &self.store else {
            let reason = format!("{reason}; key persistence is off, so this host keeps no copy of the key");
            return Err(Error::KeyProvider { provider, fault, reason });
        };
        match store.recall(key_ref) {
            Ok(Some(kek)) => {
                self.notice(format!(
                    "{provider}: using the copy of {key_ref} that key persistence keeps in {}, since {reason}",
                    store.path().display()
                ));
                Ok(kek)
            }
            Ok(None) => Err(Error::KeyProvider {
                provider,
                fault,
                reason: format!("{reason}; key persistence keeps no copy of {key_ref}"),
            }),
            Err(store_err) => Err(Error::KeyProvider {
                provider,
                fault,
                reason: format!("{reason}; the persisted copy cannot be used: {store_err}"),
            }),
        }
    }
}
