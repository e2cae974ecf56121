//! Key material as types: a DEK is an XTS key from the OS random generator, a KEK is an AES-256 key,
//! and a `KeyRef` names a KEK at its provider. Key bytes zeroize on drop and never print.

use crate::error::{Error, Result};
use crate::key::{KeySize, XtsKey};
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Bytes of a key-encryption key (AES-256).
pub(crate) const KEK_LEN: usize = 32;

/// The label whose HMAC under the DEK is the DEK's verifier.
const VERIFIER_LABEL: &[u8] = b"sectorcrypt DEK verifier v1";

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|err| Error::Random(err.to_string()))
}

/// A data-encryption key: the XTS key of a disk or disk group, made only from the OS random generator.
#[derive(Debug)]
pub struct Dek {
    key: XtsKey,
}

impl Dek {
    /// A fresh random DEK of the given size (XTS-AES-256 is the default the CLI uses).
    pub fn generate(size: KeySize) -> Result<Dek> {
        let mut bytes = Zeroizing::new([0u8; 64]);
        let bytes = &mut bytes[..size.xts_key_len()];
        loop {
            random_bytes(bytes)?;
            // Equal halves have probability 2^-128 or less; drawing again costs nothing.
            if let Ok(key) = XtsKey::from_bytes(bytes) {
                return Ok(Dek { key });
            }
        }
    }

    /// Rebuilds a DEK from unwrapped bytes (refuses equal halves like any XTS key).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Dek> {
        Ok(Dek { key: XtsKey::from_bytes(bytes)? })
    }

    /// The XTS key, for building an [`Xts`](crate::Xts) engine.
    pub fn xts_key(&self) -> &XtsKey {
        &self.key
    }

    /// XTS-AES-256 or XTS-AES-128.
    pub fn size(&self) -> KeySize {
        self.key.size()
    }

    /// HMAC-SHA256 of a fixed label under the DEK: stored beside the wrapped DEK, it identifies the key
    /// without revealing it.
    pub fn verifier(&self) -> [u8; 32] {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.key.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(VERIFIER_LABEL);
        mac.finalize().into_bytes().into()
    }

    /// Checks the DEK against a stored verifier, in constant time.
    pub fn check_verifier(&self, verifier: &[u8; 32]) -> Result<()> {
        if bool::from(self.verifier().ct_eq(verifier)) { Ok(()) } else { Err(Error::DekMismatch) }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.key.as_bytes()
    }

    /// The raw key bytes (Key1 || Key2). Whoever holds them can decrypt the data without the key
    /// provider; this exists only for `disk dump-key --i-know-what-i-am-doing` and interop tests.
    pub fn hazmat_reveal(&self) -> &[u8] {
        self.key.as_bytes()
    }
}

/// A key-encryption key (AES-256) as a provider hands it out. Cloning copies the key (the cache needs
/// it); every copy zeroizes on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Kek([u8; KEK_LEN]);

impl Kek {
    /// A KEK from exactly 32 bytes (e.g. as a key server returns it).
    pub fn from_bytes(bytes: &[u8]) -> Result<Kek> {
        let bytes: [u8; KEK_LEN] = bytes.try_into().map_err(|_| Error::KeyLength(bytes.len()))?;
        Ok(Kek(bytes))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEK_LEN] {
        &self.0
    }

    /// The key bytes, for the one program that must hand a KEK on: the trusted authority's Key
    /// Provider Service, releasing it to an attested host over TLS. Nothing else should call this.
    pub fn hazmat_reveal(&self) -> &[u8; KEK_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for Kek {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// The kind of key provider that holds a KEK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// KEKs derived from a local key-derivation key (no server).
    Native,
    /// KEKs held by a KMIP key server.
    Kmip,
    /// KEKs released only to attested hosts.
    Trusted,
}

impl ProviderKind {
    /// The name used in key references and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            ProviderKind::Native => "native",
            ProviderKind::Kmip => "kmip",
            ProviderKind::Trusted => "trusted",
        }
    }

    pub(crate) const fn code(self) -> u8 {
        match self {
            ProviderKind::Native => 1,
            ProviderKind::Kmip => 2,
            ProviderKind::Trusted => 3,
        }
    }

    pub(crate) const fn from_code(code: u8) -> Option<ProviderKind> {
        match code {
            1 => Some(ProviderKind::Native),
            2 => Some(ProviderKind::Kmip),
            3 => Some(ProviderKind::Trusted),
            _ => None,
        }
    }
}

/// Where a KEK lives: the provider's kind, which provider of that kind (for the native provider, the
/// fingerprint of its KDK) and the key's id there. This, not the key, is what a disk stores.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct KeyRef {
    kind: ProviderKind,
    provider_id: String,
    key_id: String,
}

/// Longest provider or key id, in bytes.
pub(crate) const MAX_ID_LEN: usize = 64;

impl KeyRef {
    /// A reference; both ids must be 1 to 64 characters from `A-Z a-z 0-9 . _ -`.
    pub fn new(kind: ProviderKind, provider_id: &str, key_id: &str) -> Result<KeyRef> {
        Ok(KeyRef {
            kind,
            provider_id: check_id(provider_id)?.to_owned(),
            key_id: check_id(key_id)?.to_owned(),
        })
    }

    /// The provider's kind.
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// Which provider of that kind.
    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }

    /// The key's id at its provider.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

impl core::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}/{}", self.kind.name(), self.provider_id, self.key_id)
    }
}

/// Returns `id` if it is a valid provider or key id.
pub(crate) fn check_id(id: &str) -> Result<&str> {
    let valid_char = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.as_bytes().iter().all(valid_char) {
        return Err(Error::KeyId(id.chars().take(80).collect()));
    }
    Ok(id)
}
