//! The on-disk header: two checksummed copies at the start of every disk or group member.
//!
//! `docs/FORMAT.md` is the full description; in short, copy 0 sits at byte 0 and copy 1 at 64 KiB, each
//! [`HEADER_LEN`] bytes ending in a SHA-256 of everything before it, and the data area starts at 1 MiB.
//! An update writes the copy that is not the current one first (with the next sequence number),
//! syncs, then the other, so a crash at any point leaves at least one complete copy; on open the valid
//! copy with the highest sequence number wins.

use crate::error::{Error, Result};
use crate::key::KeySize;
use crate::keys::{MAX_BLOB_LEN, WrappedDek};
use crate::xts::{MAX_DATA_UNIT, MIN_DATA_UNIT};
use sha2::Digest;

/// Bytes of one header copy (one page, so O_DIRECT can write it alone).
pub const HEADER_LEN: usize = 4096;
/// Byte offsets of the two header copies.
pub const HEADER_OFFSETS: [u64; 2] = [0, 64 * 1024];
/// Where the data area starts.
pub const DATA_OFFSET: u64 = 1 << 20;
/// The format version of a disk at rest: what every build since the first reads.
pub const FORMAT_VERSION: u16 = 1;
/// The format version of a disk in the middle of a deep rekey: version 1 and the re-encryption record
/// (`docs/FORMAT.md`). Builds that do not know it refuse the disk, naming the version.
pub const REENCRYPTING_VERSION: u16 = 2;
/// Where the two resilience areas of a deep rekey start, and their length.
pub const AREA_OFFSETS: [u64; 2] = [128 << 10, 576 << 10];
/// Bytes of one resilience area.
pub const AREA_LEN: u64 = 448 << 10;
/// The torn-write granularity a deep rekey tolerates, and the piece each fingerprint describes.
pub const PIECE: u64 = 512;
/// Bytes of one piece's fingerprint (the first bytes of its new ciphertext).
pub const FINGERPRINT: u64 = 8;
/// The most bytes of data one resilience area can describe: 28 MiB.
pub const MAX_HOT_BYTES: u64 = AREA_LEN / FINGERPRINT * PIECE;
/// Default stripe of a disk group.
pub const DEFAULT_STRIPE: u64 = 1 << 20;

const MAGIC: &[u8; 8] = b"SCTRDISK";
const CHECKSUM_AT: usize = HEADER_LEN - 32;
const BLOB_AT: usize = 106;
const NEW_BLOB_LEN_AT: usize = 1024;
const NEW_BLOB_AT: usize = 1026;
const POSITION_AT: usize = 1536;
const HOT_AT: usize = 1544;
const AREA_AT: usize = 1552;
const AREA_SUM_AT: usize = 1560;
const RECORD_END: usize = AREA_SUM_AT + 32;
const TWEAK_LOGICAL_UNIT: u8 = 1;

/// VM encryption (one DEK per disk) or datastore encryption (one DEK per disk group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One virtual disk with its own DEK.
    Vm,
    /// A member of a disk group sharing one DEK.
    Datastore,
}

impl Mode {
    /// `vm` or `datastore`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Vm => "vm",
            Mode::Datastore => "datastore",
        }
    }
}

/// Where a member sits in its group (a VM-mode disk is member 0 of 1, with one stripe as big as itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GroupPlace {
    /// The group's uuid (all zero for a VM-mode disk).
    #[serde(serialize_with = "uuid_text")]
    pub group_uuid: [u8; 16],
    /// This member's index, 0-based.
    pub member_index: u32,
    /// How many members the group has.
    pub member_count: u32,
    /// Bytes per stripe (RAID-0): logical stripe `s` lives on member `s % member_count`.
    pub stripe: u64,
}

/// One decoded header copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bumped at every write of a copy; the newest valid copy wins.
    pub sequence: u64,
    /// Bumped at every change of the key material (rekey); all members of a group must agree.
    pub generation: u64,
    /// This disk's (or member's) uuid.
    pub uuid: [u8; 16],
    /// VM or datastore.
    pub mode: Mode,
    /// XTS-AES-256 or XTS-AES-128.
    pub cipher: KeySize,
    /// Bytes per data unit.
    pub data_unit: u32,
    /// Where the data area starts.
    pub data_offset: u64,
    /// Bytes of data on this member.
    pub data_size: u64,
    /// The group fields (trivial in VM mode).
    pub place: GroupPlace,
    /// The DEK, wrapped, with its KEK reference and verifier.
    pub wrapped_dek: WrappedDek,
    /// A deep rekey in progress (format version 2), if any.
    pub reencryption: Option<Reencryption>,
}

