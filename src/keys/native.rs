//! The native key provider: KEKs derived from a local key-derivation key (KDK), no server needed.
//!
//! The KDK is 32 random bytes in a file of mode 0600. The KEK for key id `id` is
//! `HKDF-SHA256(ikm = KDK, salt = "sectorcrypt native kek v1", info = id)`, so any id names a KEK and
//! nothing but the KDK needs to be kept. A provider id, the KDK's fingerprint (the first 8 bytes of an
//! HKDF output under another label, in hex), goes into every key reference, so a disk presented to the
//! wrong KDK is told so plainly instead of failing to unwrap.
//!
//! Backups protect the KDK with a passphrase: argon2id (64 MiB, 3 passes, 1 lane; the parameters are
//! stored) stretches it into an AES-256-GCM key, and the header is the GCM associated data:
//!
//! ```text
//! "SCKB" | version (1) | m_cost KiB (u32 LE) | t_cost (u32 LE) | lanes (u32 LE) | salt (16)
//!        | nonce (12) | ciphertext of the KDK (32) | tag (16)
//! ```

use super::material::{Kek, KeyRef, ProviderKind, random_bytes};
use super::provider::KeyProvider;
use crate::error::{Error, ProviderFault, Result};
use crate::files::{AtomicFile, FileKinds, Overwrite, open_file, read_small};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Bytes of a key-derivation key.
pub const KDK_LEN: usize = 32;

const KEK_SALT: &[u8] = b"sectorcrypt native kek v1";
const FINGERPRINT_INFO: &[u8] = b"sectorcrypt native kdk fingerprint v1";

const BACKUP_MAGIC: &[u8; 4] = b"SCKB";
const BACKUP_VERSION: u8 = 1;
const BACKUP_HEADER_LEN: usize = 4 + 1 + 12 + 16 + 12;
const BACKUP_LEN: usize = BACKUP_HEADER_LEN + KDK_LEN + 16;
/// argon2id cost for new backups: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommendation).
const BACKUP_COST: (u32, u32, u32) = (64 * 1024, 3, 1);
/// Refuse to run argon2 with more than this from a (possibly altered) backup file: 1 GiB, 16 passes.
const BACKUP_COST_LIMIT: (u32, u32, u32) = (1024 * 1024, 16, 16);
/// Shortest passphrase a new backup accepts.
pub const MIN_PASSPHRASE_LEN: usize = 8;

/// KEKs derived from a KDK file.
pub struct NativeProvider {
    path: PathBuf,
    kdk: Zeroizing<[u8; KDK_LEN]>,
    fingerprint: String,
}

impl core::fmt::Debug for NativeProvider {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NativeProvider")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn provider_error(path: &Path, fault: ProviderFault, reason: impl Into<String>) -> Error {
    Error::KeyProvider { provider: format!("native:{}", path.display()), fault, reason: reason.into() }
}

/// The fault behind an I/O error on the KDK or backup file.
fn io_fault(err: &std::io::Error) -> ProviderFault {
    match err.kind() {
        std::io::ErrorKind::NotFound => ProviderFault::NotFound,
        std::io::ErrorKind::PermissionDenied => ProviderFault::Denied,
        // A FIFO or device where the KDK should be, a file already in the way, one too large.
        std::io::ErrorKind::AlreadyExists
        | std::io::ErrorKind::InvalidInput
        | std::io::ErrorKind::InvalidData => ProviderFault::Misconfigured,
        _ => ProviderFault::Unreachable,
    }
}

/// An I/O error of `files` on the KDK or backup file, as a provider error that keeps its fault.
fn file_error(path: &Path, doing: &str, err: Error) -> Error {
    match err {
        Error::Io { cause, .. } => {
            provider_error(path, io_fault(cause.io_error()), format!("{doing}: {cause}"))
        }
        other => other,
    }
}

impl NativeProvider {
    /// Creates a new random KDK at `path` (mode 0600). Refuses to replace an existing file; the file
    /// appears complete or not at all.
    pub fn init(path: impl AsRef<Path>) -> Result<NativeProvider> {
        let path = path.as_ref();
        let mut kdk = Zeroizing::new([0u8; KDK_LEN]);
        random_bytes(&mut kdk[..])?;
        write_new_file(path, &kdk[..])?;
        Ok(NativeProvider::from_kdk(path, kdk))
    }

