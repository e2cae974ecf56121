//! The LUKS2 header: two copies, each a 4096-byte binary header followed by a JSON area, `hdr_size`
//! bytes in all. The primary copy is at 0, the secondary at `hdr_size` (one of the sizes cryptsetup
//! allows, 16 KiB to 4 MiB, which are where a reader looks for it when the primary is damaged). Each
//! binary header holds the magic (`LUKS\xba\xbe`, or `SKUL\xba\xbe` for the secondary), version 2,
//! `hdr_size`, a sequence id, label, checksum algorithm, salt, UUID, subsystem, its own offset and a
//! checksum over the whole copy with the checksum field zeroed. The valid copy with the highest
//! sequence id is the header; the JSON it carries describes keyslots, segments, digests, tokens and
//! config, with 64-bit numbers written as strings.

use super::{Digest, Kdf, Keyslot, LuksHeader, SECTOR, malformed, read_exact, unsupported};
use crate::error::{DiskFault, Result};
use crate::storage::Storage;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

const BINARY_LEN: usize = 4096;
const PRIMARY_MAGIC: &[u8] = b"LUKS\xba\xbe";
const SECONDARY_MAGIC: &[u8] = b"SKUL\xba\xbe";
/// The header-copy sizes cryptsetup allows: where a secondary copy can be.
const COPY_SIZES: [u64; 9] =
    [16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20, 4 << 20];
/// Where the checksum field sits in the binary header, and its length.
const CSUM_AT: usize = 448;
const CSUM_LEN: usize = 64;

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// One valid header copy: its binary fields and its JSON.
struct Copy {
    seqid: u64,
    hdr_size: u64,
    label: String,
    uuid: String,
    json: Json,
}

/// Decodes the copy held in `bytes` (all `hdr_size` of them), expected at `offset`.
fn decode_copy(bytes: &[u8], offset: u64) -> std::result::Result<Copy, String> {
    if bytes.len() < BINARY_LEN {
        return Err("shorter than a binary header".into());
    }
    let magic = if offset == 0 { PRIMARY_MAGIC } else { SECONDARY_MAGIC };
    if &bytes[..6] != magic {
        return Err("no LUKS2 magic".into());
    }
    if bytes[6..8] != [0, 2] {
        return Err(format!("version {} is not 2", u16::from_be_bytes([bytes[6], bytes[7]])));
    }
    let hdr_size = be64(bytes, 8);
    if !COPY_SIZES.contains(&hdr_size) || bytes.len() as u64 != hdr_size {
        return Err(format!("a header size of {hdr_size} bytes"));
    }
    if be64(bytes, 256) != offset {
        return Err(format!("it says it is at {}, not {offset}", be64(bytes, 256)));
    }
    let algorithm = text(&bytes[72..104]);
    if algorithm != "sha256" {
        return Err(format!("the checksum algorithm {algorithm:?} (only sha256 is supported)"));
    }
    let mut hash = Sha256::new();
    hash.update(&bytes[..CSUM_AT]);
    hash.update([0u8; CSUM_LEN]);
    hash.update(&bytes[CSUM_AT + CSUM_LEN..]);
    let sum = hash.finalize();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&sum[..], &bytes[CSUM_AT..CSUM_AT + 32])) {
        return Err("its checksum does not match".into());
    }
    let area = &bytes[BINARY_LEN..];
    let end = area.iter().position(|&b| b == 0).unwrap_or(area.len());
    let json: Json =
        serde_json::from_slice(&area[..end]).map_err(|err| format!("its JSON area does not parse: {err}"))?;
    Ok(Copy {
        seqid: be64(bytes, 16),
        hdr_size,
        label: text(&bytes[24..72]),
        uuid: text(&bytes[168..208]),
        json,
    })
}

/// Reads the copy at `offset`, whose size the binary header there says.
fn read_copy(store: &dyn Storage, offset: u64) -> std::result::Result<Copy, String> {
    let head = read_exact(store, offset, BINARY_LEN, "LUKS2 header").map_err(|e| e.to_string())?;
    let hdr_size = be64(&head, 8);
    if !COPY_SIZES.contains(&hdr_size) {
        return Err(format!("a header size of {hdr_size} bytes"));
    }
    let bytes = read_exact(store, offset, hdr_size as usize, "LUKS2 header").map_err(|e| e.to_string())?;
    decode_copy(&bytes, offset)
}

