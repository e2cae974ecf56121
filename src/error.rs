//! The one error type of the library, and the kinds a caller branches on.
//!
//! Every error keeps its cause as data, not only as text: the OS error code of an I/O failure
//! ([`Error::os_error`]), what a key provider reported ([`ProviderFault`]), what is wrong with a disk
//! ([`DiskFault`]). [`Error::kind`] sorts them into the few [`ErrorKind`]s a caller acts on, and
//! [`Error::is_transient`] says whether trying again later can succeed (storage busy, key server
//! unreachable or slow) or not (not found, denied, revoked, corrupt, invalid input). Nothing in this
//! crate, and nothing a caller needs, looks at an error's message.

use sectorcrypt_simd::Backend;
use std::sync::Arc;

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
    /// No keyslot of a LUKS volume opens with the passphrase given.
    #[error("no keyslot opens with this passphrase")]
    WrongPassphrase,
    /// The source and the destination of an out-of-place call differ in length.
    #[error("the source holds {src} bytes but the destination {dst}: they must be equal")]
    LengthMismatch {
        /// Source length.
        src: usize,
        /// Destination length.
        dst: usize,
    },
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
        /// What went wrong, for programs.
        fault: ProviderFault,
        /// What went wrong, for a person.
        reason: String,
    },
    /// The TPM-sealed store of persisted keys cannot be used (damaged, another TPM's, TPM down).
    #[error("key persistence store {path}: {reason}")]
    KeyStore {
        /// The store file.
        path: String,
        /// What is wrong, for programs.
        fault: StoreFault,
        /// What is wrong, for a person.
        reason: String,
    },
    /// A `--key-provider` value that names no known provider.
    #[error("unknown key provider {0:?} (expected native:PATH, kmip:CONFIG or trusted:CONFIG)")]
    KeyProviderSpec(String),
    /// A rekey to the KEK that already wraps the data key, which would change nothing.
    #[error("the data key is already wrapped under {0}: a rekey needs another key id")]
    SameKek(String),
    /// A key backup that does not open: the passphrase is wrong, or the backup was altered.
    #[error("cannot open the key backup: wrong passphrase, or the backup file was altered")]
    BackupPassphrase,
    /// A key backup file that cannot be parsed.
    #[error("not a valid key backup: {0}")]
    BackupFormat(&'static str),
    /// A disk header copy (or both) that cannot be used.
    #[error("disk header: {0}")]
    Header(String),
    /// Neither header copy has the sectorcrypt magic: this is not a sectorcrypt disk.
    #[error("no sectorcrypt header (not a sectorcrypt disk)")]
    NotADisk,
    /// A disk or group that cannot be opened or used as asked (missing member, wrong group, truncated
    /// file, already open for writing, ...).
    #[error("{path}: {reason}")]
    Disk {
        /// The disk or member file.
        path: String,
        /// What is wrong, for programs.
        fault: DiskFault,
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
    /// An I/O error from the operating system or from a caller's storage.
    #[error("{path}: {cause}")]
    Io {
        /// The file, or the name of the storage.
        path: String,
        /// The error as the system (or the storage) reported it, with its OS error code.
        cause: IoCause,
    },
    /// A write whose ciphertext for this data unit would be all zeros, which reads as an unwritten
    /// (discarded) unit. Only a writer who knows the key can build such data; it is refused unwritten.
    #[error(
        "data unit {0} cannot be written: its ciphertext would be all zeros (the mark of an unwritten unit)"
    )]
    UnwritableUnit(u64),
    /// An update that took effect but did not finish: the new header is in place in one copy (or on
    /// some members of a group) and `repair` completes it; nothing is lost either way.
    #[error("{path}: {what} took effect but did not finish ({cause}); run `repair` to complete it")]
    Unfinished {
        /// The disk or member where it stopped.
        path: String,
        /// What took effect ("the header update", "the group rekey").
        what: &'static str,
        /// Why it stopped.
        cause: Box<Error>,
    },
    /// The operating system's random generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// What a caller does about an error: the classes of [`Error::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A malformed argument, key, size or layout: permanent until the input changes.
    InvalidInput,
    /// Key material that does not open or match (wrong KEK, altered blob, wrong passphrase).
    KeyRejected,
    /// A key provider cannot give a key now (unreachable, timed out): transient.
    ProviderUnavailable,
    /// A key provider refuses for good (unknown key, denied, revoked or destroyed key, bad config).
    ProviderRefused,
    /// On-disk data that does not decode, or written by a newer format version.
    Corrupt,
    /// Something that should exist does not (a file, a group member).
    NotFound,
    /// Something that must not exist does (a file `create` would replace).
    AlreadyExists,
    /// The operating system refused access.
    PermissionDenied,
    /// Another process holds the disk, or the storage said it is busy: transient.
    Busy,
    /// The CPU or the platform lacks what was asked for (a backend, io_uring).
    Unsupported,
    /// Any other I/O failure of the storage; [`Error::os_error`] has its code.
    Io,
}

