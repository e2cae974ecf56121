//! The steps of a deep rekey over one member, as a two-stage pipeline.
//!
//! A step is a chunk of at most 28 MiB. A reader thread takes a step, marks it busy (I/O that touches
//! it waits, once the requests already running on it are done), reads it into a page-aligned staging
//! arena and re-encrypts it there; the calling thread writes it (the module above lists what a step
//! writes, in order). Two arenas go round between them, so step k + 1 is read and re-encrypted while
//! step k is written: the storage reads and writes at once, and the cipher runs while it does. The
//! bytes move through the data path's I/O engine: io_uring on the O_DIRECT descriptor where the disk
//! has one (transfers of up to 4 MiB, a whole step in flight), pread/pwrite otherwise.
//!
//! The busy zone of the member runs from its position to the end of the last step read, and only the
//! writer moves its start: a step is released once the header has moved past it, and the step being
//! read is busy before its first byte is read. Nothing is written to a step before the durable header
//! names it hot (so a crash finds at most one step torn, and its fingerprints).
//!
//! [`Volume::copy_in_place`] runs the same pipeline without the cipher or the resilience writes: what
//! the storage does for a deep rekey, for `bench rekey` to compare with.

use super::super::datapath::Volume;
use super::super::format::MAX_HOT_BYTES;
use super::super::keyed::{Hot, MemberKeys, fingerprints};
use super::super::members::disk_error;
use super::super::thin::written_runs;
use super::AREA_OFFSETS;
use crate::error::{DiskFault, Result};
use crate::storage::uring::{Op, SLOT_LEN, Target, Worker};
use sha2::Digest;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// The largest transfer: what one request to a block device can carry on common hardware (virtio and
/// NVMe queues take 4 MiB or less), so a step is a handful of them, all in flight at once.
const TRANSFER: usize = 4 << 20;

/// What the pipeline does to each step.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Work {
    /// Re-encrypt it, with the resilience record: a deep rekey.
    Rekey,
    /// Write it back as read: the baseline.
    Copy,
}

/// A step between the two stages: member-local units `start .. start + len`, in `worker`'s arena.
struct Step {
    start: u64,
    len: u64,
    worker: Worker,
}

impl Volume {
    /// What a deep rekey asks of the storage, without the cipher or the resilience record: every
    /// member's data area read and written back in place, in the same steps, through the same pipeline
    /// and I/O engine. `bench rekey` measures a deep rekey against it. I/O from other threads waits
    /// for the step it touches, as during a rekey. A volume in the middle of a deep rekey is refused.
    #[doc(hidden)]
    pub fn copy_in_place(&self) -> Result<()> {
        let name = self.stores[0].name();
        if !self.options.writable {
            return Err(disk_error(name, DiskFault::ReadOnly, "is open read-only"));
        }
        if self.read_keys().new.is_some() {
            return Err(disk_error(name, DiskFault::Busy, "is in the middle of a deep rekey"));
        }
        let chunk = (MAX_HOT_BYTES / self.unit).max(1);
        for member in 0..self.stores.len() {
            let outcome = self.run_steps(member, 0, chunk, Work::Copy, &mut |_| {}).map(drop);
            // At rest the position means nothing but where the copy's busy zone starts.
            {
                let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
                keys.members[member] = MemberKeys::default();
            }
            self.wake();
            outcome?;
        }
        Ok(())
    }

    /// Runs the steps of `member` from unit `from` to its end, `chunk` units each, and returns where
    /// the last step written ends: the member's end, or less when a rekey was asked to stop
    /// ([`Volume::stop_deep_rekey`], honoured before each step). `done` is called with the end of
    /// each step written. On an error, the steps already written stay written and the in-memory state
    /// is the caller's to restore.
    pub(super) fn run_steps(
        &self,
        member: usize,
        from: u64,
        chunk: u64,
        work: Work,
        done: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let units = self.member_units();
        let steps: Vec<(u64, u64)> =
            (from..units).step_by(chunk as usize).map(|s| (s, chunk.min(units - s))).collect();
        let depth = ((chunk * self.unit) as usize).div_ceil(SLOT_LEN);
        let (to_reader, spares): (SyncSender<Worker>, Receiver<Worker>) = sync_channel(2);
        for _ in 0..2 {
            let (worker, _) = Worker::new(self.engine(), depth).map_err(self.store_error(member))?;
            to_reader.send(worker).expect("the receiver is here");
        }
        let (to_writer, read) = sync_channel::<Result<Step>>(1);
        std::thread::scope(|scope| {
            let steps = &steps;
            scope.spawn(move || {
                for &(start, len) in steps {
                    // No spare arena: the writer stopped.
                    let Ok(worker) = spares.recv() else { return };
                    let step = self.read_step(member, start, len, worker, work);
                    let failed = step.is_err();
                    if to_writer.send(step).is_err() || failed {
                        return;
                    }
                }
            });
            let mut outcome = Ok(from);
            for _ in steps {
                if work == Work::Rekey && self.rekeying.stop.swap(false, Ordering::SeqCst) {
                    break;
                }
                // Only a reader that panicked hangs up early, and the scope passes its panic on.
                let Ok(step) = read.recv() else { break };
                let mut step = match step {
                    Ok(step) => step,
                    Err(err) => {
                        outcome = Err(err);
                        break;
                    }
                };
                if let Err(err) = self.write_step(member, &mut step, work) {
                    outcome = Err(err);
                    break;
                }
                done(step.start + step.len);
                outcome = Ok(step.start + step.len);
                // The reader may be gone after its last step.
                let _ = to_reader.send(step.worker);
            }
            // Unblocks the reader (no arena comes back, nothing more is taken) before the scope joins it.
            drop(read);
            drop(to_reader);
            outcome
        })
    }

