//! Key persistence: KEKs fetched from a key server, kept on this host sealed by its TPM, so encrypted
//! disks open after a restart while every key server is down (vSphere's "key persistence").
//!
//! The store (`docs/FORMAT.md`, "Key persistence store") lists its keys' references in the clear and
//! holds their KEKs under AES-256-GCM with a random storage key; the TPM seals that storage key, so
//! the file is useless on any other machine, or on this one after its TPM is cleared. The reference
//! list is the GCM associated data: readable without the TPM (`keys persistence status`, and a cheap
//! "already kept" check on every fetch), unalterable without the tag failing.
//!
//! Every change rewrites the file whole (temporary file, fsync, rename) under an exclusive `flock` on
//! `STORE.lock`, re-reading it under the lock, so two processes that add keys at once both land.
//! A store that cannot be read is never replaced by a fetch: a wrong `tcti` that reaches another TPM
//! must not destroy the keys the right one would unseal. `keys persistence clear` removes it.

mod kept;
#[cfg(feature = "tpm")]
pub(crate) mod tpm;

pub(crate) use kept::Kept;

use super::material::{Kek, KeyRef, MAX_ID_LEN, ProviderKind, random_bytes};
use crate::error::{Error, Result, StoreFault};
use crate::files::{AtomicFile, Overwrite, read_small};
use crate::keys::kmip::PersistenceConfig;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"SCKS";
const VERSION: u8 = 1;
/// Most keys one store holds.
pub const MAX_ENTRIES: usize = 4096;
const KEK_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The largest store file: every field at its largest.
const MAX_STORE: usize =
    8 + 1 + 24 + 2 * (2 + 4096) + 2 + MAX_ENTRIES * (3 + 2 * MAX_ID_LEN + 8 + KEK_LEN) + NONCE_LEN + TAG_LEN;

/// What the TPM layer reports.
#[cfg_attr(not(feature = "tpm"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TpmFault {
    Unavailable,
    WrongTpm,
    PcrMismatch,
    Misconfigured,
    Failed,
}

#[cfg_attr(not(feature = "tpm"), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct TpmError {
    pub(crate) fault: TpmFault,
    pub(crate) detail: String,
}

/// One key a store keeps, as its reference list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// The KEK's reference.
    pub key_ref: KeyRef,
    /// When it was stored, in seconds since 1970.
    pub stored_at: u64,
}

/// The store of one `[persistence]` section.
#[derive(Clone, Debug)]
pub struct KeyStore {
    path: PathBuf,
    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    tcti: String,
    pcrs: Vec<u8>,
}

/// A parsed store file.
struct Parsed {
    pcrs: Vec<u8>,
    public: Vec<u8>,
    private: Vec<u8>,
    entries: Vec<StoredKey>,
    /// Every byte before the nonce: the GCM associated data.
    aad_len: usize,
    nonce: [u8; NONCE_LEN],
    sealed: Vec<u8>,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        (self.0.len() >= n).then(|| {
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            head
        })
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn field16(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(len as usize)
    }
    fn id(&mut self) -> Option<&'a str> {
        let len = self.u8()?;
        core::str::from_utf8(self.take(len as usize)?).ok()
    }
}