pub(super) fn read(store: &dyn Storage) -> Result<LuksHeader> {
    let primary = read_copy(store, 0);
    // The secondary sits after the primary; with the primary damaged, at any allowed size.
    let secondary = match &primary {
        Ok(copy) => read_copy(store, copy.hdr_size),
        Err(_) => COPY_SIZES
            .iter()
            .map(|&at| read_copy(store, at))
            .find(Result::is_ok)
            .unwrap_or_else(|| Err("not found at any header size".into())),
    };
    let mut damaged = Vec::new();
    let copy = match (primary, secondary) {
        (Ok(p), Ok(s)) if s.seqid > p.seqid => {
            damaged.push(format!("copy 0 is stale (sequence {} < {})", p.seqid, s.seqid));
            s
        }
        (Ok(p), Ok(s)) => {
            if s.seqid < p.seqid {
                damaged.push(format!("copy 1 is stale (sequence {} < {})", s.seqid, p.seqid));
            }
            p
        }
        (Ok(p), Err(e)) => {
            damaged.push(format!("copy 1: {e}"));
            p
        }
        (Err(e), Ok(s)) => {
            damaged.push(format!("copy 0: {e}"));
            s
        }
        (Err(a), Err(b)) => {
            return Err(malformed(
                store,
                format!("both LUKS2 header copies are damaged: copy 0: {a}; copy 1: {b}"),
            ));
        }
    };
    header(store, copy, damaged)
}

#[derive(Deserialize)]
struct Json {
    keyslots: BTreeMap<String, JsonKeyslot>,
    segments: BTreeMap<String, JsonSegment>,
    digests: BTreeMap<String, JsonDigest>,
    #[serde(default)]
    tokens: BTreeMap<String, JsonToken>,
    #[serde(default)]
    config: JsonConfig,
}

#[derive(Deserialize)]
struct JsonKeyslot {
    #[serde(rename = "type")]
    kind: String,
    key_size: usize,
    af: JsonAf,
    area: JsonArea,
    kdf: JsonKdf,
    priority: Option<u8>,
}

#[derive(Deserialize)]
struct JsonAf {
    #[serde(rename = "type")]
    kind: String,
    stripes: Option<u32>,
    hash: Option<String>,
}

#[derive(Deserialize)]
struct JsonArea {
    #[serde(rename = "type")]
    kind: String,
    offset: String,
    size: String,
    encryption: Option<String>,
    key_size: Option<usize>,
}

#[derive(Deserialize)]
struct JsonKdf {
    #[serde(rename = "type")]
    kind: String,
    hash: Option<String>,
    iterations: Option<u32>,
    time: Option<u32>,
    memory: Option<u32>,
    cpus: Option<u32>,
    salt: String,
}

#[derive(Deserialize)]
struct JsonSegment {
    #[serde(rename = "type")]
    kind: String,
    offset: String,
    size: String,
    iv_tweak: Option<String>,
    encryption: Option<String>,
    sector_size: Option<u32>,
    integrity: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct JsonDigest {
    #[serde(rename = "type")]
    kind: String,
    keyslots: Vec<String>,
    segments: Vec<String>,
    hash: Option<String>,
    iterations: Option<u32>,
    salt: String,
    digest: String,
}

#[derive(Deserialize)]
struct JsonToken {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
struct JsonConfig {
    requirements: Option<JsonRequirements>,
}

#[derive(Deserialize)]
struct JsonRequirements {
    #[serde(default)]
    mandatory: Vec<String>,
}

/// The header a valid copy describes, checked field by field.
fn header(store: &dyn Storage, copy: Copy, damaged_copies: Vec<String>) -> Result<LuksHeader> {
    let Copy { seqid, hdr_size, label, uuid, json } = copy;
    let bad = |reason: String| malformed(store, reason);
    let number = |field: &str, value: &str| -> Result<u64> {
        value.parse::<u64>().map_err(|_| bad(format!("{field} {value:?} is not a number")))
    };
    let base64 = |field: &str, value: &str| -> Result<Vec<u8>> {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| bad(format!("{field} is not base64")))
    };
    let index = |field: &str, value: &str| -> Result<u32> {
        value.parse::<u32>().map_err(|_| bad(format!("{field} {value:?} is not an index")))
    };

    let segment = json.segments.get("0").ok_or_else(|| bad("no data segment 0".into()))?;
    if segment.kind != "crypt" {
        return Err(unsupported(store, format!("a data segment of type {:?}", segment.kind)));
    }
    let data_offset = number("segment offset", &segment.offset)?;
    let data_size = match segment.size.as_str() {
        "dynamic" => None,
        size => Some(number("segment size", size)?),
    };
    let sector_size = segment.sector_size.unwrap_or(SECTOR as u32);
    let cipher = segment.encryption.clone().unwrap_or_default();
    let iv_tweak = number("iv_tweak", segment.iv_tweak.as_deref().unwrap_or("0"))?;

