//! Deep rekey: a new DEK for a disk or a disk group, every data unit re-encrypted from the old DEK to the
//! new one, while the volume keeps serving reads and writes, resumable after a crash at any point.
//!
//! Each member's header says how far the rekey has come on it (`docs/FORMAT.md`, "Deep rekey in
//! progress"): units below its position are under the new DEK, the rest under the old one. Members are
//! taken one after the other. The rekey moves the position chunk by chunk (at most 28 MiB, so one
//! resilience area describes a chunk):
//!
//! 1. the chunk becomes a live hot zone: I/O that touches it waits ([`Keys::busy`]), once the requests
//!    already running on it have finished;
//! 2. its ciphertext is read, decrypted under the old DEK and encrypted under the new one in memory
//!    (unwritten, all-zero units stay so);
//! 3. the first 8 bytes of each 512-byte piece of the new ciphertext go to a resilience area (flushed),
//!    and the header names the chunk as hot, with that area's checksum (both copies, flushed); the same
//!    update moves the position past the previous chunk, which I/O may touch again from then on;
//! 4. the new ciphertext is written and flushed; the chunk stays live until the next update (the next
//!    chunk's step 3, or the last one), so no unit the durable header calls hot is ever written by
//!    anyone else.
//!
//! Steps 1-2 of chunk k + 1 run while steps 3-4 of chunk k do ([`steps`]): the storage reads and
//! writes at once and the cipher works meanwhile, through the data path's I/O engine (io_uring on the
//! O_DIRECT descriptor where there is one). The live hot zone then spans both chunks; only the header
//! updates, one chunk at a time, are durable, so a crash still finds at most one chunk torn.
//!
//! After a crash, the next writable open (or the resumed rekey) settles the hot zone: each piece whose
//! first bytes match its fingerprint is new, any other old, so every unit, torn or not, is recovered
//! ([`merge_decrypt`]) and written again under the new DEK; XTS being deterministic, that is the very
//! ciphertext the fingerprints describe. A read-only open decrypts the hot zone piece by piece instead.
//! At the end the header becomes version 1 again with the new DEK alone and the generation + 1.

use super::datapath::Volume;
use super::format::{AREA_LEN, AREA_OFFSETS, FINGERPRINT, Header, MAX_HOT_BYTES, PIECE, Reencryption};
use super::keyed::{Fingerprint, Hot, Keys, merge_decrypt};
use super::members::{Member, disk_error, storage_error, update_pair};
use super::thin::{SECTOR, is_zero, unwritable, written_runs};
use crate::error::{DiskFault, Error, Result};
use crate::keys::{KeyProvider, KeyRef};
use crate::storage::Storage;
use crate::xts::{BackendChoice, DataUnits, Xts};
use sha2::Digest;
use std::sync::atomic::Ordering;
use steps::Work;

mod steps;

/// How far a deep rekey has come, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyProgress {
    /// Data bytes under the new DEK.
    pub done: u64,
    /// Data bytes in all.
    pub total: u64,
}

/// What a deep rekey did: finished, or stopped on request.
#[derive(Clone, Debug)]
pub struct DeepRekey {
    /// The KEK that wraps the new DEK.
    pub key_ref: KeyRef,
    /// True when it picked up an interrupted rekey instead of starting one.
    pub resumed: bool,
    /// False when it stopped on request ([`Volume::stop_deep_rekey`]) before the end: the volume is
    /// left in the middle of the rekey, fully usable, and the next deep rekey resumes it.
    pub finished: bool,
}