fn parse(bytes: &[u8]) -> core::result::Result<Parsed, &'static str> {
    let mut r = Reader(bytes);
    if r.take(4) != Some(MAGIC) {
        return Err("it does not start with the key store magic \"SCKS\"");
    }
    match r.u8().ok_or("truncated")? {
        VERSION => {}
        _ => return Err("unknown format version"),
    }
    if r.take(3).ok_or("truncated")? != [0; 3] {
        return Err("reserved bytes are not zero");
    }
    let pcr_count = r.u8().ok_or("truncated")? as usize;
    let pcrs = r.take(pcr_count).ok_or("truncated")?.to_vec();
    if pcr_count > 24 || pcrs.iter().any(|&p| p > 23) || !pcrs.windows(2).all(|w| w[0] < w[1]) {
        return Err("bad PCR list");
    }
    let public = r.field16().ok_or("truncated")?.to_vec();
    let private = r.field16().ok_or("truncated")?.to_vec();
    let count = r.u16().ok_or("truncated")? as usize;
    if count > MAX_ENTRIES {
        return Err("too many entries");
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = ProviderKind::from_code(r.u8().ok_or("truncated")?).ok_or("unknown provider kind")?;
        let provider = r.id().ok_or("bad provider id")?;
        let key = r.id().ok_or("bad key id")?;
        let stored_at = r.u64().ok_or("truncated")?;
        let key_ref = KeyRef::new(kind, provider, key).map_err(|_| "bad key reference")?;
        entries.push(StoredKey { key_ref, stored_at });
    }
    let aad_len = bytes.len() - r.0.len();
    let nonce = r.take(NONCE_LEN).ok_or("truncated")?.try_into().expect("12 bytes");
    let sealed = r.take(count * KEK_LEN + TAG_LEN).ok_or("truncated")?.to_vec();
    if !r.0.is_empty() {
        return Err("trailing bytes after the tag");
    }
    Ok(Parsed { pcrs, public, private, entries, aad_len, nonce, sealed })
}

/// The header (everything the GCM tag covers but does not encrypt).
fn encode_header(pcrs: &[u8], public: &[u8], private: &[u8], entries: &[StoredKey]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0, pcrs.len() as u8]);
    out.extend_from_slice(pcrs);
    for blob in [public, private] {
        out.extend_from_slice(&(blob.len() as u16).to_le_bytes());
        out.extend_from_slice(blob);
    }
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for entry in entries {
        out.push(entry.key_ref.kind().code());
        for id in [entry.key_ref.provider_id(), entry.key_ref.key_id()] {
            out.push(id.len() as u8);
            out.extend_from_slice(id.as_bytes());
        }
        out.extend_from_slice(&entry.stored_at.to_le_bytes());
    }
    out
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The storage key's cipher.
fn cipher(key: &[u8]) -> aes_gcm::Aes256Gcm {
    aes_gcm::Aes256Gcm::new_from_slice(key).expect("the storage key is 32 bytes")
}

/// A store's contents, decrypted.
struct Opened {
    parsed: Parsed,
    storage_key: Zeroizing<Vec<u8>>,
    keks: Zeroizing<Vec<u8>>,
}

impl KeyStore {
    /// The store a `[persistence]` section names. Opens nothing yet.
    pub fn new(config: &PersistenceConfig) -> KeyStore {
        KeyStore { path: config.store.clone(), tcti: config.tcti.clone(), pcrs: config.pcrs.clone() }
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, fault: StoreFault, reason: impl Into<String>) -> Error {
        Error::KeyStore { path: self.path.display().to_string(), fault, reason: reason.into() }
    }

    #[cfg_attr(not(feature = "tpm"), allow(dead_code))]
    fn tpm_error(&self, err: TpmError) -> Error {
        let (fault, why) = match err.fault {
            TpmFault::Unavailable => (StoreFault::TpmUnavailable, "the TPM cannot be reached"),
            TpmFault::WrongTpm => (
                StoreFault::WrongTpm,
                "it was sealed by another TPM, or this TPM was cleared since (run `keys persistence clear` to start a new store)",
            ),
            TpmFault::PcrMismatch => (
                StoreFault::PcrMismatch,
                "the PCRs it is sealed to have changed (firmware or boot chain update?)",
            ),
            TpmFault::Misconfigured => (StoreFault::Misconfigured, "the TPM is misconfigured"),
            TpmFault::Failed => (StoreFault::TpmFailed, "the TPM refused"),
        };
        self.error(fault, format!("{why}: {}", err.detail))
    }

    #[cfg(feature = "tpm")]
    fn seal(&self, secret: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        tpm::seal(&self.tcti, secret, &self.pcrs).map_err(|e| self.tpm_error(e))
    }

    #[cfg(feature = "tpm")]
    fn unseal(&self, parsed: &Parsed) -> Result<Zeroizing<Vec<u8>>> {
        tpm::unseal(&self.tcti, &parsed.public, &parsed.private, &parsed.pcrs).map_err(|e| self.tpm_error(e))
    }