/// The record of a deep rekey in progress on one disk or member (`docs/FORMAT.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reencryption {
    /// The new DEK, wrapped.
    pub new_dek: WrappedDek,
    /// Data units of this member below it are under the new DEK.
    pub position: u64,
    /// Units from `position` that may be under either DEK (the resilience area says which pieces).
    pub hot: u64,
    /// The resilience area that describes the hot units: 0 or 1.
    pub area: u8,
    /// SHA-256 of that area's bytes in use.
    pub area_sum: [u8; 32],
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::Header(reason.into())
}

impl Header {
    /// The encoding of this header as copy `slot` (0 or 1).
    pub fn encode(&self, slot: usize) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_LEN];
        out[..8].copy_from_slice(MAGIC);
        let version = if self.reencryption.is_some() { REENCRYPTING_VERSION } else { FORMAT_VERSION };
        out[8..10].copy_from_slice(&version.to_le_bytes());
        out[10] = slot as u8;
        out[11] = match self.mode {
            Mode::Vm => 1,
            Mode::Datastore => 2,
        };
        out[12] = match self.cipher {
            KeySize::Aes256 => 1,
            KeySize::Aes128 => 2,
        };
        out[13] = TWEAK_LOGICAL_UNIT;
        out[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        out[24..32].copy_from_slice(&self.generation.to_le_bytes());
        out[32..48].copy_from_slice(&self.uuid);
        out[48..52].copy_from_slice(&self.data_unit.to_le_bytes());
        out[56..64].copy_from_slice(&self.data_offset.to_le_bytes());
        out[64..72].copy_from_slice(&self.data_size.to_le_bytes());
        out[72..88].copy_from_slice(&self.place.group_uuid);
        out[88..92].copy_from_slice(&self.place.member_index.to_le_bytes());
        out[92..96].copy_from_slice(&self.place.member_count.to_le_bytes());
        out[96..104].copy_from_slice(&self.place.stripe.to_le_bytes());
        let blob = self.wrapped_dek.to_bytes();
        out[104..106].copy_from_slice(&(blob.len() as u16).to_le_bytes());
        out[BLOB_AT..BLOB_AT + blob.len()].copy_from_slice(&blob);
        if let Some(record) = &self.reencryption {
            let blob = record.new_dek.to_bytes();
            out[NEW_BLOB_LEN_AT..NEW_BLOB_AT].copy_from_slice(&(blob.len() as u16).to_le_bytes());
            out[NEW_BLOB_AT..NEW_BLOB_AT + blob.len()].copy_from_slice(&blob);
            out[POSITION_AT..POSITION_AT + 8].copy_from_slice(&record.position.to_le_bytes());
            out[HOT_AT..HOT_AT + 8].copy_from_slice(&record.hot.to_le_bytes());
            out[AREA_AT] = record.area;
            out[AREA_SUM_AT..RECORD_END].copy_from_slice(&record.area_sum);
        }
        let checksum = sha2::Sha256::digest(&out[..CHECKSUM_AT]);
        out[CHECKSUM_AT..].copy_from_slice(&checksum);
        out
    }

    /// Decodes copy `slot`. Every inconsistency is an [`Error::Header`] naming it (or
    /// [`Error::FormatVersion`]); nothing panics on any input.
    pub fn decode(bytes: &[u8], slot: usize) -> Result<Header> {
        if bytes.len() < HEADER_LEN {
            return Err(malformed("truncated (the file ends inside the header)"));
        }
        let bytes = &bytes[..HEADER_LEN];
        if &bytes[..8] != MAGIC {
            return Err(Error::NotADisk);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version > REENCRYPTING_VERSION {
            let found = version.min(255) as u8;
            return Err(Error::FormatVersion {
                what: "disk header",
                found,
                supported: REENCRYPTING_VERSION as u8,
            });
        }
        if sha2::Sha256::digest(&bytes[..CHECKSUM_AT])[..] != bytes[CHECKSUM_AT..] {
            return Err(malformed("checksum mismatch"));
        }
        if version == 0 {
            return Err(malformed("format version 0 does not exist"));
        }
        if bytes[10] as usize != slot {
            return Err(malformed(format!("copy {} found where copy {slot} belongs", bytes[10])));
        }
        let u32_at = |at: usize| u32::from_le_bytes(array(&bytes[at..]));
        let u64_at = |at: usize| u64::from_le_bytes(array(&bytes[at..]));
        let mode = match bytes[11] {
            1 => Mode::Vm,
            2 => Mode::Datastore,
            _ => return Err(malformed("unknown mode")),
        };
        let cipher = match bytes[12] {
            1 => KeySize::Aes256,
            2 => KeySize::Aes128,
            _ => return Err(malformed("unknown cipher")),
        };
        if bytes[13] != TWEAK_LOGICAL_UNIT {
            return Err(malformed("unknown tweak convention"));
        }
        let blob_len = u16::from_le_bytes([bytes[104], bytes[105]]) as usize;
        if blob_len > MAX_BLOB_LEN {
            return Err(malformed("wrapped key longer than the format allows"));
        }
        let wrapped_dek = WrappedDek::from_bytes(&bytes[BLOB_AT..BLOB_AT + blob_len])?;
        let (reencryption, reserved) = if version == REENCRYPTING_VERSION {
            let new_len = u16::from_le_bytes([bytes[NEW_BLOB_LEN_AT], bytes[NEW_BLOB_LEN_AT + 1]]) as usize;
            if new_len > MAX_BLOB_LEN {
                return Err(malformed("new wrapped key longer than the format allows"));
            }
            let record = Reencryption {
                new_dek: WrappedDek::from_bytes(&bytes[NEW_BLOB_AT..NEW_BLOB_AT + new_len])?,
                position: u64::from_le_bytes(array(&bytes[POSITION_AT..])),
                hot: u64::from_le_bytes(array(&bytes[HOT_AT..])),
                area: bytes[AREA_AT],
                area_sum: array(&bytes[AREA_SUM_AT..]),
            };
            let reserved = vec![
                &bytes[BLOB_AT + blob_len..NEW_BLOB_LEN_AT],
                &bytes[NEW_BLOB_AT + new_len..POSITION_AT],
                &bytes[AREA_AT + 1..AREA_SUM_AT],
                &bytes[RECORD_END..CHECKSUM_AT],
            ];
            (Some(record), reserved)
        } else {
            (None, vec![&bytes[BLOB_AT + blob_len..CHECKSUM_AT]])
        };
        // Reserved bytes must be zero, so a later version can give them a meaning.
        let reserved = [&bytes[14..16], &bytes[52..56]].into_iter().chain(reserved);
        if reserved.into_iter().any(|field| field.iter().any(|&b| b != 0)) {
            return Err(malformed("reserved bytes are not zero"));
        }
        let header = Header {
            sequence: u64_at(16),
            generation: u64_at(24),
            uuid: array(&bytes[32..]),
            mode,
            cipher,
            data_unit: u32_at(48),
            data_offset: u64_at(56),
            data_size: u64_at(64),
            place: GroupPlace {
                group_uuid: array(&bytes[72..]),
                member_index: u32_at(88),
                member_count: u32_at(92),
                stripe: u64_at(96),
            },
            wrapped_dek,
            reencryption,
        };
        header.check_geometry()?;
        Ok(header)
    }

    /// The layout rules every header obeys.
    pub(crate) fn check_geometry(&self) -> Result<()> {
        let unit = self.data_unit as u64;
        if !(MIN_DATA_UNIT as u64..=MAX_DATA_UNIT as u64).contains(&unit) || !unit.is_power_of_two() {
            return Err(malformed(format!("data-unit size {unit} is not a power of two from 512 to 131072")));
        }
        if self.cipher != self.wrapped_dek.dek_size() {
            return Err(malformed("the cipher does not match the wrapped key's kind"));
        }
        if self.data_offset < HEADER_OFFSETS[1] + HEADER_LEN as u64 || !self.data_offset.is_multiple_of(4096)
        {
            return Err(malformed("the data area overlaps the headers or is not 4 KiB aligned"));
        }
        if self.data_size == 0 || !self.data_size.is_multiple_of(unit) {
            return Err(malformed("the data size is zero or not a whole number of data units"));
        }
        if self.data_offset.checked_add(self.data_size).is_none() {
            return Err(malformed("the data area passes 2^64 bytes"));
        }
        if let Some(record) = &self.reencryption {
            let units = self.data_size / unit;
            if record.new_dek.dek_size() != self.cipher {
                return Err(malformed("the new wrapped key's kind does not match the cipher"));
            }
            if record.new_dek.verifier() == self.wrapped_dek.verifier() {
                return Err(malformed("the deep rekey's new key is the old one"));
            }
            if record.area > 1
                || record.position.checked_add(record.hot).is_none_or(|end| end > units)
                || record.hot * unit > MAX_HOT_BYTES
                || self.data_offset < AREA_OFFSETS[1] + AREA_LEN
            {
                return Err(malformed("inconsistent deep rekey record (position, hot zone, area)"));
            }
        }
        let place = &self.place;
        match self.mode {
            Mode::Vm
                if place.member_count != 1 || place.member_index != 0 || place.stripe != self.data_size =>
            {
                Err(malformed("a VM-mode disk must be member 0 of 1 with one stripe"))
            }
            Mode::Datastore
                if place.member_count == 0
                    || place.member_index >= place.member_count
                    || place.stripe == 0
                    || !place.stripe.is_multiple_of(unit)
                    || !self.data_size.is_multiple_of(place.stripe)
                    || (self.data_size / unit).checked_mul(place.member_count as u64).is_none() =>
            {
                Err(malformed("inconsistent group fields (member index/count, stripe)"))
            }
            _ => Ok(()),
        }
    }

    /// True when `other` is the same header apart from its sequence number.
    pub fn same_content(&self, other: &Header) -> bool {
        Header { sequence: 0, ..self.clone() } == Header { sequence: 0, ..other.clone() }
    }
}