/// The keys of members being opened: the DEK, and during a deep rekey the new DEK, each member's
/// position, and the fingerprints of a hot zone a crash left.
pub(crate) fn open_keys(
    members: &[Member],
    provider: &dyn KeyProvider,
    backend: BackendChoice,
) -> Result<Keys> {
    let header = members[0].header();
    let old = Xts::new(provider.unwrap_dek(&header.wrapped_dek)?.xts_key(), backend)?;
    let mut keys = Keys::at_rest(old, members.len());
    let Some(record) = members.iter().find_map(|m| m.header().reencryption.as_ref()) else {
        return Ok(keys);
    };
    let new = provider.unwrap_dek(&record.new_dek)?;
    keys.new = Some(Xts::new(new.xts_key(), backend)?.into());
    for (member, state) in members.iter().zip(&mut keys.members) {
        // A member the rekey has not reached yet has no record: all of it is under the old DEK.
        let Some(record) = &member.header().reencryption else { continue };
        state.position = record.position;
        if record.hot > 0 {
            let prints = read_area(member.storage.as_ref(), member.header(), record)?;
            state.hot = Some(Hot { len: record.hot, fingerprints: Some(prints) });
        }
    }
    Ok(keys)
}

/// A group whose deep rekey stopped while it retired the old DEK: some members are version 1 with the
/// new DEK at the next generation, the others still version 2 at their end. Every unit is under the new
/// DEK, so the version-2 members are finished too: written when `writable`, else only in memory.
pub(crate) fn finish_interrupted(members: &mut [Member], writable: bool) -> Result<()> {
    let finished = members.iter().find_map(|m| {
        let h = m.header();
        let matches = |o: &Member| {
            o.header().reencryption.as_ref().is_some_and(|r| {
                r.new_dek.verifier() == h.wrapped_dek.verifier() && h.generation == o.header().generation + 1
            })
        };
        (h.reencryption.is_none() && members.iter().any(matches))
            .then(|| (h.generation, h.wrapped_dek.clone()))
    });
    let Some((generation, wrapped)) = finished else { return Ok(()) };
    for member in members.iter_mut() {
        let header = member.header().clone();
        let Some(record) = &header.reencryption else { continue };
        let units = header.data_size / header.data_unit as u64;
        if record.position != units || record.hot != 0 || record.new_dek.verifier() != wrapped.verifier() {
            return Err(disk_error(
                member.name(),
                DiskFault::Mismatch,
                "is in the middle of a deep rekey that other members of its group have finished",
            ));
        }
        let done = Header { generation, wrapped_dek: wrapped.clone(), reencryption: None, ..header };
        if writable {
            member.write_pair(&done)?;
        } else {
            member.headers.assume(done);
        }
    }
    Ok(())
}

/// The fingerprints of a hot zone, checked against the header's checksum of them.
fn read_area(storage: &dyn Storage, header: &Header, record: &Reencryption) -> Result<Vec<Fingerprint>> {
    let len = (record.hot * header.data_unit as u64 / PIECE * FINGERPRINT) as usize;
    let mut bytes = vec![0u8; len];
    storage
        .read_at(&mut bytes, AREA_OFFSETS[record.area as usize])
        .map_err(|err| storage_error(storage, err))?;
    if sha2::Sha256::digest(&bytes)[..] != record.area_sum {
        return Err(disk_error(
            storage.name(),
            DiskFault::Corrupt,
            "the deep rekey's resilience area does not match its checksum: the data units being rewritten when it stopped cannot be told apart",
        ));
    }
    Ok(bytes.chunks_exact(FINGERPRINT as usize).map(|c| c.try_into().expect("8 bytes")).collect())
}

/// Re-encrypts the ciphertext units of `buf` in place from `old` to `new`; unwritten (all-zero) units
/// stay so. A unit whose new ciphertext would come out all zeros (it would read as unwritten) is
/// refused.
fn reencrypt(old: &Xts, new: &Xts, buf: &mut [u8], units: DataUnits) -> Result<()> {
    let unit = units.size();
    for range in written_runs(buf, unit, usize::MAX) {
        let run = units.starting_at(units.first() + (range.start / unit) as u64 * units.step());
        let part = &mut buf[range];
        // Sectors a torn first write left unwritten read as zeros: they are re-encrypted as zeros.
        let unwritten: Vec<usize> =
            part.chunks_exact(SECTOR).enumerate().filter(|(_, s)| is_zero(s)).map(|(i, _)| i).collect();
        old.decrypt_units(part, run)?;
        for sector in unwritten {
            part[sector * SECTOR..(sector + 1) * SECTOR].fill(0);
        }
        new.encrypt_units(part, run)?;
        if let Some(index) = unwritable(part, unit) {
            return Err(Error::UnwritableUnit(run.first() + index as u64 * run.step()));
        }
    }
    Ok(())
}

