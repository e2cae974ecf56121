//! The `KeyProvider` trait every provider implements.

use super::material::{Dek, Kek, KeyRef};
use super::wrap::WrappedDek;
use crate::error::{Error, Result};
use crate::key::KeySize;

/// A source of key-encryption keys: the native provider, a KMIP server, an attested-host service.
pub trait KeyProvider: Send + Sync + core::fmt::Debug {
    /// How the user named this provider, for messages (e.g. `native:/etc/sectorcrypt/kdk`).
    fn name(&self) -> String;

    /// Makes a KEK (with `key_id` if given, else a fresh random id) and returns its reference.
    fn create_kek(&self, key_id: Option<&str>) -> Result<KeyRef>;

    /// The KEK a reference names. Fails with [`Error::KeyProvider`] when this provider does not hold it.
    fn get_kek(&self, key_ref: &KeyRef) -> Result<Kek>;

    /// What the provider has to tell the user since the last call (a key used from persistence while
    /// the key server is down, a key that could not be persisted). A library never prints: the caller
    /// shows these, once each.
    fn take_notices(&self) -> Vec<String> {
        Vec::new()
    }

    /// A fresh random DEK, wrapped under a KEK made for it.
    fn new_wrapped_dek(&self, size: KeySize, key_id: Option<&str>) -> Result<(Dek, WrappedDek)> {
        let key_ref = self.create_kek(key_id)?;
        let kek = self.get_kek(&key_ref)?;
        let dek = Dek::generate(size)?;
        let wrapped = WrappedDek::wrap(&dek, &kek, &key_ref);
        Ok((dek, wrapped))
    }

    /// Unwraps a DEK with the KEK its blob names.
    fn unwrap_dek(&self, wrapped: &WrappedDek) -> Result<Dek> {
        wrapped.unwrap(&self.get_kek(wrapped.key_ref())?)
    }

    /// Shallow rekey: the same DEK wrapped under a new KEK (`new_key_id`, or a fresh id). Refuses the
    /// KEK that wraps it already ([`Error::SameKek`]), which would only bump the generation.
    fn rewrap_dek(&self, wrapped: &WrappedDek, new_key_id: Option<&str>) -> Result<WrappedDek> {
        let old_kek = self.get_kek(wrapped.key_ref())?;
        let new_ref = self.create_kek(new_key_id)?;
        if new_ref == *wrapped.key_ref() {
            return Err(Error::SameKek(new_ref.to_string()));
        }
        let new_kek = self.get_kek(&new_ref)?;
        wrapped.rewrap(&old_kek, &new_kek, &new_ref)
    }
}