/// The first `N` bytes of `bytes` (which the caller knows to be long enough; zeros past its end).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    core::array::from_fn(|i| bytes.get(i).copied().unwrap_or(0))
}

/// What one header copy holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyState {
    /// A valid copy.
    Valid(Box<Header>),
    /// A copy that does not decode, and why.
    Damaged(String),
}

/// Both copies of a disk's header and the one that counts.
#[derive(Clone, Debug)]
pub struct HeaderPair {
    /// Copy 0 and copy 1.
    pub copies: [CopyState; 2],
    /// The slot of the valid copy with the highest sequence number.
    pub current: usize,
    /// That copy's header.
    header: Header,
}

impl HeaderPair {
    /// Decodes both copies from the first bytes of a disk (at least 64 KiB + one header, or less if the
    /// file is shorter). Fails only if neither copy is valid.
    pub fn decode(read_copy: impl Fn(usize) -> std::io::Result<Vec<u8>>) -> Result<HeaderPair> {
        let mut no_magic = [false; 2];
        let copies = [0, 1].map(|slot| match read_copy(slot) {
            Ok(bytes) => match Header::decode(&bytes, slot) {
                Ok(header) => CopyState::Valid(Box::new(header)),
                Err(Error::Header(reason)) => CopyState::Damaged(reason),
                Err(Error::NotADisk) => {
                    no_magic[slot] = true;
                    CopyState::Damaged("no sectorcrypt magic (not a sectorcrypt disk, or overwritten)".into())
                }
                Err(err) => CopyState::Damaged(err.to_string()),
            },
            Err(err) => CopyState::Damaged(format!("cannot read: {err}")),
        });
        let (current, header) = match &copies {
            [CopyState::Valid(a), CopyState::Valid(b)] if b.sequence > a.sequence => (1, b),
            [CopyState::Valid(a), _] => (0, a),
            [_, CopyState::Valid(b)] => (1, b),
            [CopyState::Damaged(_), CopyState::Damaged(_)] if no_magic == [true, true] => {
                return Err(Error::NotADisk);
            }
            [CopyState::Damaged(a), CopyState::Damaged(b)] => {
                return Err(malformed(format!("both header copies are damaged: copy 0: {a}; copy 1: {b}")));
            }
        };
        let header = Header::clone(header);
        Ok(HeaderPair { copies, current, header })
    }

