//! LUKS1 and LUKS2 volumes (dm-crypt's on-disk format) opened in user space, on sectorcrypt's data
//! path: no kernel module, no device mapper, no root.
//!
//! A LUKS volume is a header, keyslots and a data segment. The data segment is XTS ciphertext of
//! sectors (`sector_size` bytes: 512 in LUKS1, 512 to 4096 in LUKS2) whose tweak (IV) is plain64 of
//! the sector's position in 512-byte units, plus the segment's `iv_tweak`: a 4 KiB sector `n` has
//! tweak `8n`. The volume key that encrypts it is stored once per keyslot:
//!
//! 1. the passphrase and the keyslot's salt go through the keyslot's KDF (PBKDF2 with SHA-1/256/512,
//!    Argon2i or Argon2id, at the cost the header names) to a key for the keyslot area;
//! 2. the keyslot area (`key_bytes * stripes` bytes) is XTS-decrypted with it in 512-byte sectors from
//!    tweak 0, giving the anti-forensic split of the key: `stripes` blocks that merge back by XORing
//!    each into a running value and diffusing it with the hash between blocks (`af::merge`);
//! 3. the merged candidate is checked against the digest: PBKDF2 of the candidate with the digest's
//!    salt and iteration count must equal the stored digest (constant-time compare). A wrong
//!    passphrase fails here, never earlier.
//!
//! LUKS1 keeps all of this in one 592-byte binary header. LUKS2 keeps a binary header and a JSON
//! area in two copies (each with a SHA-256 over both, and a sequence id: the newest valid copy wins);
//! the JSON names keyslots, segments and digests. Only `aes-xts-plain64` with 256- and 512-bit keys
//! is supported; other ciphers, integrity (dm-integrity), several segments or a mandatory requirement
//! (an unfinished reencryption) are refused with a message naming them. Tokens are listed but not
//! used: unlocking always takes a passphrase. Nothing here ever writes a header.

mod af;
mod luks1;
mod luks2;
mod unlock;

use crate::XtsKey;
use crate::disk::{Layout, Notice, OpenOptions, Volume, disk_error, lock, storage_error};
use crate::error::{DiskFault, Result};
use crate::files::{FileKinds, open_file};
use crate::storage::{FileStorage, Storage};
use crate::xts::Xts;
use serde::Serialize;
use std::path::Path;

/// LUKS's own sector: key material and IVs count in 512-byte units.
pub(crate) const SECTOR: u64 = 512;

/// A LUKS header as read from a volume: what `sectorcrypt luks dump` shows. Needs no passphrase.
#[derive(Clone, Debug, Serialize)]
pub struct LuksHeader {
    /// 1 or 2.
    pub version: u16,
    /// The volume's UUID, as text.
    pub uuid: String,
    /// LUKS2 label (empty for LUKS1 and unlabelled volumes).
    pub label: String,
    /// The data cipher, dm-crypt style (`aes-xts-plain64`).
    pub cipher: String,
    /// Bytes of the volume key (64 for XTS-AES-256, 32 for XTS-AES-128).
    pub key_bytes: usize,
    /// Bytes per data sector.
    pub sector_size: u32,
    /// Where the data segment starts, in bytes.
    pub data_offset: u64,
    /// Bytes of the data segment, or `None` for "to the end of the device" (LUKS1, LUKS2 `dynamic`).
    pub data_size: Option<u64>,
    /// Added to every sector's IV (LUKS2 `iv_tweak`; 0 in LUKS1).
    pub iv_tweak: u64,
    /// LUKS2: bytes of one header copy (binary header and JSON area); LUKS1: 592.
    pub metadata_size: u64,
    /// LUKS2: the sequence id of the copy in use.
    pub seqid: u64,
    /// LUKS2: a note for each header copy that is damaged (the other one is in use).
    pub damaged_copies: Vec<String>,
    /// The active keyslots.
    pub keyslots: Vec<Keyslot>,
    /// The volume-key digests (LUKS1 has one).
    pub digests: Vec<Digest>,
    /// LUKS2 token types (listed, not used).
    pub tokens: Vec<String>,
    /// LUKS2 mandatory requirements (none is supported).
    pub requirements: Vec<String>,
    /// LUKS2 segment integrity, if any (not supported).
    pub integrity: Option<String>,
    /// LUKS2: more than one data segment (an unfinished reencryption; not supported).
    pub segments: usize,
}

