//! Which DEK each data unit is under while a deep rekey moves through a volume.
//!
//! At rest a volume has one DEK. During a deep rekey (`docs/FORMAT.md`, "Deep rekey in progress") each
//! member has a position: its data units below it are under the new DEK, those from it on under the
//! old one, except for a *hot zone* right at the position. A live hot zone is being rewritten by the
//! rekey now, and I/O that touches it waits until the position has moved past it. A hot zone left by a
//! crash (seen by a read-only open; a writable open re-encrypts it first) may hold units torn between
//! the keys: each 512-byte piece is under the new DEK exactly when its first 8 bytes equal its
//! fingerprint, and since XTS encrypts 16-byte blocks independently (the units are whole numbers of
//! blocks), decrypting the unit under both keys and taking each piece from the right one recovers it.

use super::datapath::Volume;
use super::format::{FINGERPRINT, PIECE};
use crate::error::Result;
use crate::xts::{DataUnits, Xts};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, RwLockReadGuard};

/// The fingerprint of one 512-byte piece: the first bytes of its ciphertext under the new DEK.
pub(crate) type Fingerprint = [u8; FINGERPRINT as usize];

/// The DEKs of a volume and where each applies.
#[derive(Debug)]
pub(crate) struct Keys {
    /// The DEK at rest, or the old one during a deep rekey. Shared, so a deep rekey's re-encryption
    /// holds the ciphers, not the lock: the lock's holders are only the requests running now.
    pub(crate) old: Arc<Xts>,
    /// The new DEK during a deep rekey.
    pub(crate) new: Option<Arc<Xts>>,
    /// Per member (in member-index order).
    pub(crate) members: Vec<MemberKeys>,
}

/// Where one member stands in a deep rekey.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemberKeys {
    /// Data units of the member below it are under the new DEK.
    pub(crate) position: u64,
    /// Units from `position` that may be under either DEK.
    pub(crate) hot: Option<Hot>,
}

/// A hot zone: `len` units from the member's position.
#[derive(Clone, Debug)]
pub(crate) struct Hot {
    pub(crate) len: u64,
    /// `None` while the rekey rewrites the zone (I/O waits); after a crash, one per 512-byte piece.
    pub(crate) fingerprints: Option<Vec<Fingerprint>>,
}

/// What a deep rekey shares with the I/O that goes on beside it.
#[derive(Debug, Default)]
pub(crate) struct Rekeying {
    /// Bumped whenever a deep rekey moves past a zone it was rewriting; I/O waiting for that zone
    /// waits on `moved` for a change.
    pub(crate) epoch: Mutex<u64>,
    pub(crate) moved: Condvar,
    /// Set by [`Volume::stop_deep_rekey`]; the rekey that honours it clears it.
    pub(crate) stop: AtomicBool,
}

/// The key a run of data units is under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnitKey {
    Old,
    New,
    /// A crash's hot zone: piece by piece.
    Hot,
}

impl Keys {
    /// One DEK for every unit of `members` members.
    pub(crate) fn at_rest(xts: impl Into<Arc<Xts>>, members: usize) -> Keys {
        Keys { old: xts.into(), new: None, members: vec![MemberKeys::default(); members] }
    }

    /// The key member-local unit `unit` of `member` is under, and how many units from it on are under
    /// the same (`u64::MAX` when it does not change).
    pub(crate) fn key_of(&self, member: usize, unit: u64) -> (UnitKey, u64) {
        let Some(state) = self.members.get(member).filter(|_| self.new.is_some()) else {
            return (UnitKey::Old, u64::MAX);
        };
        let hot_end = state.position + state.hot.as_ref().map_or(0, |h| h.len);
        if unit < state.position {
            (UnitKey::New, state.position - unit)
        } else if unit < hot_end {
            (UnitKey::Hot, hot_end - unit)
        } else {
            (UnitKey::Old, u64::MAX)
        }
    }

    /// Whether member-local units `first .. first + count` of `member` touch a zone being rewritten.
    pub(crate) fn busy(&self, member: usize, first: u64, count: u64) -> bool {
        self.members.get(member).is_some_and(|state| {
            state.hot.as_ref().is_some_and(|hot| {
                hot.fingerprints.is_none()
                    && first < state.position + hot.len
                    && state.position < first + count
            })
        })
    }

    /// The cipher of a run of units that is not hot.
    pub(crate) fn cipher(&self, key: UnitKey) -> &Xts {
        match (key, &self.new) {
            (UnitKey::New, Some(new)) => new,
            _ => &self.old,
        }
    }