    /// The header that counts.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Takes `header` as the one that counts, in memory only (a read-only open of a group whose deep
    /// rekey was interrupted while it finished: see `disk::rekey::finish_interrupted`).
    pub(crate) fn assume(&mut self, header: Header) {
        self.header = header;
    }

    /// Per copy: `None` if it is complete and agrees with the current one, else what is wrong with it.
    pub fn problems(&self) -> [Option<String>; 2] {
        let current = self.header();
        [0, 1].map(|slot| match &self.copies[slot] {
            CopyState::Valid(h) if h.same_content(current) => None,
            CopyState::Valid(h) => Some(format!(
                "stale (sequence {}, generation {}; current is {}, {})",
                h.sequence, h.generation, current.sequence, current.generation
            )),
            CopyState::Damaged(reason) => Some(format!("damaged: {reason}")),
        })
    }
}

/// A random (version 4) uuid.
pub(crate) fn new_uuid() -> Result<[u8; 16]> {
    let mut uuid = [0u8; 16];
    crate::keys::random_bytes(&mut uuid)?;
    uuid[6] = (uuid[6] & 0x0f) | 0x40;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    Ok(uuid)
}

/// The usual 8-4-4-4-12 form.
pub fn uuid_string(uuid: &[u8; 16]) -> String {
    let h = hex::encode(uuid);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn uuid_text<S: serde::Serializer>(uuid: &[u8; 16], s: S) -> core::result::Result<S::Ok, S::Error> {
    s.serialize_str(&uuid_string(uuid))
}