    #[cfg(not(feature = "tpm"))]
    fn seal(&self, _secret: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        Err(self.no_tpm())
    }

    #[cfg(not(feature = "tpm"))]
    fn unseal(&self, _parsed: &Parsed) -> Result<Zeroizing<Vec<u8>>> {
        Err(self.no_tpm())
    }

    #[cfg(not(feature = "tpm"))]
    fn no_tpm(&self) -> Error {
        self.error(StoreFault::Unsupported, "this build has no TPM support (build with the `tpm` feature)")
    }

    /// The lock that serializes every change; `exclusive` for a writer.
    fn lock(&self, exclusive: bool) -> Result<std::fs::File> {
        let mut name = self.path.clone().into_os_string();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|err| Error::io(lock_path.display().to_string(), err))?;
        let op = if exclusive {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        rustix::fs::flock(&file, op).map_err(|err| Error::io(lock_path.display().to_string(), err.into()))?;
        Ok(file)
    }

    /// The store's bytes, or None when there is no store file.
    fn read(&self) -> Result<Option<Parsed>> {
        let bytes = match read_small(&self.path, MAX_STORE) {
            Ok(bytes) => bytes,
            Err(Error::Io { cause, .. }) if cause.io_error().kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(Error::Io { cause, .. }) if cause.io_error().kind() == std::io::ErrorKind::InvalidData => {
                return Err(self.error(StoreFault::Corrupt, "the file is too large to be a key store"));
            }
            Err(err) => return Err(err),
        };
        let parsed = parse(&bytes)
            .map_err(|why| self.error(StoreFault::Corrupt, format!("not a valid key store: {why}")))?;
        if parsed.pcrs != self.pcrs {
            return Err(self.error(
                StoreFault::Misconfigured,
                format!("it is sealed to PCRs {:?}, the configuration says {:?}", parsed.pcrs, self.pcrs),
            ));
        }
        Ok(Some(parsed))
    }

    fn open(&self, parsed: Parsed) -> Result<Opened> {
        let storage_key = self.unseal(&parsed)?;
        if storage_key.len() != 32 {
            return Err(self.error(StoreFault::Corrupt, "the sealed storage key is not 32 bytes"));
        }
        let mut header = encode_header(&parsed.pcrs, &parsed.public, &parsed.private, &parsed.entries);
        header.truncate(parsed.aad_len);
        let keks = cipher(&storage_key)
            .decrypt(&parsed.nonce.into(), Payload { msg: &parsed.sealed, aad: &header })
            .map_err(|_| self.error(StoreFault::Corrupt, "the keys do not decrypt: the file was altered"))?;
        Ok(Opened { parsed, storage_key, keks: Zeroizing::new(keks) })
    }

