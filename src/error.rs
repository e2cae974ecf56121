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
    /// The wrapped data key does not open with this key-encryption key: the KEK is wrong or the
    /// wrapped key was altered. Deliberately one error for both, and no part of a key comes out.
    #[error("cannot unwrap the data key: wrong key-encryption key, or the wrapped key was altered")]
    KeyUnwrap,
    /// A data key does not match the verifier stored beside it.
    #[error("the data key does not match its verifier: it is not the key this data was encrypted with")]
    DekMismatch,
    /// A wrapped-key blob that cannot be parsed (truncated, not a wrapped key, bad field).
    #[error("not a valid wrapped key: {0}")]
    WrappedKeyFormat(&'static str),
    /// A wrapped-key blob or key backup written by a newer format version.
    #[error("{what} format version {found} is newer than this build reads (version {supported})")]
    FormatVersion {
        /// What was being read.
        what: &'static str,
        /// The version in the data.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// A key id that is empty, too long, or has characters outside `A-Z a-z 0-9 . _ -`.
    #[error("invalid key id {0:?}: use 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'")]
    KeyId(String),
    /// A key provider could not give a key (file missing, bad permissions, server down, ...).
    #[error("key provider {provider}: {reason}")]
    KeyProvider {
        /// The provider, as the user named it.
        provider: String,
        /// What went wrong, for a person.
        reason: String,
    },
    /// A `--key-provider` value that names no known provider.
    #[error("unknown key provider {0:?} (expected native:PATH)")]
    KeyProviderSpec(String),
    /// A key backup that does not open: the passphrase is wrong, or the backup was altered.
    #[error("cannot open the key backup: wrong passphrase, or the backup file was altered")]
    BackupPassphrase,
    /// A key backup file that cannot be parsed.
    #[error("not a valid key backup: {0}")]
    BackupFormat(&'static str),
    /// A disk header copy (or both) that cannot be used.
    #[error("disk header: {0}")]
    Header(String),
    /// A disk or group that cannot be opened or used as asked (missing member, wrong group, truncated
    /// file, already open for writing, ...).
    #[error("{path}: {reason}")]
    Disk {
        /// The disk or member file.
        path: String,
        /// What is wrong, for a person.
        reason: String,
    },
    /// A read or write beyond the end of the disk.
    #[error("{len} bytes at offset {offset} go past the end of the disk ({size} bytes)")]
    OutOfRange {
        /// Where the request starts.
        offset: u64,
        /// Its length.
        len: u64,
        /// The disk's size.
        size: u64,
    },
    /// An I/O error from the operating system.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The kind, for programs.
        kind: std::io::ErrorKind,
        /// The system's message.
        message: String,
    },
    /// The operating system's random generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

fn backend_names() -> String {
    Backend::ALL.map(Backend::name).join(", ")
}

fn supported_names() -> String {
    Backend::supported().map(Backend::name).collect::<Vec<_>>().join(", ")
}

/// The library's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;