    /// Decrypts whole units of a crash's hot zone of `member` from `slot` into `out`; `units` numbers
    /// the first of them for the tweak, and `first` is its member-local index.
    pub(crate) fn decrypt_hot(
        &self,
        member: usize,
        first: u64,
        slot: &[u8],
        out: &mut [u8],
        units: DataUnits,
    ) -> Result<()> {
        let state = &self.members[member];
        let (Some(new), Some(hot)) = (&self.new, &state.hot) else {
            return self.old.decrypt_units_to(slot, out, units);
        };
        let fingerprints = hot.fingerprints.as_deref().unwrap_or(&[]);
        let pieces_per_unit = units.size() / PIECE as usize;
        let skip = ((first - state.position) as usize) * pieces_per_unit;
        merge_decrypt(&self.old, new, fingerprints.get(skip..).unwrap_or(&[]), slot, out, units)
    }
}

/// Decrypts units whose 512-byte pieces may each be under `old` or `new`: a piece is new when its first
/// bytes equal its fingerprint (`fingerprints[i]` for the `i`-th piece of `cipher`). All-zero units
/// (never written) decrypt to zeros.
pub(crate) fn merge_decrypt(
    old: &Xts,
    new: &Xts,
    fingerprints: &[Fingerprint],
    cipher: &[u8],
    out: &mut [u8],
    units: DataUnits,
) -> Result<()> {
    let unit_len = units.size();
    let mut other = vec![0u8; unit_len];
    for (index, (unit_cipher, unit_out)) in
        cipher.chunks_exact(unit_len).zip(out.chunks_exact_mut(unit_len)).enumerate()
    {
        if unit_cipher.iter().all(|&b| b == 0) {
            unit_out.fill(0);
            continue;
        }
        let these = units.starting_at(units.first() + index as u64 * units.step());
        old.decrypt_units_to(unit_cipher, unit_out, these)?;
        new.decrypt_units_to(unit_cipher, &mut other, these)?;
        let pieces = unit_len / PIECE as usize;
        for piece in 0..pieces {
            let range = piece * PIECE as usize..(piece + 1) * PIECE as usize;
            let is_new = fingerprints
                .get(index * pieces + piece)
                .is_some_and(|print| unit_cipher[range.start..range.start + print.len()] == print[..]);
            if is_new {
                unit_out[range.clone()].copy_from_slice(&other[range]);
            }
        }
        super::thin::clear_unwritten_sectors(unit_cipher, unit_out);
    }
    Ok(())
}

/// The fingerprints of `cipher` (new ciphertext), one per 512-byte piece.
pub(crate) fn fingerprints(cipher: &[u8]) -> Vec<Fingerprint> {
    cipher
        .chunks_exact(PIECE as usize)
        .map(|piece| piece[..FINGERPRINT as usize].try_into().expect("a piece has 512 bytes"))
        .collect()
}

impl Volume {
    /// XTS-AES-128 or XTS-AES-256.
    pub fn key_size(&self) -> crate::KeySize {
        self.read_keys().old.key_size()
    }

    /// The cipher backend in use.
    pub fn backend(&self) -> crate::Backend {
        self.read_keys().old.backend()
    }

    pub(crate) fn read_keys(&self) -> RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The keys, once no span (logical offset, length) touches a zone a deep rekey is rewriting; held
    /// for the whole request, so the rekey cannot start rewriting under it.
    pub(crate) fn keys_for(&self, spans: &[(u64, u64)]) -> RwLockReadGuard<'_, Keys> {
        loop {
            let epoch = *self.rekeying.epoch.lock().unwrap_or_else(|p| p.into_inner());
            let keys = self.read_keys();
            if !spans.iter().any(|&(offset, len)| self.touches_busy(&keys, offset, len)) {
                return keys;
            }
            drop(keys);
            let mut now = self.rekeying.epoch.lock().unwrap_or_else(|p| p.into_inner());
            while *now == epoch {
                now = self.rekeying.moved.wait(now).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    fn touches_busy(&self, keys: &Keys, offset: u64, len: u64) -> bool {
        let end = offset + len;
        let mut at = offset / self.unit * self.unit;
        while at < end {
            let (member, physical, in_stripe) = self.locate(at);
            let take = (end - at).min(in_stripe);
            let first = (physical - self.data_offset) / self.unit;
            if keys.busy(member, first, take.div_ceil(self.unit)) {
                return true;
            }
            at += take;
        }
        false
    }
}