/// One keyslot: how a passphrase becomes the key of its area, and where the split volume key is.
#[derive(Clone, Debug, Serialize)]
pub struct Keyslot {
    /// Its number.
    pub index: u32,
    /// LUKS2 keyslot type (`luks2`; `reencrypt` slots hold no volume key); `luks1` for LUKS1.
    pub kind: String,
    /// Bytes of the volume key it holds.
    pub key_bytes: usize,
    /// How the passphrase is stretched.
    pub kdf: Kdf,
    /// Anti-forensic stripes.
    pub af_stripes: u32,
    /// Hash of the anti-forensic diffusion.
    pub af_hash: String,
    /// Where its area starts, in bytes.
    pub area_offset: u64,
    /// Bytes of its area.
    pub area_size: u64,
    /// The cipher of its area.
    pub area_cipher: String,
    /// Bytes of the area key.
    pub area_key_bytes: usize,
    /// LUKS2 priority: 0 ignore (tried only when named), 1 normal, 2 high.
    pub priority: u8,
}

/// A keyslot's key derivation function.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Kdf {
    /// PBKDF2-HMAC.
    Pbkdf2 {
        /// `sha1`, `sha256` or `sha512`.
        hash: String,
        /// Iterations.
        iterations: u32,
        /// Salt.
        #[serde(serialize_with = "hex_bytes")]
        salt: Vec<u8>,
    },
    /// Argon2 (version 0x13).
    Argon2 {
        /// `argon2i` or `argon2id`.
        variant: String,
        /// Passes (time cost).
        time: u32,
        /// Memory in KiB.
        memory_kib: u32,
        /// Lanes (parallelism).
        parallel: u32,
        /// Salt.
        #[serde(serialize_with = "hex_bytes")]
        salt: Vec<u8>,
    },
}

/// A digest of the volume key: PBKDF2 of the key must give `digest`.
#[derive(Clone, Debug, Serialize)]
pub struct Digest {
    /// `sha1`, `sha256` or `sha512`.
    pub hash: String,
    /// Iterations.
    pub iterations: u32,
    /// Salt.
    #[serde(serialize_with = "hex_bytes")]
    pub salt: Vec<u8>,
    /// The expected PBKDF2 output.
    #[serde(serialize_with = "hex_bytes")]
    pub digest: Vec<u8>,
    /// The keyslots it checks.
    pub keyslots: Vec<u32>,
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

fn malformed(store: &dyn Storage, reason: impl Into<String>) -> crate::Error {
    disk_error(store.name(), DiskFault::Corrupt, format!("LUKS header: {}", reason.into()))
}

fn unsupported(store: &dyn Storage, what: impl Into<String>) -> crate::Error {
    disk_error(store.name(), DiskFault::Unsupported, format!("{} is not supported", what.into()))
}

/// Reads `len` bytes at `offset`, or fails naming a store too short to hold them.
fn read_exact(store: &dyn Storage, offset: u64, len: usize, what: &str) -> Result<Vec<u8>> {
    let size = store.size().map_err(|err| storage_error(store, err))?;
    if offset.checked_add(len as u64).is_none_or(|end| end > size) {
        return Err(disk_error(
            store.name(),
            DiskFault::Truncated,
            format!("truncated: {size} bytes, too short for its {what}"),
        ));
    }
    let mut buf = vec![0u8; len];
    store.read_at(&mut buf, offset).map_err(|err| storage_error(store, err))?;
    Ok(buf)
}

/// Reads and checks the LUKS header of a store (either version).
pub fn read_header(store: &dyn Storage) -> Result<LuksHeader> {
    let magic = read_exact(store, 0, 8, "LUKS header").map_err(|err| match err {
        crate::Error::Disk { fault: DiskFault::Truncated, .. } => not_luks(store),
        other => other,
    })?;
    match (&magic[..6], u16::from_be_bytes([magic[6], magic[7]])) {
        (luks1::MAGIC, 1) => luks1::read(store),
        (luks1::MAGIC, 2) => luks2::read(store),
        (luks1::MAGIC, version) => Err(unsupported(store, format!("LUKS version {version}"))),
        // A damaged primary LUKS2 header still has its secondary copy.
        _ => luks2::read(store).map_err(|_| not_luks(store)),
    }
}

fn not_luks(store: &dyn Storage) -> crate::Error {
    disk_error(store.name(), DiskFault::NotADisk, "no LUKS header (not a LUKS volume)")
}

/// Reads the LUKS header of a file or block device.
pub fn read_header_file(path: &Path) -> Result<LuksHeader> {
    let file = open_file(path, false, FileKinds::RegularOrBlockDevice)?;
    read_header(&FileStorage::from_file(path, file, false))
}

impl LuksHeader {
    /// Refuses what this build cannot open, naming it.
    fn check_supported(&self, store: &dyn Storage) -> Result<()> {
        if let Some(integrity) = &self.integrity {
            return Err(unsupported(store, format!("integrity protection ({integrity})")));
        }
        if !self.requirements.is_empty() {
            return Err(unsupported(
                store,
                format!("the mandatory requirement {}", self.requirements.join(", ")),
            ));
        }
        if self.segments != 1 {
            return Err(unsupported(
                store,
                format!("{} data segments (an unfinished reencryption?)", self.segments),
            ));
        }
        if self.cipher != "aes-xts-plain64" {
            return Err(unsupported(store, format!("the cipher {} (only aes-xts-plain64 is)", self.cipher)));
        }
        if self.key_bytes != 32 && self.key_bytes != 64 {
            return Err(unsupported(store, format!("a {}-bit aes-xts key", self.key_bytes * 8)));
        }
        if !self.sector_size.is_power_of_two() || !(512..=4096).contains(&self.sector_size) {
            return Err(unsupported(store, format!("the sector size {}", self.sector_size)));
        }
        if !self.data_offset.is_multiple_of(SECTOR) {
            return Err(malformed(
                store,
                format!("the data offset {} is not whole sectors", self.data_offset),
            ));
        }
        Ok(())
    }