    /// Opens an existing KDK file, which must be a regular file of exactly 32 bytes that neither group
    /// nor others may read or write.
    pub fn open(path: impl AsRef<Path>) -> Result<NativeProvider> {
        let path = path.as_ref();
        let fail = |reason: String| provider_error(path, ProviderFault::Misconfigured, reason);
        let mut file = open_file(path, false, FileKinds::Regular)
            .map_err(|err| file_error(path, "cannot open the KDK file", err))?;
        let meta = file.metadata().map_err(|err| {
            provider_error(path, io_fault(&err), format!("cannot read the KDK file: {err}"))
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "the KDK file has mode {mode:04o}: group or others may access it (run chmod 600 on it)"
            )));
        }
        if meta.len() != KDK_LEN as u64 {
            return Err(fail(format!(
                "a KDK file holds exactly {KDK_LEN} bytes, this one has {}",
                meta.len()
            )));
        }
        let mut kdk = Zeroizing::new([0u8; KDK_LEN]);
        file.read_exact(&mut kdk[..]).map_err(|err| fail(format!("cannot read the KDK file: {err}")))?;
        Ok(NativeProvider::from_kdk(path, kdk))
    }

    fn from_kdk(path: &Path, kdk: Zeroizing<[u8; KDK_LEN]>) -> NativeProvider {
        let mut fingerprint = [0u8; 8];
        hkdf::Hkdf::<sha2::Sha256>::new(None, &kdk[..])
            .expand(FINGERPRINT_INFO, &mut fingerprint)
            .expect("8 bytes is a valid HKDF length");
        NativeProvider { path: path.to_owned(), kdk, fingerprint: hex::encode(fingerprint) }
    }

    /// The KDK's fingerprint: the provider id in every key reference this provider makes.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Writes a passphrase-protected backup of the KDK to `to`, which must not exist yet.
    pub fn backup(&self, passphrase: &[u8], to: impl AsRef<Path>) -> Result<()> {
        let to = to.as_ref();
        if passphrase.len() < MIN_PASSPHRASE_LEN {
            return Err(provider_error(
                &self.path,
                ProviderFault::Misconfigured,
                format!("a backup passphrase needs at least {MIN_PASSPHRASE_LEN} characters"),
            ));
        }
        let mut header = Vec::with_capacity(BACKUP_LEN);
        header.extend_from_slice(BACKUP_MAGIC);
        header.push(BACKUP_VERSION);
        let (m_cost, t_cost, lanes) = BACKUP_COST;
        for value in [m_cost, t_cost, lanes] {
            header.extend_from_slice(&value.to_le_bytes());
        }
        let mut salt_and_nonce = [0u8; 16 + 12];
        random_bytes(&mut salt_and_nonce)?;
        header.extend_from_slice(&salt_and_nonce);
        let cipher = backup_cipher(passphrase, &header)?;
        let nonce = aes_gcm::Nonce::try_from(&header[BACKUP_HEADER_LEN - 12..]).expect("12-byte nonce");
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: &self.kdk[..], aad: &header })
            .expect("AES-GCM encrypts 32 bytes");
        header.extend_from_slice(&sealed);
        write_new_file(to, &header)
    }

    /// Restores a KDK from a backup into `kdk_path`, which must not exist yet. A wrong passphrase or an
    /// altered backup writes nothing.
    pub fn restore(
        backup: impl AsRef<Path>,
        passphrase: &[u8],
        kdk_path: impl AsRef<Path>,
    ) -> Result<NativeProvider> {
        let (backup, kdk_path) = (backup.as_ref(), kdk_path.as_ref());
        // A backup has one length; a longer file is not one (and `/dev/zero` is refused unread).
        let blob = read_small(backup, BACKUP_LEN).map_err(|err| match err {
            Error::Io { cause: source, .. }
                if source.io_error().kind() == std::io::ErrorKind::InvalidData =>
            {
                Error::BackupFormat("wrong length (truncated or extended)")
            }
            other => other,
        })?;
        let kdk = open_backup(&blob, passphrase)?;
        write_new_file(kdk_path, &kdk[..])?;
        Ok(NativeProvider::from_kdk(kdk_path, kdk))
    }

    fn derive_kek(&self, key_id: &str) -> Kek {
        let mut kek = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(KEK_SALT), &self.kdk[..])
            .expand(key_id.as_bytes(), &mut kek[..])
            .expect("32 bytes is a valid HKDF length");
        Kek::from_bytes(&kek[..]).expect("32 bytes")
    }
}

