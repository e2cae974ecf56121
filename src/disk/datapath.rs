//! The data path of an open volume: one encrypted disk (VM mode) or the members of a disk group
//! (datastore mode), presented as one logical address space of data units.
//!
//! Logical byte `x` lies in stripe `x / stripe`, on member `stripe % members`, at member offset
//! `(stripe / members) * stripe_len + x % stripe_len` from the member's data area. A VM-mode disk is
//! the case of one member whose one stripe is the whole disk. The tweak of a data unit is its *logical*
//! number `x / data_unit`, so no two units of a group, on any member, share a (key, tweak) pair.
//!
//! Every request is cut into pieces that stay within one stripe and one staging slot; pieces go to a
//! [`Worker`] `queue_depth` at a time: writes are encrypted from the caller's buffer into the worker's
//! slots (out of place, in parallel across slots when the round is large) and queued; reads are
//! queued, then decrypted from the slots into the caller's buffer. Writes that cover only part of a data unit read the unit first (read-modify-write) under an
//! exclusive per-unit lock, so concurrent writers never lose each other's bytes; writes of whole units
//! hold the same locks shared, so they run in parallel with each other.
//!
//! Thin provisioning (sectorcrypt disks and groups; a LUKS volume has none, see [`Layout::thin`]): a
//! data unit whose ciphertext is all zeros has never been written (or was discarded) and reads as
//! zeros; a write whose ciphertext would be all zeros is refused, so no written unit is ever taken for
//! an unwritten one (`docs/FORMAT.md`, "Unallocated data units").

use super::format::{Header, HeaderPair};
use super::keyed::{Keys, Rekeying, UnitKey};
use super::members::{Member, disk_error, storage_error};
use super::options::{Notice, OpenOptions};
use super::thin::{clear_unwritten_sectors, is_zero, unwritable};
use crate::error::{DiskFault, Error, Result};
use crate::storage::uring::{Op, SLOT_LEN, Target, Worker};
use crate::storage::{IoEngine, Storage};
use crate::xts::{DataUnits, PARALLEL_THRESHOLD};
use rayon::prelude::*;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Stripes of the per-unit write lock: unit `n` is guarded by lock `n % UNIT_LOCKS`.
const UNIT_LOCKS: u64 = 64;
/// One request of a batch. Requests in one batch run concurrently: their order is not defined, as on a
/// device queue, so a batch should not read what it writes.
#[derive(Debug)]
pub enum IoRequest<'a> {
    /// Fill `buf` from logical byte `offset`.
    Read {
        /// Logical byte offset.
        offset: u64,
        /// Destination.
        buf: &'a mut [u8],
    },
    /// Write `data` at logical byte `offset`.
    Write {
        /// Logical byte offset.
        offset: u64,
        /// Source.
        data: &'a [u8],
    },
}

/// An open encrypted disk or disk group.
pub struct Volume {
    pub(crate) stores: Vec<Box<dyn Storage>>,
    /// The sectorcrypt header of member 0 (none for a volume of another format: LUKS).
    header: Option<Header>,
    /// The header pairs of a sectorcrypt volume's members (none for LUKS), for a deep rekey's updates.
    pub(crate) pairs: Mutex<Vec<HeaderPair>>,
    /// The DEK (two during a deep rekey) and where each applies.
    pub(crate) keys: RwLock<Keys>,
    /// What a deep rekey shares with the I/O beside it.
    pub(crate) rekeying: Rekeying,
    pub(crate) unit: u64,
    stripe: u64,
    size: u64,
    pub(crate) data_offset: u64,
    tweak_base: u64,
    tweak_step: u64,
    thin: bool,
    pub(crate) options: OpenOptions,
    workers: Mutex<Vec<Worker>>,
    unit_locks: Vec<RwLock<()>>,
    notices: Vec<Notice>,
    /// The benchmark baseline: the same path with the cipher left out.
    passthrough: bool,
}

