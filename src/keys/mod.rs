//! The key hierarchy: data keys wrapped by key-encryption keys from a key provider.
//!
//! ```text
//!   key provider (native: a KDK file; kmip: KMIP key servers, optionally persisted under the TPM)
//!        │  create_kek() -> KeyRef          get_kek(&KeyRef) -> Kek
//!        ▼
//!   KEK (AES-256, never stored with a disk; the native provider derives it:
//!        │    HKDF-SHA256(KDK, salt = "sectorcrypt native kek v1", info = key id))
//!        │  AES key wrap with padding (RFC 5649 / SP 800-38F)
//!        ▼
//!   WrappedDek { version, algorithm, DEK kind, KeyRef, wrapped DEK, verifier }
//!        │  stored in the disk's metadata (VM mode: one per disk;
//!        │  datastore mode: the group's one DEK, in every member)
//!        ▼
//!   DEK (the XTS key: XTS-AES-256 by default, or XTS-AES-128; from the OS CSPRNG)
//!        │  XTS-AES, tweak = data-unit number
//!        ▼
//!   data at rest
//! ```
//!
//! A disk carries only the wrapped DEK and the reference to its KEK, so copying a disk does not copy
//! its key. A shallow rekey re-wraps the DEK under a new KEK (the data stays as it is); a deep rekey
//! chooses a new DEK and re-encrypts the data. The verifier (HMAC-SHA256 of a fixed label under the
//! DEK) lets any path that obtains a DEK check it before it touches data.

mod cache;
pub mod kmip;
mod material;
mod native;
pub mod persist;
mod provider;
mod wrap;

pub use cache::KeyCache;
pub use kmip::{KmipConfig, KmipProvider};
pub use material::{Dek, Kek, KeyRef, ProviderKind};
pub(crate) use material::{check_id, random_bytes};
pub use native::{KDK_LEN, NativeProvider};
pub use persist::KeyStore;
pub use provider::KeyProvider;
pub use wrap::{MAX_BLOB_LEN, VERIFIER_LEN, WrappedDek};

#[cfg(not(feature = "tpm"))]
use crate::error::ProviderFault;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The environment variable that names the key provider where `--key-provider` is not given.
pub const KEY_PROVIDER_ENV: &str = "SECTORCRYPT_KEY_PROVIDER";

/// What a `--key-provider` value names.
enum Spec<'a> {
    /// `native:PATH`: a KDK file.
    Native(&'a Path),
    /// `kmip:CONFIG`: a KMIP configuration file.
    Kmip(&'a Path),
    /// `trusted:CONFIG`: a trusted provider's configuration file.
    Trusted(&'a Path),
}

fn parse_spec(spec: &str) -> Result<Spec<'_>> {
    match spec.trim().split_once(':') {
        Some(("native", path)) if !path.is_empty() => Ok(Spec::Native(Path::new(path))),
        Some(("kmip", path)) if !path.is_empty() => Ok(Spec::Kmip(Path::new(path))),
        Some(("trusted", path)) if !path.is_empty() => Ok(Spec::Trusted(Path::new(path))),
        _ => Err(Error::KeyProviderSpec(spec.to_owned())),
    }
}

/// How many KEKs the cache in front of a KMIP or trusted provider keeps.
const KMIP_CACHE_CAPACITY: usize = 256;

/// Opens the provider a `--key-provider` value names: `native:PATH` (a KDK file), `kmip:CONFIG` (KMIP
/// key servers) or `trusted:CONFIG` (attestation authorities; needs the `tpm` feature), the last two
/// behind an in-memory cache whose lifetime the configuration sets.
pub fn open_provider(spec: &str) -> Result<Box<dyn KeyProvider>> {
    match parse_spec(spec)? {
        Spec::Native(path) => Ok(Box::new(NativeProvider::open(path)?)),
        Spec::Kmip(path) => {
            let provider = KmipProvider::open(path)?;
            let lifetime = provider.client().config().cache_lifetime;
            Ok(Box::new(KeyCache::with_lifetime(provider, KMIP_CACHE_CAPACITY, lifetime)))
        }
        #[cfg(feature = "tpm")]
        Spec::Trusted(path) => {
            let provider = crate::trusted::TrustedProvider::open(path)?;
            let lifetime = provider.config().cache_lifetime;
            Ok(Box::new(KeyCache::with_lifetime(provider, KMIP_CACHE_CAPACITY, lifetime)))
        }
        #[cfg(not(feature = "tpm"))]
        Spec::Trusted(path) => Err(Error::KeyProvider {
            provider: format!("trusted:{}", path.display()),
            fault: ProviderFault::Misconfigured,
            reason: "this build has no TPM support (the `tpm` feature), which attestation needs".into(),
        }),
    }
}

/// The local files a provider spec names (the KDK of `native:PATH`; the configuration, certificates,
/// key and store of `kmip:CONFIG`), which a command must never overwrite with its output. None for a
/// spec that names no provider.
pub fn provider_files(spec: &str) -> Vec<PathBuf> {
    match parse_spec(spec) {
        Ok(Spec::Native(path)) => vec![path.to_owned()],
        Ok(Spec::Kmip(path)) => {
            let mut files = vec![path.to_owned()];
            if let Ok(config) = KmipConfig::load(path) {
                files.extend([config.ca, config.client_cert, config.client_key]);
                files.extend(config.persistence.map(|p| p.store));
            }
            files
        }
        Ok(Spec::Trusted(path)) => {
            let mut files = vec![path.to_owned()];
            if let Ok(config) = crate::trusted::TrustedConfig::load(path) {
                files.push(config.ca);
                files.extend(config.persistence.map(|p| p.store));
            }
            files
        }
        Err(_) => Vec::new(),
    }
}