impl KeyProvider for NativeProvider {
    fn name(&self) -> String {
        format!("native:{}", self.path.display())
    }

    fn create_kek(&self, key_id: Option<&str>) -> Result<KeyRef> {
        let fresh;
        let key_id = match key_id {
            Some(id) => id,
            None => {
                let mut id = [0u8; 16];
                random_bytes(&mut id)?;
                fresh = hex::encode(id);
                &fresh
            }
        };
        KeyRef::new(ProviderKind::Native, &self.fingerprint, key_id)
    }

    fn get_kek(&self, key_ref: &KeyRef) -> Result<Kek> {
        if key_ref.kind() != ProviderKind::Native {
            return Err(provider_error(
                &self.path,
                ProviderFault::NotFound,
                format!(
                    "the key {key_ref} is held by a {} provider, not a native one",
                    key_ref.kind().name()
                ),
            ));
        }
        if key_ref.provider_id() != self.fingerprint {
            return Err(provider_error(
                &self.path,
                ProviderFault::NotFound,
                format!(
                    "the key {key_ref} was made from another KDK (fingerprint {}); this KDK's fingerprint is {}",
                    key_ref.provider_id(),
                    self.fingerprint
                ),
            ));
        }
        Ok(self.derive_kek(key_ref.key_id()))
    }
}

fn backup_cipher(passphrase: &[u8], header: &[u8]) -> Result<aes_gcm::Aes256Gcm> {
    let word = |i: usize| u32::from_le_bytes(header[5 + 4 * i..9 + 4 * i].try_into().expect("4 bytes"));
    let (m_cost, t_cost, lanes) = (word(0), word(1), word(2));
    let (m_max, t_max, p_max) = BACKUP_COST_LIMIT;
    if m_cost > m_max || t_cost > t_max || lanes > p_max {
        return Err(Error::BackupFormat(
            "its argon2 cost is beyond what this build will run (1 GiB, 16 passes, 16 lanes)",
        ));
    }
    let params = argon2::Params::new(m_cost, t_cost, lanes, Some(32))
        .map_err(|_| Error::BackupFormat("invalid argon2 parameters"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, &header[17..33], &mut key[..])
        .map_err(|_| Error::BackupFormat("invalid argon2 input"))?;
    Ok(aes_gcm::Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key"))
}

fn open_backup(blob: &[u8], passphrase: &[u8]) -> Result<Zeroizing<[u8; KDK_LEN]>> {
    if blob.len() < 5 || &blob[..4] != BACKUP_MAGIC {
        return Err(Error::BackupFormat("it does not start with the KDK-backup magic \"SCKB\""));
    }
    match blob[4] {
        BACKUP_VERSION => {}
        0 => return Err(Error::BackupFormat("format version 0 does not exist")),
        found => return Err(Error::FormatVersion { what: "key backup", found, supported: BACKUP_VERSION }),
    }
    if blob.len() != BACKUP_LEN {
        return Err(Error::BackupFormat("wrong length (truncated or extended)"));
    }
    let (header, sealed) = blob.split_at(BACKUP_HEADER_LEN);
    let cipher = backup_cipher(passphrase, header)?;
    let nonce = aes_gcm::Nonce::try_from(&header[BACKUP_HEADER_LEN - 12..]).expect("12-byte nonce");
    let plain = Zeroizing::new(
        cipher.decrypt(&nonce, Payload { msg: sealed, aad: header }).map_err(|_| Error::BackupPassphrase)?,
    );
    let mut kdk = Zeroizing::new([0u8; KDK_LEN]);
    kdk.copy_from_slice(&plain);
    Ok(kdk)
}

/// Writes `bytes` to a new file at `path` (mode 0600) that appears complete or not at all, and never
/// replaces an existing file.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let file = AtomicFile::create(path, Overwrite::Refuse, 0o600)
        .map_err(|err| file_error(path, "cannot create it", err))?;
    file.file()
        .write_all(bytes)
        .map_err(|err| provider_error(path, io_fault(&err), format!("cannot write: {err}")))?;
    file.commit().map_err(|err| file_error(path, "cannot create it", err))
}