/// Where a volume's data lives on its stores and how its data units are numbered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// Where the data area starts on every store.
    pub(crate) data_offset: u64,
    /// Bytes per data unit.
    pub(crate) unit: u64,
    /// Bytes per stripe (RAID-0 over the stores; the whole size for one store).
    pub(crate) stripe: u64,
    /// Logical bytes.
    pub(crate) size: u64,
    /// Data unit `n` has tweak number `tweak_base + n * tweak_step` (LUKS2 counts 512-byte sectors
    /// from its segment's `iv_tweak`; sectorcrypt disks count units from 0).
    pub(crate) tweak_base: u64,
    pub(crate) tweak_step: u64,
    /// An all-zero ciphertext unit is an unwritten one (sectorcrypt's thin provisioning, see
    /// docs/FORMAT.md); LUKS has no such rule, so every unit is decrypted there.
    pub(crate) thin: bool,
}

impl core::fmt::Debug for Volume {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Volume")
            .field("members", &self.names())
            .field("size", &self.size)
            .field("data_unit", &self.unit)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Volume {
    /// A volume over checked members of a sectorcrypt disk or group, with `keys` (or no cipher, if
    /// `passthrough`).
    pub(crate) fn from_members(
        members: Vec<Member>,
        keys: Keys,
        options: OpenOptions,
        passthrough: bool,
    ) -> Result<Volume> {
        let header = members[0].header().clone();
        let Some(size) = header.data_size.checked_mul(members.len() as u64) else {
            return Err(disk_error(
                members[0].name(),
                DiskFault::InvalidLayout,
                "the group passes 2^64 bytes",
            ));
        };
        let notices = members
            .iter()
            .flat_map(|m| {
                m.headers.problems().into_iter().enumerate().filter_map(|(copy, problem)| {
                    problem.map(|problem| Notice::HeaderCopy { member: m.name().to_owned(), copy, problem })
                })
            })
            .collect();
        let layout = Layout {
            data_offset: header.data_offset,
            unit: header.data_unit as u64,
            stripe: header.place.stripe,
            size,
            tweak_base: 0,
            tweak_step: 1,
            thin: true,
        };
        let pairs = members.iter().map(|m| m.headers.clone()).collect();
        let stores = members.into_iter().map(|m| m.storage).collect();
        let mut volume =
            Volume::from_parts(stores, Some(header), layout, keys, options, notices, passthrough)?;
        volume.pairs = Mutex::new(pairs);
        Ok(volume)
    }

    /// A volume of `layout` over `stores`, with `keys` (or no cipher, if `passthrough`).
    pub(crate) fn from_parts(
        stores: Vec<Box<dyn Storage>>,
        header: Option<Header>,
        layout: Layout,
        keys: Keys,
        options: OpenOptions,
        notices: Vec<Notice>,
        passthrough: bool,
    ) -> Result<Volume> {
        let Layout { data_offset, unit, stripe, size, tweak_base, tweak_step, thin } = layout;
        // Every unit's tweak number must fit: checked once here, so the data path cannot overflow.
        let units = size.div_ceil(unit.max(1));
        if units.checked_mul(tweak_step).and_then(|span| span.checked_add(tweak_base)).is_none() {
            return Err(disk_error(
                stores[0].name(),
                DiskFault::InvalidLayout,
                "its tweak numbers pass 2^64",
            ));
        }
        let mut volume = Volume {
            stores,
            header,
            pairs: Mutex::default(),
            keys: RwLock::new(keys),
            rekeying: Rekeying::default(),
            unit,
            stripe,
            size,
            data_offset,
            tweak_base,
            tweak_step,
            thin,
            options,
            workers: Mutex::default(),
            unit_locks: (0..UNIT_LOCKS).map(|_| RwLock::new(())).collect(),
            notices,
            passthrough,
        };
        // The first worker now, so a fallback from io_uring is known (and told) at open.
        let (worker, fallback) = volume.new_worker()?;
        if let Some(err) = fallback {
            volume.notices.push(Notice::IoUringUnavailable { reason: err.to_string() });
        }
        volume.put_worker(worker);
        Ok(volume)
    }

    /// What the caller may want to tell a person: damaged header copies, an io_uring fallback.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// Logical size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes per data unit.
    pub fn data_unit(&self) -> usize {
        self.unit as usize
    }

    /// The sectorcrypt header of member 0 as it was when the volume was opened (a deep rekey run on it
    /// since changes the header on disk, not this); `None` for a volume of another format (LUKS).
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The members' names (their paths, for files), in member order.
    pub fn names(&self) -> Vec<&str> {
        self.stores.iter().map(|s| s.name()).collect()
    }

    /// Whether the volume is open for writing.
    pub fn is_writable(&self) -> bool {
        self.options.writable
    }

    /// Whether the data area of every member moves through O_DIRECT.
    pub fn is_direct(&self) -> bool {
        self.stores.iter().all(|s| s.direct_fd().is_some_and(|(_, direct)| direct))
    }

    /// `"io_uring"` or `"pread/pwrite"`: what moves this volume's bytes.
    pub fn io_engine_name(&self) -> Result<&'static str> {
        let worker = self.take_worker()?;
        let name = if worker.uses_uring() { "io_uring" } else { "pread/pwrite" };
        self.put_worker(worker);
        Ok(name)
    }