    let mut keyslots = Vec::new();
    for (name, slot) in &json.keyslots {
        let kdf = match slot.kdf.kind.as_str() {
            "pbkdf2" => Kdf::Pbkdf2 {
                hash: slot
                    .kdf
                    .hash
                    .clone()
                    .ok_or_else(|| bad(format!("keyslot {name}: pbkdf2 without a hash")))?,
                iterations: slot
                    .kdf
                    .iterations
                    .filter(|&i| i > 0)
                    .ok_or_else(|| bad(format!("keyslot {name}: no iterations")))?,
                salt: base64("kdf salt", &slot.kdf.salt)?,
            },
            variant @ ("argon2i" | "argon2id") => Kdf::Argon2 {
                variant: variant.to_owned(),
                time: slot.kdf.time.ok_or_else(|| bad(format!("keyslot {name}: argon2 without time")))?,
                memory_kib: slot
                    .kdf
                    .memory
                    .ok_or_else(|| bad(format!("keyslot {name}: argon2 without memory")))?,
                parallel: slot.kdf.cpus.ok_or_else(|| bad(format!("keyslot {name}: argon2 without cpus")))?,
                salt: base64("kdf salt", &slot.kdf.salt)?,
            },
            other => return Err(unsupported(store, format!("keyslot {name}'s KDF {other:?}"))),
        };
        if slot.af.kind != "luks1" || slot.area.kind != "raw" {
            return Err(unsupported(
                store,
                format!("keyslot {name}'s AF {:?} / area {:?}", slot.af.kind, slot.area.kind),
            ));
        }
        keyslots.push(Keyslot {
            index: index("keyslot", name)?,
            kind: slot.kind.clone(),
            key_bytes: slot.key_size,
            kdf,
            af_stripes: slot.af.stripes.unwrap_or(4000),
            af_hash: slot.af.hash.clone().unwrap_or_else(|| "sha256".into()),
            area_offset: number("area offset", &slot.area.offset)?,
            area_size: number("area size", &slot.area.size)?,
            area_cipher: slot.area.encryption.clone().unwrap_or_default(),
            area_key_bytes: slot.area.key_size.unwrap_or(slot.key_size),
            priority: slot.priority.unwrap_or(1),
        });
    }
    let mut digests = Vec::new();
    for (name, digest) in &json.digests {
        if digest.kind != "pbkdf2" {
            return Err(unsupported(store, format!("digest {name} of type {:?}", digest.kind)));
        }
        if !digest.segments.iter().any(|s| s == "0") {
            continue;
        }
        digests.push(Digest {
            hash: digest.hash.clone().unwrap_or_else(|| "sha256".into()),
            iterations: digest
                .iterations
                .filter(|&i| i > 0)
                .ok_or_else(|| bad(format!("digest {name}: no iterations")))?,
            salt: base64("digest salt", &digest.salt)?,
            digest: base64("digest", &digest.digest)?,
            keyslots: digest.keyslots.iter().map(|k| index("digest keyslot", k)).collect::<Result<_>>()?,
        });
    }
    // Every key in the header must lie past both header copies and inside the store's first 2^63 bytes.
    let metadata_end = 2 * hdr_size;
    for slot in &keyslots {
        if slot.area_offset < metadata_end || slot.area_offset.checked_add(slot.area_size).is_none() {
            return Err(bad(format!("keyslot {}'s area overlaps the header", slot.index)));
        }
    }
    if data_offset < metadata_end {
        return Err(bad(format!("the data segment starts at {data_offset}, inside the header")));
    }
    if keyslots.iter().any(|s| s.key_bytes == 0 || s.key_bytes > 1024) {
        return Err(crate::disk::disk_error(
            store.name(),
            DiskFault::Corrupt,
            "LUKS header: a keyslot key of no or too many bytes",
        ));
    }
    let key_bytes = keyslots.iter().find(|s| s.kind == "luks2").map_or(0, |s| s.key_bytes);
    Ok(LuksHeader {
        version: 2,
        uuid,
        label,
        cipher,
        key_bytes,
        sector_size,
        data_offset,
        data_size,
        iv_tweak,
        metadata_size: hdr_size,
        seqid,
        damaged_copies,
        keyslots,
        digests,
        tokens: json.tokens.values().map(|t| t.kind.clone()).collect(),
        requirements: json.config.requirements.map(|r| r.mandatory).unwrap_or_default(),
        integrity: segment.integrity.as_ref().map(|i| i.to_string()),
        segments: json.segments.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_with_a_bad_checksum_is_refused() {
        let mut bytes = vec![0u8; 16 << 10];
        bytes[..6].copy_from_slice(PRIMARY_MAGIC);
        bytes[7] = 2;
        bytes[8..16].copy_from_slice(&(16u64 << 10).to_be_bytes());
        bytes[72..78].copy_from_slice(b"sha256");
        assert!(decode_copy(&bytes, 0).err().is_some_and(|e| e.contains("checksum")));
    }
}