/// Writes the written (not all-zero) units of `buf` at `at`, run by run: unwritten units stay holes,
/// as thin provisioning wants them.
fn write_written(store: &dyn Storage, at: u64, buf: &[u8], unit: usize) -> std::io::Result<()> {
    for range in written_runs(buf, unit, usize::MAX) {
        store.write_at(&buf[range.clone()], at + range.start as u64)?;
    }
    Ok(())
}

impl Volume {
    /// The logical number of member-local data unit `local` of `member`, and how many units from it
    /// are logically consecutive (to the end of its stripe).
    fn logical_unit(&self, member: usize, local: u64) -> (u64, u64) {
        let per_stripe = self.stripe_units();
        let count = self.stores.len() as u64;
        let (stripe, within) = (local / per_stripe, local % per_stripe);
        ((stripe * count + member as u64) * per_stripe + within, per_stripe - within)
    }

    fn stripe_units(&self) -> u64 {
        self.header().map_or(u64::MAX, |h| h.place.stripe / h.data_unit as u64)
    }

    fn dek_units(&self, logical: u64) -> Result<DataUnits> {
        Ok(DataUnits::new(self.unit as usize)?.starting_at(logical))
    }

    fn write_header(&self, member: usize, change: impl FnOnce(&mut Header)) -> Result<()> {
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        let pair = &mut pairs[member];
        let mut header = pair.header().clone();
        change(&mut header);
        update_pair(self.stores[member].as_ref(), pair, &header)
    }

