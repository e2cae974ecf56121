//! The key hierarchy: data keys wrapped by key-encryption keys from a key provider.
//!
//! ```text
//!   key provider (native: a KDK file; later a KMIP server, an attested host)
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
mod material;
mod native;
mod provider;
mod wrap;

pub use cache::KeyCache;
pub(crate) use material::random_bytes;
pub use material::{Dek, Kek, KeyRef, ProviderKind};
pub use native::{KDK_LEN, NativeProvider};
pub use provider::KeyProvider;
pub use wrap::{MAX_BLOB_LEN, VERIFIER_LEN, WrappedDek};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The environment variable that names the key provider where `--key-provider` is not given.
pub const KEY_PROVIDER_ENV: &str = "SECTORCRYPT_KEY_PROVIDER";

/// What a `--key-provider` value names.
enum Spec<'a> {
    /// `native:PATH`: a KDK file.
    Native(&'a Path),
}

fn parse_spec(spec: &str) -> Result<Spec<'_>> {
    match spec.trim().split_once(':') {
        Some(("native", path)) if !path.is_empty() => Ok(Spec::Native(Path::new(path))),
        _ => Err(Error::KeyProviderSpec(spec.to_owned())),
    }
}

/// Opens the provider a `--key-provider` value names: `native:PATH` (a KDK file).
pub fn open_provider(spec: &str) -> Result<Box<dyn KeyProvider>> {
    match parse_spec(spec)? {
        Spec::Native(path) => Ok(Box::new(NativeProvider::open(path)?)),
    }
}

/// The local files a provider spec names (the KDK of `native:PATH`), which a command must never
/// overwrite with its output. None for a spec that names no provider.
pub fn provider_files(spec: &str) -> Vec<PathBuf> {
    match parse_spec(spec) {
        Ok(Spec::Native(path)) => vec![path.to_owned()],
        Err(_) => Vec::new(),
    }
}