impl ErrorKind {
    /// Whether the same call can succeed later without any change by the caller.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::ProviderUnavailable | ErrorKind::Busy)
    }
}

/// What a key provider reported, for [`Error::KeyProvider`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderFault {
    /// The provider (a file system, a key server) cannot be reached: transient.
    Unreachable,
    /// The provider did not answer in time: transient.
    TimedOut,
    /// The provider does not hold this key, or the key file does not exist.
    NotFound,
    /// The provider refuses this caller (permissions, credentials).
    Denied,
    /// The key exists but may no longer be used (revoked, deactivated, compromised, destroyed).
    Revoked,
    /// The provider's configuration or key file is unusable (bad mode, wrong length, wrong kind).
    Misconfigured,
    /// The key server's TLS certificate is not trusted (unknown CA, wrong name, expired).
    UntrustedServer,
    /// The key server answered but failed on its side (general failure, overloaded, its storage
    /// unavailable, shutting down): transient.
    ServerFailure,
}

/// What is wrong with a key persistence store, for [`Error::KeyStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreFault {
    /// The file does not parse, or its keys do not decrypt (altered or truncated).
    Corrupt,
    /// Another TPM sealed it, or this TPM was cleared since.
    WrongTpm,
    /// The PCRs it is sealed to hold other values now.
    PcrMismatch,
    /// The TPM cannot be reached: transient.
    TpmUnavailable,
    /// The TPM refused an operation.
    TpmFailed,
    /// The configuration does not match the store (other PCRs, a bad TCTI).
    Misconfigured,
    /// The store holds as many keys as it can.
    Full,
    /// This build has no TPM support.
    Unsupported,
}

impl StoreFault {
    fn kind(self) -> ErrorKind {
        match self {
            StoreFault::Corrupt => ErrorKind::Corrupt,
            StoreFault::WrongTpm | StoreFault::PcrMismatch => ErrorKind::KeyRejected,
            StoreFault::TpmUnavailable => ErrorKind::ProviderUnavailable,
            StoreFault::TpmFailed => ErrorKind::Io,
            StoreFault::Misconfigured | StoreFault::Full => ErrorKind::InvalidInput,
            StoreFault::Unsupported => ErrorKind::Unsupported,
        }
    }
}

impl ProviderFault {
    fn kind(self) -> ErrorKind {
        match self {
            ProviderFault::Unreachable | ProviderFault::TimedOut | ProviderFault::ServerFailure => {
                ErrorKind::ProviderUnavailable
            }
            _ => ErrorKind::ProviderRefused,
        }
    }
}

/// What is wrong with a disk or group, for [`Error::Disk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiskFault {
    /// Another process has it open for writing (or reading, when writing is asked): transient.
    Busy,
    /// A member is missing, or none was given.
    MissingMember,
    /// The files do not form the disk or group asked for (other mode, other group, given twice,
    /// different layout or key generation).
    Mismatch,
    /// The file is shorter than its header says.
    Truncated,
    /// Neither header copy has the sectorcrypt magic: not a sectorcrypt disk (or, opened as LUKS, no
    /// LUKS header).
    NotADisk,
    /// A valid volume that uses what this build does not implement (another cipher, integrity
    /// protection, a mandatory requirement such as an unfinished LUKS2 reencryption).
    Unsupported,
    /// Both header copies are damaged.
    Corrupt,
    /// `create` was pointed at something that exists.
    AlreadyExists,
    /// A write to a volume opened read-only.
    ReadOnly,
    /// A size, data unit or stripe that no disk can have.
    InvalidLayout,
}