    /// Bytes of backing store the members use, where every store can tell (sparse files).
    pub fn allocated(&self) -> Option<u64> {
        self.stores.iter().map(|s| s.allocated()).sum()
    }

    /// Reads `buf.len()` bytes at logical `offset` (any offset and length).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.submit(&mut [IoRequest::Read { offset, buf }])
    }

    /// Writes `data` at logical `offset` (any offset and length; partial units are read, changed and
    /// written back).
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.submit(&mut [IoRequest::Write { offset, data }])
    }

    /// Makes every completed write durable (a flush of every member's store).
    pub fn flush(&self) -> Result<()> {
        for store in &self.stores {
            store.flush().map_err(|err| storage_error(store.as_ref(), err))?;
        }
        Ok(())
    }

    /// Gives back the whole data units inside `len` bytes at `offset` (TRIM/UNMAP): they read as zeros
    /// afterwards, and the stores deallocate them where they can. Partial units at either end are
    /// written as zeros instead. Returns the bytes deallocated. On a LUKS volume, which has no
    /// unwritten units, the whole range is written as zeros instead.
    pub fn discard(&self, offset: u64, len: u64) -> Result<u64> {
        self.check_request(offset, len, true)?;
        if !self.thin {
            // Without thin provisioning (LUKS) a unit of zero ciphertext is no zero plaintext: write
            // encrypted zeros, as dm-crypt does for a discard it does not pass down.
            let zeros = vec![0u8; (len as usize).min(1 << 20)];
            let mut done = 0;
            while done < len {
                let take = (len - done).min(zeros.len() as u64);
                self.write_at(offset + done, &zeros[..take as usize])?;
                done += take;
            }
            return Ok(0);
        }
        let first_whole = offset.div_ceil(self.unit) * self.unit;
        let end = offset + len;
        let last_whole = end / self.unit * self.unit;
        if first_whole >= last_whole {
            return self.write_at(offset, &vec![0u8; len as usize]).map(|()| 0);
        }
        self.write_at(offset, &vec![0u8; (first_whole - offset) as usize])?;
        self.write_at(last_whole, &vec![0u8; (end - last_whole) as usize])?;
        // A zone a deep rekey is rewriting would be written over with the discarded units' old data.
        let _keys = self.keys_for(&[(first_whole, last_whole - first_whole)]);
        // Like an aligned write, which it is to the stores: only read-modify-writes must wait.
        let _guards = self.lock_units(self.lock_mask(first_whole, last_whole - first_whole), 0);
        // Stripe by stripe, as large as each goes: a store deallocates a range in one call.
        let mut at = first_whole;
        while at < last_whole {
            let (member, physical, in_stripe) = self.locate(at);
            let take = (last_whole - at).min(in_stripe);
            let storage = self.stores[member].as_ref();
            storage.discard(physical, take).map_err(|err| storage_error(storage, err))?;
            at += take;
        }
        Ok(last_whole - first_whole)
    }

    fn check_request(&self, offset: u64, len: u64, write: bool) -> Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(Error::OutOfRange { offset, len, size: self.size });
        }
        if write && !self.options.writable {
            return Err(disk_error(self.stores[0].name(), DiskFault::ReadOnly, "is open read-only"));
        }
        Ok(())
    }

    /// Runs a batch of requests, up to `queue_depth` pieces in flight. Every request is checked before
    /// any I/O starts; a refused batch reads and writes nothing.
    pub fn submit(&self, requests: &mut [IoRequest<'_>]) -> Result<()> {
        let (mut whole, mut partial) = (0u64, 0u64);
        for request in requests.iter() {
            let (offset, len) = request.span();
            let write = matches!(request, IoRequest::Write { .. });
            self.check_request(offset, len, write)?;
            if write && len > 0 {
                if offset.is_multiple_of(self.unit) && len.is_multiple_of(self.unit) {
                    whole |= self.lock_mask(offset, len);
                } else {
                    partial |= self.lock_mask(offset, len);
                }
            }
        }
        let spans: Vec<(u64, u64)> = requests.iter().map(IoRequest::span).collect();
        let keys = self.keys_for(&spans);
        let keys = &*keys;
        let _guards = self.lock_units(whole, partial);

        // Requests that do not cover whole units go through an aligned temporary buffer.
        let mut temps: Vec<Option<(u64, Vec<u8>)>> = requests.iter().map(|r| self.aligned_temp(r)).collect();
        // Read-modify-write: fetch the partial head and tail units of unaligned writes first.
        let mut rmw = Vec::new();
        for (request, temp) in requests.iter().zip(temps.iter_mut()) {
            if let (IoRequest::Write { offset, .. }, Some((start, buf))) = (request, temp) {
                let head = !offset.is_multiple_of(self.unit);
                let (_, len) = request.span();
                let tail = !(offset + len).is_multiple_of(self.unit);
                let unit = self.unit as usize;
                if buf.len() == unit {
                    rmw.push((*start, Dir::Read(buf)));
                } else {
                    let last_start = *start + (buf.len() - unit) as u64;
                    let (first, rest) = buf.split_at_mut(unit);
                    let rest_len = rest.len();
                    let last = &mut rest[rest_len - unit..];
                    if head {
                        rmw.push((*start, Dir::Read(first)));
                    }
                    if tail {
                        rmw.push((last_start, Dir::Read(last)));
                    }
                }
            }
        }
        self.run_aligned(keys, &mut rmw)?;
        drop(rmw);
        for (request, temp) in requests.iter().zip(temps.iter_mut()) {
            if let (IoRequest::Write { offset, data }, Some((start, buf))) = (request, temp) {
                let at = (offset - *start) as usize;
                buf[at..at + data.len()].copy_from_slice(data);
            }
        }
        let mut dirs: Vec<(u64, Dir<'_>)> = Vec::with_capacity(requests.len());
        for (request, temp) in requests.iter_mut().zip(temps.iter_mut()) {
            dirs.push(match (request, temp) {
                (IoRequest::Read { offset, buf }, None) => (*offset, Dir::Read(buf)),
                (IoRequest::Write { offset, data }, None) => (*offset, Dir::Write(data)),
                (IoRequest::Read { .. }, Some((start, buf))) => (*start, Dir::Read(buf)),
                (IoRequest::Write { .. }, Some((start, buf))) => (*start, Dir::Write(buf)),
            });
        }
        self.run_aligned(keys, &mut dirs)?;
        drop(dirs);
        for (request, temp) in requests.iter_mut().zip(temps) {
            if let (IoRequest::Read { offset, buf }, Some((start, temp))) = (request, temp) {
                let at = (*offset - start) as usize;
                buf.copy_from_slice(&temp[at..at + buf.len()]);
            }
        }
        Ok(())
    }

    /// For a request that does not cover whole data units: the aligned span's start and a buffer for it.
    fn aligned_temp(&self, request: &IoRequest<'_>) -> Option<(u64, Vec<u8>)> {
        let (offset, len) = request.span();
        if len == 0 || (offset % self.unit == 0 && len % self.unit == 0) {
            return None;
        }
        let start = offset / self.unit * self.unit;
        let end = (offset + len).div_ceil(self.unit) * self.unit;
        Some((start, vec![0u8; (end - start) as usize]))
    }

    fn lock_mask(&self, offset: u64, len: u64) -> u64 {
        let (first, last) = (offset / self.unit, (offset + len - 1) / self.unit);
        if last - first + 1 >= UNIT_LOCKS {
            return u64::MAX;
        }
        (first..=last).fold(0, |mask, unit| mask | 1 << (unit % UNIT_LOCKS))
    }

    /// Takes the unit locks: shared for the units of whole-unit writes (which may run together: each
    /// replaces whole units, as a device would), exclusive for those of read-modify-writes (which must
    /// not interleave with any other write of their units). Always in ascending order, so two batches
    /// cannot deadlock.
    fn lock_units(&self, shared: u64, exclusive: u64) -> Vec<UnitGuard<'_>> {
        (0..UNIT_LOCKS)
            .filter(|bit| (shared | exclusive) & (1 << bit) != 0)
            .map(|bit| {
                let lock = &self.unit_locks[bit as usize];
                if exclusive & (1 << bit) != 0 {
                    UnitGuard::Exclusive(lock.write().unwrap_or_else(|poisoned| poisoned.into_inner()))
                } else {
                    UnitGuard::Shared(lock.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
                }
            })
            .collect()
    }

    fn new_worker(&self) -> Result<(Worker, Option<std::io::Error>)> {
        Worker::new(self.engine(), self.options.queue_depth)
            .map_err(|err| storage_error(self.stores[0].as_ref(), err))
    }

    fn take_worker(&self) -> Result<Worker> {
        let pooled = self.workers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(worker) => Ok(worker),
            None => self.new_worker().map(|(worker, _)| worker),
        }
    }

    fn put_worker(&self, worker: Worker) {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
    }

    /// The engine `auto` means here: io_uring for O_DIRECT files, where requests really run
    /// asynchronously; pread/pwrite for page-cache I/O, which is a synchronous copy either way and which
    /// io_uring hands to its worker threads for writes, adding a wakeup (`docs/PERFORMANCE.md`). Stores
    /// without a descriptor move their bytes through the [`Storage`](crate::storage::Storage) trait.
    pub(crate) fn engine(&self) -> IoEngine {
        let all_fds = self.stores.iter().all(|s| s.direct_fd().is_some());
        match self.options.io {
            _ if !all_fds => IoEngine::Sync,
            IoEngine::Auto if !self.is_direct() => IoEngine::Sync,
            engine => engine,
        }
    }

    /// Whole-unit requests: cut into pieces, staged, encrypted or decrypted, moved `depth` at a time.
    fn run_aligned(&self, keys: &Keys, requests: &mut [(u64, Dir<'_>)]) -> Result<()> {
        let mut pieces = Vec::new();
        for (index, (offset, dir)) in requests.iter().enumerate() {
            self.cut(keys, index, *offset, dir.len(), dir.is_write(), &mut pieces);
        }
        if pieces.is_empty() {
            return Ok(());
        }
        let mut worker = self.take_worker()?;
        let depth = worker.depth();
        let units = DataUnits::new(self.unit as usize)?.with_step(self.tweak_step)?;
        for round in pieces.chunks(depth.max(1)) {
            let mut staged: Vec<(&mut [u8], &Piece)> =
                worker.slots_mut().zip(round).map(|(slot, piece)| (&mut slot[..piece.len], piece)).collect();
            self.encrypt_writes(keys, &mut staged, requests, units)?;
            drop(staged);
            let ops: Vec<Op<'_>> = round
                .iter()
                .enumerate()
                .map(|(slot, piece)| {
                    let storage = self.stores[piece.member].as_ref();
                    let target = match storage.direct_fd() {
                        Some((fd, _)) => Target::Fd(fd),
                        None => Target::Store(storage),
                    };
                    Op { target, offset: piece.physical, slot, within: 0, len: piece.len, write: piece.write }
                })
                .collect();
            if let Err(err) = worker.run(&ops) {
                return Err(storage_error(self.stores[round[0].member].as_ref(), err));
            }
            let staged: Vec<(&mut [u8], &Piece)> =
                worker.slots_mut().zip(round).map(|(slot, piece)| (&mut slot[..piece.len], piece)).collect();
            self.decrypt_reads(keys, &staged, requests, units)?;
        }
        self.put_worker(worker);
        Ok(())
    }

    /// Encrypts each write piece of a round from the caller's buffer straight into its staging slot
    /// (the kernels write out of place, so the plaintext is never copied first); across slots in
    /// parallel when the round is large enough to pay for waking the pool.
    fn encrypt_writes(
        &self,
        keys: &Keys,
        staged: &mut [(&mut [u8], &Piece)],
        requests: &[(u64, Dir<'_>)],
        units: DataUnits,
    ) -> Result<()> {
        let one = |(slot, piece): &mut (&mut [u8], &Piece)| -> Result<()> {
            let Dir::Write(data) = &requests[piece.request].1 else { return Ok(()) };
            let source = &data[piece.buf_offset..][..piece.len];
            if self.passthrough {
                slot.copy_from_slice(source);
                return Ok(());
            }
            let units = self.units_at(units, piece.first_unit);
            if piece.key == UnitKey::Hot {
                // A writable open re-encrypts a crash's hot zone before anything else runs.
                let name = self.stores[piece.member].name();
                return Err(disk_error(
                    name,
                    DiskFault::Busy,
                    "a deep rekey left these data units unsettled",
                ));
            }
            keys.cipher(piece.key).encrypt_units_to(source, slot, units)?;
            // Refused before anything is written: an all-zero ciphertext would read back as an
            // unwritten unit.
            if !self.thin {
                return Ok(());
            }
            match unwritable(slot, self.unit as usize) {
                Some(index) => Err(Error::UnwritableUnit(units.first() + index as u64 * units.step())),
                None => Ok(()),
            }
        };
        let bytes: usize = staged.iter().filter(|(_, piece)| piece.write).map(|(slot, _)| slot.len()).sum();
        if bytes >= PARALLEL_THRESHOLD {
            staged.par_iter_mut().try_for_each(one)
        } else {
            staged.iter_mut().try_for_each(one)
        }
    }

    /// Decrypts each read piece of a round from its staging slot straight into the caller's buffer,
    /// leaving all-zero (unwritten) units as zeros; in parallel when the round is large.
    fn decrypt_reads(
        &self,
        keys: &Keys,
        staged: &[(&mut [u8], &Piece)],
        requests: &mut [(u64, Dir<'_>)],
        units: DataUnits,
    ) -> Result<()> {
        // Each read piece's destination: its own range of its request's buffer, split off so pieces
        // can be decrypted in parallel.
        let mut destinations: Vec<Option<&mut [u8]>> = Vec::with_capacity(staged.len());
        let mut rests: Vec<Option<&mut [u8]>> = requests
            .iter_mut()
            .map(|(_, dir)| match dir {
                Dir::Read(buf) => Some(&mut **buf),
                Dir::Write(_) => None,
            })
            .collect();
        // Pieces of a request come in buffer order, but one round may start in its middle.
        let mut consumed = vec![0usize; rests.len()];
        for (_, piece) in staged {
            let destination = match rests[piece.request].take() {
                Some(rest) if !piece.write => {
                    let skip = piece.buf_offset - consumed[piece.request];
                    let (piece_buf, after) = rest[skip..].split_at_mut(piece.len);
                    rests[piece.request] = Some(after);
                    consumed[piece.request] = piece.buf_offset + piece.len;
                    Some(piece_buf)
                }
                other => {
                    rests[piece.request] = other;
                    None
                }
            };
            destinations.push(destination);
        }
        let one = |((slot, piece), out): (&(&mut [u8], &Piece), &mut Option<&mut [u8]>)| -> Result<()> {
            let Some(out) = out else { return Ok(()) };
            if self.passthrough {
                out.copy_from_slice(slot);
                return Ok(());
            }
            self.decrypt_piece(keys, piece, slot, out, self.units_at(units, piece.first_unit))
        };
        let bytes: usize = destinations.iter().flatten().map(|out| out.len()).sum();
        if bytes >= PARALLEL_THRESHOLD {
            staged.par_iter().zip(destinations.par_iter_mut()).try_for_each(one)
        } else {
            staged.iter().zip(destinations.iter_mut()).try_for_each(one)
        }
    }

    /// Decrypts whole units of `slot` into `out`, with zeros for all-zero (unwritten) units.
    fn decrypt_piece(
        &self,
        keys: &Keys,
        piece: &Piece,
        slot: &[u8],
        out: &mut [u8],
        units: DataUnits,
    ) -> Result<()> {
        if piece.key == UnitKey::Hot {
            let first = (piece.physical - self.data_offset) / self.unit;
            return keys.decrypt_hot(piece.member, first, slot, out, units);
        }
        let xts = keys.cipher(piece.key);
        if !self.thin {
            return xts.decrypt_units_to(slot, out, units);
        }
        let unit = self.unit as usize;
        let mut start = 0;
        while start < slot.len() {
            // The run of written units from `start`, then the run of unwritten ones after it.
            let written = slot[start..].chunks_exact(unit).take_while(|u| !is_zero(u)).count() * unit;
            if written > 0 {
                let first = units.first() + (start / unit) as u64 * self.tweak_step;
                let range = start..start + written;
                xts.decrypt_units_to(
                    &slot[range.clone()],
                    &mut out[range.clone()],
                    units.starting_at(first),
                )?;
                clear_unwritten_sectors(&slot[range.clone()], &mut out[range]);
            }
            start += written;
            let unwritten = slot[start..].chunks_exact(unit).take_while(|u| is_zero(u)).count() * unit;
            out[start..start + unwritten].fill(0);
            start += unwritten;
        }
        Ok(())
    }

    /// Cuts `len` logical bytes at `offset` (unit aligned) into pieces within one stripe and one slot.
    /// Pieces also end where the key changes (a deep rekey's position or hot zone), so each has one.
    fn cut(
        &self,
        keys: &Keys,
        request: usize,
        offset: u64,
        len: usize,
        write: bool,
        pieces: &mut Vec<Piece>,
    ) {
        let mut done = 0usize;
        while done < len {
            let at = offset + done as u64;
            let (member, physical, in_stripe) = self.locate(at);
            let (key, same) = keys.key_of(member, (physical - self.data_offset) / self.unit);
            let same_bytes = same.saturating_mul(self.unit);
            let take = (len - done).min(in_stripe.min(SLOT_LEN as u64).min(same_bytes) as usize);
            pieces.push(Piece {
                request,
                member,
                physical,
                first_unit: at / self.unit,
                len: take,
                buf_offset: done,
                write,
                key,
            });
            done += take;
        }
    }

    /// The data units of a piece whose first unit is logical unit `first_unit`.
    fn units_at(&self, units: DataUnits, first_unit: u64) -> DataUnits {
        // `from_parts` checked that every unit's tweak number fits.
        units.starting_at(self.tweak_base + first_unit * self.tweak_step)
    }

    /// Where logical byte `at` lives: the member, the byte offset in its store, and how many bytes of
    /// its stripe are left from there.
    pub(crate) fn locate(&self, at: u64) -> (usize, u64, u64) {
        let count = self.stores.len() as u64;
        let (stripe, within) = (at / self.stripe, at % self.stripe);
        let physical = self.data_offset + (stripe / count) * self.stripe + within;
        ((stripe % count) as usize, physical, self.stripe - within)
    }
}

impl IoRequest<'_> {
    /// The logical offset and length of the request.
    pub fn span(&self) -> (u64, u64) {
        match self {
            IoRequest::Read { offset, buf } => (*offset, buf.len() as u64),
            IoRequest::Write { offset, data } => (*offset, data.len() as u64),
        }
    }
}

/// A held unit lock; released on drop.
enum UnitGuard<'a> {
    Shared(#[allow(dead_code, reason = "held for its drop")] RwLockReadGuard<'a, ()>),
    Exclusive(#[allow(dead_code, reason = "held for its drop")] RwLockWriteGuard<'a, ()>),
}

/// The caller's side of an aligned request.
enum Dir<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Dir<'_> {
    fn len(&self) -> usize {
        match self {
            Dir::Read(buf) => buf.len(),
            Dir::Write(data) => data.len(),
        }
    }

    fn is_write(&self) -> bool {
        matches!(self, Dir::Write(_))
    }
}

/// A piece of a request inside one stripe and one staging slot.
#[derive(Debug)]
struct Piece {
    request: usize,
    member: usize,
    physical: u64,
    first_unit: u64,
    len: usize,
    buf_offset: usize,
    write: bool,
    key: UnitKey,
}
