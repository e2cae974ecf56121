//! The LUKS1 header: 592 bytes at offset 0, big-endian, with eight keyslots (cryptsetup's
//! `luks_phdr`): magic, version, cipher name and mode, hash, payload offset (sectors), key bytes,
//! the master-key digest (PBKDF2, 20 bytes) with its salt and iterations, the UUID, then per keyslot
//! its state, PBKDF2 iterations and salt, key-material offset (sectors) and stripes.

use super::{Digest, Kdf, Keyslot, LuksHeader, SECTOR, malformed, read_exact, unsupported};
use crate::error::Result;
use crate::storage::Storage;

pub(super) const MAGIC: &[u8] = b"LUKS\xba\xbe";
const HEADER_LEN: usize = 592;
const KEYSLOTS: usize = 8;
const SLOT_ACTIVE: u32 = 0x00ac_71f3;
const SLOT_INACTIVE: u32 = 0x0000_dead;

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A NUL-padded text field.
fn text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

pub(super) fn read(store: &dyn Storage) -> Result<LuksHeader> {
    let b = read_exact(store, 0, HEADER_LEN, "LUKS1 header")?;
    decode(store, &b)
}

/// Decodes and checks a LUKS1 header (`b` holds at least its 592 bytes).
pub(super) fn decode(store: &dyn Storage, b: &[u8]) -> Result<LuksHeader> {
    if b.len() < HEADER_LEN || &b[..6] != MAGIC || b[6..8] != [0, 1] {
        return Err(malformed(store, "not a LUKS1 header"));
    }
    let (cipher_name, cipher_mode, hash) = (text(&b[8..40]), text(&b[40..72]), text(&b[72..104]));
    let payload_offset = u64::from(be32(b, 104)) * SECTOR;
    let key_bytes = be32(b, 108) as usize;
    if key_bytes == 0 || key_bytes > 1024 {
        return Err(malformed(store, format!("a volume key of {key_bytes} bytes")));
    }
    let digest = Digest {
        hash: hash.clone(),
        iterations: be32(b, 164),
        salt: b[132..164].to_vec(),
        digest: b[112..132].to_vec(),
        keyslots: (0..KEYSLOTS as u32).collect(),
    };
    if digest.iterations == 0 {
        return Err(malformed(store, "a master-key digest of 0 iterations"));
    }
    let cipher = format!("{cipher_name}-{cipher_mode}");
    let mut keyslots = Vec::new();
    for index in 0..KEYSLOTS {
        let s = &b[208 + 48 * index..208 + 48 * (index + 1)];
        match be32(s, 0) {
            SLOT_INACTIVE => continue,
            SLOT_ACTIVE => {}
            state => return Err(malformed(store, format!("keyslot {index} has the state {state:#x}"))),
        }
        let stripes = be32(s, 44);
        let iterations = be32(s, 4);
        if stripes == 0 || iterations == 0 {
            return Err(malformed(
                store,
                format!("keyslot {index} has {stripes} stripes, {iterations} iterations"),
            ));
        }
        let area_size = (key_bytes as u64 * u64::from(stripes)).div_ceil(SECTOR) * SECTOR;
        keyslots.push(Keyslot {
            index: index as u32,
            kind: "luks1".into(),
            key_bytes,
            kdf: Kdf::Pbkdf2 { hash: hash.clone(), iterations, salt: s[8..40].to_vec() },
            af_stripes: stripes,
            af_hash: hash.clone(),
            area_offset: u64::from(be32(s, 40)) * SECTOR,
            area_size,
            area_cipher: cipher.clone(),
            area_key_bytes: key_bytes,
            priority: 1,
        });
    }
    if payload_offset < HEADER_LEN as u64 {
        return Err(malformed(store, "the payload starts inside the header"));
    }
    if cipher_name.is_empty() || cipher_mode.is_empty() {
        return Err(unsupported(store, "a LUKS1 header without a cipher"));
    }
    Ok(LuksHeader {
        version: 1,
        uuid: text(&b[168..208]),
        label: String::new(),
        cipher,
        key_bytes,
        sector_size: SECTOR as u32,
        data_offset: payload_offset,
        data_size: None,
        iv_tweak: 0,
        metadata_size: HEADER_LEN as u64,
        seqid: 0,
        damaged_copies: Vec::new(),
        keyslots,
        digests: vec![digest],
        tokens: Vec::new(),
        requirements: Vec::new(),
        integrity: None,
        segments: 1,
    })
}