impl DiskFault {
    fn kind(self) -> ErrorKind {
        match self {
            DiskFault::Busy => ErrorKind::Busy,
            DiskFault::MissingMember => ErrorKind::NotFound,
            DiskFault::Truncated | DiskFault::Corrupt => ErrorKind::Corrupt,
            DiskFault::NotADisk => ErrorKind::InvalidInput,
            DiskFault::Unsupported => ErrorKind::Unsupported,
            DiskFault::AlreadyExists => ErrorKind::AlreadyExists,
            DiskFault::ReadOnly => ErrorKind::PermissionDenied,
            DiskFault::Mismatch | DiskFault::InvalidLayout => ErrorKind::InvalidInput,
        }
    }
}

/// An [`std::io::Error`] kept whole inside [`Error::Io`]: cheap to clone, compared by kind and OS code.
#[derive(Clone, Debug)]
pub struct IoCause(Arc<std::io::Error>);

impl IoCause {
    /// The underlying error.
    pub fn io_error(&self) -> &std::io::Error {
        &self.0
    }
}

impl From<std::io::Error> for IoCause {
    fn from(err: std::io::Error) -> IoCause {
        IoCause(Arc::new(err))
    }
}

impl PartialEq for IoCause {
    fn eq(&self, other: &IoCause) -> bool {
        self.0.kind() == other.0.kind() && self.0.raw_os_error() == other.0.raw_os_error()
    }
}

impl Eq for IoCause {}

impl core::fmt::Display for IoCause {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl Error {
    /// An I/O error of the file or storage named `path`, keeping the OS error.
    pub fn io(path: impl Into<String>, err: std::io::Error) -> Error {
        Error::Io { path: path.into(), cause: err.into() }
    }

    /// What a caller does about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::KeyLength(_)
            | Error::KeyEncoding(_)
            | Error::EqualKeyHalves
            | Error::DataUnitSize(_)
            | Error::DataUnitLength(_)
            | Error::ZeroTweakStep
            | Error::UnitNumberOverflow
            | Error::LengthMismatch { .. }
            | Error::UnknownBackend(_)
            | Error::KeyId(_)
            | Error::KeyProviderSpec(_)
            | Error::OutOfRange { .. }
            | Error::UnwritableUnit(_)
            | Error::SameKek(_) => ErrorKind::InvalidInput,
            Error::UnsupportedBackend(_) => ErrorKind::Unsupported,
            Error::KeyUnwrap | Error::DekMismatch | Error::BackupPassphrase | Error::WrongPassphrase => {
                ErrorKind::KeyRejected
            }
            Error::WrappedKeyFormat(_)
            | Error::FormatVersion { .. }
            | Error::BackupFormat(_)
            | Error::Header(_)
            | Error::NotADisk => ErrorKind::Corrupt,
            Error::KeyProvider { fault, .. } => fault.kind(),
            Error::KeyStore { fault, .. } => fault.kind(),
            Error::Disk { fault, .. } => fault.kind(),
            Error::Io { cause, .. } => match cause.io_error().kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
                std::io::ErrorKind::WouldBlock
                | std::io::ErrorKind::ResourceBusy
                | std::io::ErrorKind::Interrupted
                | std::io::ErrorKind::TimedOut => ErrorKind::Busy,
                std::io::ErrorKind::Unsupported => ErrorKind::Unsupported,
                std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::IsADirectory => ErrorKind::InvalidInput,
                _ => ErrorKind::Io,
            },
            Error::Random(_) => ErrorKind::Io,
            Error::Unfinished { cause, .. } => cause.kind(),
        }
    }

    /// Whether trying the same call again later can succeed: see [`ErrorKind::is_transient`].
    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }

    /// The operating system's error code (`errno`) behind an I/O error, if there is one.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            Error::Io { cause, .. } => cause.io_error().raw_os_error(),
            Error::Unfinished { cause, .. } => cause.os_error(),
            _ => None,
        }
    }
}

fn backend_names() -> String {
    Backend::ALL.map(Backend::name).join(", ")
}

fn supported_names() -> String {
    Backend::supported().map(Backend::name).collect::<Vec<_>>().join(", ")
}

/// The library's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;
