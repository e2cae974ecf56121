//! The one error type of the library.

use sectorcrypt_simd::Backend;

/// Everything the engine can refuse. Whenever one of these is returned, no buffer was modified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An XTS key must be 32 bytes (XTS-AES-128) or 64 bytes (XTS-AES-256): Key1 || Key2.
    #[error("an XTS key is 32 bytes (XTS-AES-128) or 64 bytes (XTS-AES-256), got {0} bytes")]
    KeyLength(usize),
    /// A hex key with an odd number of digits or a character that is not a hex digit.
    #[error("the key is not hexadecimal: expected 64 or 128 hex digits (0-9, a-f), got {0} characters")]
    KeyEncoding(usize),
    /// Key1 and Key2 are equal, which IEEE 1619 allows but FIPS 140-3 (SP 800-38E) forbids.
    #[error("the two halves of the XTS key are equal (Key1 == Key2), which FIPS 140-3 forbids")]
    EqualKeyHalves,
    /// A data-unit size outside 512 B..=128 KiB or not a power of two.
    #[error("data-unit size must be a power of two from 512 to 131072 bytes, got {0}")]
    DataUnitSize(usize),
    /// A data unit (or the last, shorter one) has fewer than 16 bytes, or a single unit is too long.
    #[error("a data unit must hold 16 bytes to 16 MiB, got {0} bytes")]
    DataUnitLength(usize),
    /// The tweak step is zero, which would give every data unit the same tweak.
    #[error("the tweak step must be at least 1")]
    ZeroTweakStep,
    /// A data-unit number would pass `u64::MAX`.
    #[error("the data-unit numbers would pass 2^64-1")]
    UnitNumberOverflow,
    /// The named backend does not exist.
    #[error("unknown backend {0:?} (expected auto, {names})", names = backend_names())]
    UnknownBackend(String),
    /// The named backend exists but this CPU cannot run it.
    #[error("this CPU cannot run the {0} backend (it supports: {supported})", supported = supported_names())]
    UnsupportedBackend(Backend),
}

fn backend_names() -> String {
    Backend::ALL.map(Backend::name).join(", ")
}

fn supported_names() -> String {
    Backend::supported().map(Backend::name).collect::<Vec<_>>().join(", ")
}

/// The library's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;