    /// Data units per member.
    pub(super) fn member_units(&self) -> u64 {
        self.header().map_or(0, |h| h.data_size / h.data_unit as u64)
    }

    /// The reader's stage: marks the step busy, reads it into `worker`'s arena, re-encrypts it there.
    fn read_step(&self, member: usize, start: u64, len: u64, mut worker: Worker, work: Work) -> Result<Step> {
        {
            // Taking the write lock waits for the requests running now.
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            let state = &mut keys.members[member];
            let end = (start + len).max(state.position + state.hot.as_ref().map_or(0, |h| h.len));
            state.hot = Some(Hot { len: end - state.position, fingerprints: None });
        }
        let bytes = (len * self.unit) as usize;
        let at = self.data_offset + start * self.unit;
        let ops: Vec<Op<'_>> = (0..bytes)
            .step_by(TRANSFER)
            .map(|from| self.op(member, at + from as u64, from, TRANSFER.min(bytes - from), false))
            .collect();
        worker.run(&ops).map_err(self.store_error(member))?;
        drop(ops);
        if work == Work::Rekey {
            self.reencrypt_step(member, start, len, &mut worker.arena_mut()[..bytes])?;
        }
        Ok(Step { start, len, worker })
    }

    /// A transfer of `len` bytes between the arena from byte `from` and the member at `offset`.
    fn op(&self, member: usize, offset: u64, from: usize, len: usize, write: bool) -> Op<'_> {
        let storage = self.stores[member].as_ref();
        let target = match storage.direct_fd() {
            Some((fd, _)) => Target::Fd(fd),
            None => Target::Store(storage),
        };
        Op { target, offset, slot: from / SLOT_LEN, within: from % SLOT_LEN, len, write }
    }

    /// Re-encrypts a step in place, its logically consecutive runs (1 MiB at most) across the cores.
    fn reencrypt_step(&self, member: usize, start: u64, len: u64, buf: &mut [u8]) -> Result<()> {
        use rayon::prelude::*;
        let (old, new) = {
            let keys = self.read_keys();
            (keys.old.clone(), keys.new.clone().expect("a deep rekey has its new DEK"))
        };
        let mut parts = Vec::new();
        let mut rest = buf;
        for (count, logical) in self.runs(member, start, len) {
            let (part, after) = rest.split_at_mut((count * self.unit) as usize);
            parts.push((part, logical));
            rest = after;
        }
        parts
            .into_par_iter()
            .try_for_each(|(part, logical)| super::reencrypt(&old, &new, part, self.dek_units(logical)?))
    }

    /// The runs of `len` member-local units from `start` that are logically consecutive, at most 1 MiB
    /// each (so the cipher spreads over the cores): (units, first logical unit).
    fn runs(&self, member: usize, start: u64, len: u64) -> Vec<(u64, u64)> {
        let most = ((1 << 20) / self.unit).max(1);
        let mut runs = Vec::new();
        let mut local = 0;
        while local < len {
            let (logical, run) = self.logical_unit(member, start + local);
            let take = run.min(len - local).min(most);
            runs.push((take, logical));
            local += take;
        }
        runs
    }

    /// The writer's stage: for a rekey, the fingerprints (flushed) and the header naming the step hot
    /// (which moves the position past the step before); then the data, flushed; then the step before
    /// is released to I/O.
    fn write_step(&self, member: usize, step: &mut Step, work: Work) -> Result<()> {
        let data = &step.worker.arena()[..(step.len * self.unit) as usize];
        let store = self.stores[member].as_ref();
        let fail = self.store_error(member);
        if work == Work::Rekey {
            let header = self.current_header(member);
            let area = header.reencryption.as_ref().map_or(0, |r| 1 - r.area);
            let prints: Vec<u8> = fingerprints(data).concat();
            store.write_at(&prints, AREA_OFFSETS[area as usize]).map_err(&fail)?;
            store.flush().map_err(&fail)?;
            let area_sum: [u8; 32] = sha2::Sha256::digest(&prints).into();
            self.write_header(member, |h| {
                if let Some(record) = h.reencryption.as_mut() {
                    record.position = step.start;
                    record.hot = step.len;
                    record.area = area;
                    record.area_sum = area_sum;
                }
            })?;
        }
        let ops = self.written_ops(member, step.start, data);
        for batch in ops.chunks(step.worker.depth().max(1)) {
            step.worker.run(batch).map_err(&fail)?;
        }
        store.flush().map_err(&fail)?;
        {
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            let state = &mut keys.members[member];
            let end = state.position + state.hot.as_ref().map_or(0, |h| h.len);
            // A rekey's step stays busy until the next header update moves past it; a copy's is done.
            let start = if work == Work::Rekey { step.start } else { step.start + step.len };
            state.position = start;
            state.hot = (end > start).then(|| Hot { len: end - start, fingerprints: None });
        }
        self.wake();
        Ok(())
    }

    /// Writes of the written units of `data` (a step from member-local unit `start`), run by run, at
    /// most [`TRANSFER`] bytes each: unwritten units stay holes, as thin provisioning wants them.
    fn written_ops(&self, member: usize, start: u64, data: &[u8]) -> Vec<Op<'_>> {
        let unit = self.unit as usize;
        let at = self.data_offset + start * self.unit;
        written_runs(data, unit, (TRANSFER / unit).max(1))
            .into_iter()
            .map(|range| self.op(member, at + range.start as u64, range.start, range.len(), true))
            .collect()
    }
}