    fn store_error(&self, member: usize) -> impl Fn(std::io::Error) -> Error + '_ {
        move |err| storage_error(self.stores[member].as_ref(), err)
    }

    /// Moves `member`'s position to `position` with no hot zone, durably, then lets I/O there resume.
    fn advance(&self, member: usize, position: u64) -> Result<()> {
        let durable = self.current_header(member).reencryption.map(|r| (r.position, r.hot));
        // Already so on disk (a rekey stopped before its first step): nothing to write.
        if durable != Some((position, 0)) {
            self.write_header(member, |h| {
                if let Some(record) = h.reencryption.as_mut() {
                    record.position = position;
                    record.hot = 0;
                }
            })?;
        }
        {
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            keys.members[member].position = position;
            keys.members[member].hot = None;
        }
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        *self.rekeying.epoch.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.rekeying.moved.notify_all();
    }

    /// Re-encrypts the hot zones a crash left (a writable open does this before anything else).
    pub(crate) fn settle(&self) -> Result<()> {
        let zones: Vec<(usize, u64, u64, Vec<Fingerprint>)> = self
            .read_keys()
            .members
            .iter()
            .enumerate()
            .filter_map(|(m, s)| {
                let hot = s.hot.as_ref()?;
                Some((m, s.position, hot.len, hot.fingerprints.clone()?))
            })
            .collect();
        for (member, position, len, prints) in zones {
            let mut buf = vec![0u8; (len * self.unit) as usize];
            let at = self.data_offset + position * self.unit;
            self.stores[member].read_at(&mut buf, at).map_err(self.store_error(member))?;
            let mut plain = vec![0u8; buf.len()];
            let mut local = 0;
            while local < len {
                let (logical, run) = self.logical_unit(member, position + local);
                let run = run.min(len - local);
                let range = (local * self.unit) as usize..((local + run) * self.unit) as usize;
                let skip = (local * self.unit / PIECE) as usize;
                let keys = self.read_keys();
                let new = keys.new.as_ref().expect("a hot zone means a deep rekey");
                let units = self.dek_units(logical)?;
                merge_decrypt(
                    &keys.old,
                    new,
                    &prints[skip..],
                    &buf[range.clone()],
                    &mut plain[range.clone()],
                    units,
                )?;
                // Written units (by their ciphertext, not their plaintext, which may be zeros) are
                // encrypted under the new DEK; unwritten ones stay zeros.
                let unit = self.unit as usize;
                for (index, (cipher, plain)) in
                    buf[range.clone()].chunks_exact(unit).zip(plain[range].chunks_exact_mut(unit)).enumerate()
                {
                    if cipher.iter().any(|&b| b != 0) {
                        let this = units.starting_at(units.first() + index as u64 * units.step());
                        new.encrypt_units(plain, this)?;
                        if unwritable(plain, unit).is_some() {
                            return Err(Error::UnwritableUnit(this.first()));
                        }
                    }
                }
                local += run;
            }
            write_written(self.stores[member].as_ref(), at, &plain, self.unit as usize)
                .map_err(self.store_error(member))?;
            self.stores[member].flush().map_err(self.store_error(member))?;
            self.advance(member, position + len)?;
        }
        Ok(())
    }

    /// Deep rekey: draws a new DEK (wrapped under the KEK `new_key_id` names, or a fresh one) and
    /// re-encrypts every data unit to it, while other threads keep reading and writing this volume;
    /// then retires the old DEK. On a disk whose deep rekey was interrupted, resumes it (and keeps the
    /// new DEK it had). `progress` is called after each chunk. Stops at the first error, leaving the
    /// disk readable and the rekey resumable, or when asked to ([`Volume::stop_deep_rekey`]).
    pub fn deep_rekey(
        &self,
        provider: &dyn KeyProvider,
        new_key_id: Option<&str>,
        progress: &mut dyn FnMut(RekeyProgress),
    ) -> Result<DeepRekey> {
        self.deep_rekey_in_chunks(provider, new_key_id, MAX_HOT_BYTES, progress)
    }

    /// Asks the deep rekey running on this volume (in another thread), or the next one to start, to
    /// stop after the step it is writing: it returns with [`DeepRekey::finished`] false, the volume
    /// in the middle of the rekey, with nothing to settle. Returns at once; does not wait.
    pub fn stop_deep_rekey(&self) {
        self.rekeying.stop.store(true, Ordering::SeqCst);
    }

    /// [`Volume::deep_rekey`] with chunks of at most `chunk_bytes` (rounded down to whole units, at most
    /// 28 MiB), so tests can crash a small disk at every step of many chunks.
    #[doc(hidden)]
    pub fn deep_rekey_in_chunks(
        &self,
        provider: &dyn KeyProvider,
        new_key_id: Option<&str>,
        chunk_bytes: u64,
        progress: &mut dyn FnMut(RekeyProgress),
    ) -> Result<DeepRekey> {
        let name = self.stores[0].name().to_owned();
        let Some(header) = self.header().cloned() else {
            return Err(disk_error(&name, DiskFault::Unsupported, "a deep rekey needs a sectorcrypt disk"));
        };
        if !self.options.writable {
            return Err(disk_error(&name, DiskFault::ReadOnly, "is open read-only"));
        }
        if header.data_offset < AREA_OFFSETS[1] + AREA_LEN {
            return Err(disk_error(
                &name,
                DiskFault::Unsupported,
                "its data area starts before 1 MiB, where a deep rekey keeps its resilience areas",
            ));
        }
        let record = (0..self.stores.len()).find_map(|m| self.current_header(m).reencryption);
        if let (Some(record), Some(id)) = (&record, new_key_id) {
            // Resuming keeps the new DEK already chosen: another KEK cannot be had without starting over.
            let current = record.new_dek.key_ref().key_id();
            if current != id {
                return Err(disk_error(
                    &name,
                    DiskFault::Mismatch,
                    format!(
                        "is in the middle of a deep rekey to key '{current}', not '{id}': resume it with that key id, or none"
                    ),
                ));
            }
        }
        self.settle()?;
        let resumed = record.is_some();
        let new_dek = match record {
            Some(record) => record.new_dek,
            None => {
                let (dek, wrapped) = provider.new_wrapped_dek(header.cipher, new_key_id)?;
                let new = Xts::new(dek.xts_key(), BackendChoice::Named(self.backend()))?;
                self.keys.write().unwrap_or_else(|p| p.into_inner()).new = Some(new.into());
                wrapped
            }
        };
        // Every member gets the record (a group's start, or members an interrupted start missed),
        // one after the other: a member without one is at position 0 of the same rekey.
        for member in 0..self.stores.len() {
            if self.current_header(member).reencryption.is_none() {
                let record = Reencryption {
                    new_dek: new_dek.clone(),
                    position: 0,
                    hot: 0,
                    area: 1,
                    area_sum: [0; 32],
                };
                self.write_header(member, |h| h.reencryption = Some(record))?;
            }
        }
        let total = self.size();
        let units = self.member_units();
        let chunk = (chunk_bytes.min(MAX_HOT_BYTES) / self.unit).max(1);
        for member in 0..self.stores.len() {
            // The durable position, and the step before it (rewritten, still named hot until the next
            // header update moves past it): after `settle`, none.
            let (position, pending) = {
                let keys = self.read_keys();
                let state = &keys.members[member];
                (state.position, state.hot.as_ref().map_or(0, |h| h.len))
            };
            let mut report =
                |end: u64| progress(RekeyProgress { done: (member as u64 * units + end) * self.unit, total });
            let outcome = self.run_steps(member, position + pending, chunk, Work::Rekey, &mut report);
            let end = match outcome {
                Ok(end) => end,
                Err(err) => {
                    // Back to what the durable header says, as a crash would leave it: reads of a hot zone go
                    // on piece by piece, and writes to it are refused until a writable open settles it.
                    let (position, hot) = self.unsettled(member);
                    {
                        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
                        keys.members[member].position = position;
                        keys.members[member].hot = hot;
                    }
                    self.wake();
                    return Err(err);
                }
            };
            // The last step written is released with the position at its end: the member's end, or
            // where a stop request came (a step read ahead but not written is released too).
            if self.read_keys().members[member].hot.is_some() {
                self.advance(member, end)?;
            }
            if end < units {
                return Ok(DeepRekey { key_ref: new_dek.key_ref().clone(), resumed, finished: false });
            }
        }
        self.finish()?;
        // A stop asked for too late to be honoured does not stop the next rekey.
        self.rekeying.stop.store(false, Ordering::SeqCst);
        Ok(DeepRekey { key_ref: new_dek.key_ref().clone(), resumed, finished: true })
    }

    fn current_header(&self, member: usize) -> Header {
        self.pairs.lock().unwrap_or_else(|p| p.into_inner())[member].header().clone()
    }

    /// The position and hot zone the durable header names for `member`.
    fn unsettled(&self, member: usize) -> (u64, Option<Hot>) {
        let header = self.current_header(member);
        let Some(record) = header.reencryption.as_ref() else { return (0, None) };
        if record.hot == 0 {
            return (record.position, None);
        }
        // An area that cannot be read leaves every piece taken as old: reads of the zone may then be
        // wrong until a writable open, which checks the area again and refuses if it is still bad.
        let prints = read_area(self.stores[member].as_ref(), &header, record).unwrap_or_default();
        (record.position, Some(Hot { len: record.hot, fingerprints: Some(prints) }))
    }

    /// Retires the old DEK: every member's header becomes version 1 with the new DEK and the next
    /// generation.
    fn finish(&self) -> Result<()> {
        for member in 0..self.stores.len() {
            self.write_header(member, |h| {
                if let Some(record) = h.reencryption.take() {
                    h.wrapped_dek = record.new_dek;
                    h.generation += 1;
                }
            })?;
        }
        for store in &self.stores {
            // The fingerprints are of no use any more: give their space back. Only tidiness is at
            // stake, so a store that cannot is left as it is.
            let _ = store.discard(AREA_OFFSETS[0], AREA_OFFSETS[1] + AREA_LEN - AREA_OFFSETS[0]);
        }
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let new = keys.new.take().expect("a deep rekey has its new DEK");
        let members = keys.members.len();
        *keys = Keys::at_rest(new, members);
        Ok(())
    }
}