    /// The data segment's layout on a store of `store_size` bytes.
    fn layout(&self, store: &dyn Storage, store_size: u64) -> Result<Layout> {
        let unit = u64::from(self.sector_size);
        let available = store_size.saturating_sub(self.data_offset);
        let size = match self.data_size {
            Some(size) if size > available => {
                return Err(disk_error(
                    store.name(),
                    DiskFault::Truncated,
                    format!(
                        "truncated: {store_size} bytes, but its data segment ends at {}",
                        self.data_offset + size
                    ),
                ));
            }
            Some(size) => size,
            None => available,
        } / unit
            * unit;
        if size == 0 {
            return Err(disk_error(
                store.name(),
                DiskFault::Truncated,
                "truncated: no room for data after the header",
            ));
        }
        Ok(Layout {
            data_offset: self.data_offset,
            unit,
            stripe: size,
            size,
            tweak_base: self.iv_tweak,
            tweak_step: unit / SECTOR,
            thin: false,
        })
    }
}

impl Volume {
    /// Opens a LUKS1 or LUKS2 volume held by `store`, unlocking its volume key with `passphrase`. The
    /// header is never written; writes go to the data segment only.
    pub fn open_luks(store: Box<dyn Storage>, passphrase: &[u8], options: OpenOptions) -> Result<Volume> {
        lock(store.as_ref(), options.writable)?;
        let header = read_header(store.as_ref())?;
        header.check_supported(store.as_ref())?;
        let size = store.size().map_err(|err| storage_error(store.as_ref(), err))?;
        let layout = header.layout(store.as_ref(), size)?;
        let key = unlock::volume_key(store.as_ref(), &header, passphrase)?;
        let xts = Xts::new(&XtsKey::from_bytes(&key)?, options.backend)?;
        let notices = header
            .damaged_copies
            .iter()
            .enumerate()
            .map(|(copy, problem)| Notice::HeaderCopy {
                member: store.name().to_owned(),
                copy,
                problem: problem.clone(),
            })
            .collect();
        Volume::from_parts(
            vec![store],
            None,
            layout,
            crate::disk::Keys::at_rest(xts, 1),
            options,
            notices,
            false,
        )
    }

    /// Opens the LUKS volume in a file or block device (see [`Volume::open_luks`]).
    pub fn open_luks_file(path: &Path, passphrase: &[u8], options: OpenOptions) -> Result<Volume> {
        let file = open_file(path, options.writable, FileKinds::RegularOrBlockDevice)?;
        let mut storage = FileStorage::from_file(path, file, options.writable);
        if options.direct {
            let header = read_header(&storage)?;
            // O_DIRECT needs every request aligned to the device's block: 4 KiB sectors at an
            // aligned offset always are.
            if header.sector_size >= 4096 && header.data_offset.is_multiple_of(4096) {
                storage.open_direct(path);
            }
        }
        Volume::open_luks(Box::new(storage), passphrase, options)
    }

    /// The volume key of a LUKS volume (HAZMAT: anyone with it can decrypt the volume without the
    /// passphrase), as `cryptsetup luksDump --dump-volume-key` shows it.
    pub fn hazmat_luks_volume_key(
        store: &dyn Storage,
        passphrase: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let header = read_header(store)?;
        header.check_supported(store)?;
        unlock::volume_key(store, &header, passphrase)
    }
}