    /// Writes a store with `entries` and their `keks` (in order) under `storage_key`.
    fn write(
        &self,
        sealed: (&[u8], &[u8]),
        storage_key: &[u8],
        entries: &[StoredKey],
        keks: &[u8],
        overwrite: Overwrite,
    ) -> Result<()> {
        let mut bytes = encode_header(&self.pcrs, sealed.0, sealed.1, entries);
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let ciphertext = cipher(storage_key)
            .encrypt(&nonce.into(), Payload { msg: keks, aad: &bytes })
            .expect("AES-GCM encrypts any length this store has");
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&ciphertext);
        let file = AtomicFile::create(&self.path, overwrite, 0o600)?;
        file.file().write_all(&bytes).map_err(|err| Error::io(self.path.display().to_string(), err))?;
        file.commit()
    }

    /// The keys the store lists (read without the TPM), or None when there is no store.
    pub fn list(&self) -> Result<Option<Vec<StoredKey>>> {
        let _lock = self.lock(false)?;
        Ok(self.read()?.map(|parsed| parsed.entries))
    }

    /// Checks that this TPM unseals the store (with the PCRs as they are now).
    pub fn check(&self) -> Result<bool> {
        let _lock = self.lock(false)?;
        match self.read()? {
            None => Ok(false),
            Some(parsed) => self.open(parsed).map(|_| true),
        }
    }

    /// The KEK kept for `key_ref`, if the store has it.
    pub fn recall(&self, key_ref: &KeyRef) -> Result<Option<Kek>> {
        let _lock = self.lock(false)?;
        let Some(parsed) = self.read()? else { return Ok(None) };
        let Some(index) = parsed.entries.iter().position(|e| &e.key_ref == key_ref) else { return Ok(None) };
        let opened = self.open(parsed)?;
        Ok(Some(Kek::from_bytes(&opened.keks[index * KEK_LEN..(index + 1) * KEK_LEN])?))
    }

    /// Keeps `kek` for `key_ref`. Returns false when the store has it already (checked without the
    /// TPM). Makes the store (and seals a new storage key) when there is none.
    pub fn remember(&self, key_ref: &KeyRef, kek: &Kek) -> Result<bool> {
        let _lock = self.lock(true)?;
        let entry = StoredKey { key_ref: key_ref.clone(), stored_at: now() };
        let Some(parsed) = self.read()? else {
            let mut storage_key = Zeroizing::new(vec![0u8; 32]);
            random_bytes(&mut storage_key)?;
            let (public, private) = self.seal(&storage_key)?;
            self.write((&public, &private), &storage_key, &[entry], kek.as_bytes(), Overwrite::Refuse)?;
            return Ok(true);
        };
        if parsed.entries.iter().any(|e| &e.key_ref == key_ref) {
            return Ok(false);
        }
        if parsed.entries.len() >= MAX_ENTRIES {
            return Err(self.error(StoreFault::Full, format!("it holds {MAX_ENTRIES} keys already")));
        }
        let mut opened = self.open(parsed)?;
        opened.parsed.entries.push(entry);
        opened.keks.extend_from_slice(kek.as_bytes());
        let p = &opened.parsed;
        self.write(
            (&p.public, &p.private),
            &opened.storage_key,
            &p.entries,
            &opened.keks,
            Overwrite::Replace,
        )?;
        Ok(true)
    }

    /// Removes the KEK kept for `key_ref` (a key the server revoked or destroyed). Returns false when
    /// the store does not have it.
    pub fn forget(&self, key_ref: &KeyRef) -> Result<bool> {
        let _lock = self.lock(true)?;
        let Some(parsed) = self.read()? else { return Ok(false) };
        let Some(index) = parsed.entries.iter().position(|e| &e.key_ref == key_ref) else { return Ok(false) };
        let mut opened = self.open(parsed)?;
        opened.parsed.entries.remove(index);
        let mut keks = Zeroizing::new(Vec::with_capacity(opened.keks.len()));
        keks.extend_from_slice(&opened.keks[..index * KEK_LEN]);
        keks.extend_from_slice(&opened.keks[(index + 1) * KEK_LEN..]);
        let p = &opened.parsed;
        self.write((&p.public, &p.private), &opened.storage_key, &p.entries, &keks, Overwrite::Replace)?;
        Ok(true)
    }

    /// Deletes the store file. Returns false when there was none.
    pub fn clear(&self) -> Result<bool> {
        let _lock = self.lock(true)?;
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                crate::files::sync_dir(
                    self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")),
                )
                .map_err(|err| Error::io(self.path.display().to_string(), err))?;
                Ok(true)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(Error::io(self.path.display().to_string(), err)),
        }
    }
}

/// Fuzzing entry point: any bytes as a store file. What parses must encode back to the same header.
#[doc(hidden)]
pub fn fuzz_parse(input: &[u8]) {
    if let Ok(parsed) = parse(input) {
        let header = encode_header(&parsed.pcrs, &parsed.public, &parsed.private, &parsed.entries);
        assert_eq!(header, input[..parsed.aad_len], "the header must encode back to its bytes");
        assert_eq!(parsed.sealed.len(), parsed.entries.len() * KEK_LEN + TAG_LEN);
    }
}
