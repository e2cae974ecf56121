//! Unlocking: the passphrase through a keyslot's KDF, the keyslot area decrypted, the anti-forensic
//! split merged, and the candidate checked against the volume-key digest (see the module above).

use super::{Kdf, Keyslot, LuksHeader, SECTOR, af, read_exact, unsupported};
use crate::XtsKey;
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::xts::{BackendChoice, DataUnits, Xts};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The hashes LUKS uses for PBKDF2, the AF splitter and digests.
#[derive(Clone, Copy, Debug)]
pub(super) enum Hash {
    Sha1,
    Sha256,
    Sha512,
}

impl Hash {
    pub(super) fn from_name(name: &str) -> Option<Hash> {
        match name.to_ascii_lowercase().as_str() {
            "sha1" => Some(Hash::Sha1),
            "sha256" => Some(Hash::Sha256),
            "sha512" => Some(Hash::Sha512),
            _ => None,
        }
    }

    pub(super) fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
            Hash::Sha512 => 64,
        }
    }

    pub(super) fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for part in parts {
                d.update(part);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha1 => run::<sha1::Sha1>(parts),
            Hash::Sha256 => run::<sha2::Sha256>(parts),
            Hash::Sha512 => run::<sha2::Sha512>(parts),
        }
    }

    pub(super) fn pbkdf2(self, password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
        match self {
            Hash::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out),
            Hash::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, out),
            Hash::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, iterations, out),
        }
    }
}

/// The most memory an Argon2 keyslot may ask for: LUKS2's own limit (cryptsetup refuses more).
const MAX_ARGON2_KIB: u32 = 4 << 20;
/// The largest keyslot area read: LUKS2's largest keyslots area (a header asking for more is damaged
/// or hostile, and would otherwise make this allocate it).
const MAX_AREA: u64 = 128 << 20;

fn hash(store: &dyn Storage, name: &str) -> Result<Hash> {
    Hash::from_name(name).ok_or_else(|| unsupported(store, format!("the hash {name:?}")))
}

/// The key of a keyslot's area, from the passphrase.
fn area_key(store: &dyn Storage, slot: &Keyslot, passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let mut key = Zeroizing::new(vec![0u8; slot.area_key_bytes]);
    match &slot.kdf {
        Kdf::Pbkdf2 { hash: name, iterations, salt } => {
            hash(store, name)?.pbkdf2(passphrase, salt, *iterations, &mut key)
        }
        Kdf::Argon2 { variant, time, memory_kib, parallel, salt } => {
            if *memory_kib > MAX_ARGON2_KIB {
                return Err(super::malformed(
                    store,
                    format!("keyslot {}: argon2 asks for {memory_kib} KiB, over LUKS2's 4 GiB", slot.index),
                ));
            }
            let algorithm =
                if variant == "argon2i" { argon2::Algorithm::Argon2i } else { argon2::Algorithm::Argon2id };
            let params =
                argon2::Params::new(*memory_kib, *time, *parallel, Some(key.len())).map_err(|err| {
                    super::malformed(store, format!("keyslot {}: argon2 parameters: {err}", slot.index))
                })?;
            argon2::Argon2::new(algorithm, argon2::Version::V0x13, params)
                .hash_password_into(passphrase, salt, &mut key)
                .map_err(|err| super::malformed(store, format!("keyslot {}: argon2: {err}", slot.index)))?;
        }
    }
    Ok(key)
}

/// The volume-key candidate a keyslot yields for `passphrase` (garbage for a wrong one).
fn candidate(store: &dyn Storage, slot: &Keyslot, passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if slot.area_cipher != "aes-xts-plain64" {
        return Err(unsupported(store, format!("keyslot {}'s cipher {}", slot.index, slot.area_cipher)));
    }
    let stripes = slot.af_stripes as usize;
    let split_len =
        slot.key_bytes.checked_mul(stripes).filter(|&l| l as u64 <= slot.area_size && l as u64 <= MAX_AREA);
    let Some(split_len) = split_len else {
        return Err(super::malformed(
            store,
            format!("keyslot {}: its split key does not fit its area", slot.index),
        ));
    };
    let af_hash = hash(store, &slot.af_hash)?;
    let key = area_key(store, slot, passphrase)?;
    let area_len = (split_len as u64).div_ceil(SECTOR) * SECTOR;
    let mut material =
        Zeroizing::new(read_exact(store, slot.area_offset, area_len as usize, "keyslot area")?);
    let xts = Xts::new(&XtsKey::from_bytes(&key)?, BackendChoice::Auto)?;
    xts.decrypt_units(&mut material, DataUnits::new(SECTOR as usize)?)?;
    Ok(af::merge(af_hash, &material[..split_len], slot.key_bytes, stripes))
}

/// Whether `key` matches a digest that covers keyslot `slot`.
fn verified(store: &dyn Storage, header: &LuksHeader, slot: u32, key: &[u8]) -> Result<bool> {
    for digest in header.digests.iter().filter(|d| d.keyslots.contains(&slot)) {
        let mut computed = Zeroizing::new(vec![0u8; digest.digest.len()]);
        hash(store, &digest.hash)?.pbkdf2(key, &digest.salt, digest.iterations, &mut computed);
        if bool::from(computed.ct_eq(&digest.digest)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Tries the keyslots that hold the volume key, high priority first (priority 0, "ignore", last), and
/// returns the key the first one that opens yields.
pub(super) fn volume_key(
    store: &dyn Storage,
    header: &LuksHeader,
    passphrase: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let mut slots: Vec<&Keyslot> = header
        .keyslots
        .iter()
        .filter(|s| (s.kind == "luks1" || s.kind == "luks2") && s.key_bytes == header.key_bytes)
        .collect();
    if slots.is_empty() {
        return Err(crate::disk::disk_error(
            store.name(),
            crate::error::DiskFault::Corrupt,
            "LUKS header: no keyslot holds the volume key",
        ));
    }
    slots.sort_by_key(|s| (std::cmp::Reverse(s.priority), s.index));
    for slot in slots {
        let key = candidate(store, slot, passphrase)?;
        if verified(store, header, slot.index, &key)? {
            return Ok(key);
        }
    }
    Err(Error::WrongPassphrase)
}
