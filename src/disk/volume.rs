//! A volume: one encrypted disk (VM mode) or the members of a disk group (datastore mode), presented as
//! one logical address space of data units.
//!
//! Logical byte `x` lies in stripe `x / stripe`, on member `stripe % members`, at member offset
//! `(stripe / members) * stripe_len + x % stripe_len` from the member's data area. A VM-mode disk is
//! the case of one member whose one stripe is the whole disk. The tweak of a data unit is its *logical*
//! number `x / data_unit`, so no two units of a group, on any member, share a (key, tweak) pair.
//!
//! Every request is cut into pieces that stay within one stripe and one staging slot; pieces go to a
//! [`Worker`] `queue_depth` at a time: writes are encrypted into the worker's slots (in parallel across
//! slots when the round is large) and queued; reads are queued, then decrypted in the slots and copied
//! out. Writes that cover only part of a data unit read the unit first (read-modify-write) under a
//! per-unit lock, so concurrent writers never lose each other's bytes.

use super::format::{
    CopyState, DATA_OFFSET, DEFAULT_STRIPE, GroupPlace, HEADER_LEN, HEADER_OFFSETS, Header, HeaderPair, Mode,
    new_uuid, uuid_string,
};
use super::uring::{IoEngine, Op, SLOT_LEN, Worker};
use crate::error::{Error, Result};
use crate::key::KeySize;
use crate::keys::{Dek, KeyProvider, KeyRef, WrappedDek};
use crate::xts::{BackendChoice, DataUnits, PARALLEL_THRESHOLD, Xts};
use rayon::prelude::*;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Stripes of the per-unit write lock: unit `n` is guarded by lock `n % UNIT_LOCKS`.
const UNIT_LOCKS: u64 = 64;
/// Default number of requests in flight per worker.
pub const DEFAULT_QUEUE_DEPTH: usize = 32;

/// How to open a disk or group.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Open for writing (takes the exclusive advisory lock).
    pub writable: bool,
    /// Cipher backend.
    pub backend: BackendChoice,
    /// io_uring, pread/pwrite, or auto.
    pub io: IoEngine,
    /// Requests in flight per worker.
    pub queue_depth: usize,
    /// Try O_DIRECT (used where the file system accepts it and data units are 4 KiB or more).
    pub direct: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            writable: false,
            backend: BackendChoice::Auto,
            io: IoEngine::Auto,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            direct: true,
        }
    }
}

/// How to lay out a new disk or group.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Bytes per data unit (power of two, 512..=131072).
    pub data_unit: usize,
    /// XTS-AES-256 (default) or XTS-AES-128.
    pub cipher: KeySize,
    /// The KEK's id at the provider (default: a fresh random id).
    pub key_id: Option<String>,
    /// Stripe of a group (default 1 MiB); ignored in VM mode.
    pub stripe: u64,
}

impl Default for CreateOptions {
    fn default() -> CreateOptions {
        CreateOptions { data_unit: 4096, cipher: KeySize::Aes256, key_id: None, stripe: DEFAULT_STRIPE }
    }
}

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

struct Member {
    path: PathBuf,
    /// Buffered handle: header I/O and the advisory lock.
    meta: File,
    /// Handle for the data area (O_DIRECT where possible).
    data: File,
    direct: bool,
    headers: HeaderPair,
}

/// An open encrypted disk or disk group.
pub struct Volume {
    members: Vec<Member>,
    xts: Xts,
    unit: u64,
    stripe: u64,
    size: u64,
    options: OpenOptions,
    workers: Mutex<Vec<Worker>>,
    unit_locks: Vec<Mutex<()>>,
    /// The benchmark baseline: the same path with the cipher left out.
    passthrough: bool,
}

impl core::fmt::Debug for Volume {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Volume")
            .field("members", &self.members.iter().map(|m| &m.path).collect::<Vec<_>>())
            .field("size", &self.size)
            .field("data_unit", &self.unit)
            .field("xts", &self.xts)
            .finish_non_exhaustive()
    }
}

fn io_error(path: &Path, err: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), kind: err.kind(), message: err.to_string() }
}

fn disk_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Disk { path: path.display().to_string(), reason: reason.into() }
}

/// Reads both header copies of a disk without any key (for `info`).
pub fn read_headers(path: &Path) -> Result<HeaderPair> {
    let file = File::open(path).map_err(|err| io_error(path, err))?;
    read_pair(&file).map_err(|err| disk_error(path, err.to_string()))
}

fn read_pair(file: &File) -> Result<HeaderPair> {
    HeaderPair::decode(|slot| {
        let mut buf = vec![0u8; HEADER_LEN];
        let mut filled = 0;
        while filled < HEADER_LEN {
            match file.read_at(&mut buf[filled..], HEADER_OFFSETS[slot] + filled as u64)? {
                0 => break,
                n => filled += n,
            }
        }
        buf.truncate(filled);
        Ok(buf)
    })
}

/// Writes `header` as both copies: first the one that is not current, synced, then the other. A crash
/// at any point leaves a complete copy with the old or the new content.
fn write_pair(member: &mut Member, header: &Header) -> Result<()> {
    let first = 1 - member.headers.current;
    let mut next = header.clone();
    for (slot, step) in [(first, 1), (1 - first, 2)] {
        next.sequence = member.headers.header().sequence + step;
        write_copy(member, &next, slot)?;
    }
    member.headers = read_pair(&member.meta)?;
    Ok(())
}

fn write_copy(member: &Member, header: &Header, slot: usize) -> Result<()> {
    let fail = |err| io_error(&member.path, err);
    member.meta.write_all_at(&header.encode(slot), HEADER_OFFSETS[slot]).map_err(fail)?;
    member.meta.sync_data().map_err(fail)
}

fn file_len(file: &mut File, path: &Path) -> Result<u64> {
    // Works for block devices too, whose metadata length is 0.
    file.seek(SeekFrom::End(0)).map_err(|err| io_error(path, err))
}

fn open_member(path: &Path, writable: bool, direct: bool) -> Result<Member> {
    let mut meta = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(path)
        .map_err(|err| io_error(path, err))?;
    let locked = if writable { meta.try_lock() } else { meta.try_lock_shared() };
    if let Err(err) = locked {
        return Err(match err {
            std::fs::TryLockError::WouldBlock => disk_error(path, "is open for writing by another process"),
            std::fs::TryLockError::Error(err) => io_error(path, err),
        });
    }
    let headers = read_pair(&meta).map_err(|err| disk_error(path, err.to_string()))?;
    let header = headers.header();
    let len = file_len(&mut meta, path)?;
    let needed = header.data_offset + header.data_size;
    if len < needed {
        return Err(disk_error(path, format!("truncated: {len} bytes, but its header describes {needed}")));
    }
    // O_DIRECT needs transfers aligned to the device's logical block (512 B or 4 KiB); data units of
    // 4 KiB and more are aligned on any device.
    let want_direct = direct && header.data_unit >= 4096;
    let open_data =
        |flags: i32| std::fs::OpenOptions::new().read(true).write(writable).custom_flags(flags).open(path);
    let (data, direct) = match want_direct.then(|| open_data(libc::O_DIRECT)) {
        // tmpfs accepts O_DIRECT (since Linux 6.6) but serves it from memory like any other I/O.
        Some(Ok(file)) if !is_tmpfs(&file) => (file, true),
        // EINVAL: the file system does not do O_DIRECT; buffered I/O it is.
        _ => (open_data(0).map_err(|err| io_error(path, err))?, false),
    };
    Ok(Member { path: path.to_owned(), meta, data, direct, headers })
}

fn is_tmpfs(file: &File) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    // `f_type` is i64 on x86_64 but narrower elsewhere.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstatfs(file).is_ok_and(|stat| stat.f_type as i64 == TMPFS_MAGIC)
}

/// Opens every member and checks that they form one disk (VM) or one complete group (datastore).
fn open_members(paths: &[PathBuf], mode: Mode, writable: bool, direct: bool) -> Result<Vec<Member>> {
    if paths.is_empty() {
        return Err(Error::Disk { path: String::new(), reason: "no disk given".into() });
    }
    let mut members = paths.iter().map(|p| open_member(p, writable, direct)).collect::<Result<Vec<_>>>()?;
    for member in &members {
        let found = member.headers.header().mode;
        if found != mode {
            return Err(disk_error(
                &member.path,
                format!(
                    "is a {}-mode disk, not {} mode (use `sectorcrypt {}`)",
                    found.name(),
                    mode.name(),
                    match found {
                        Mode::Vm => "disk",
                        Mode::Datastore => "group",
                    }
                ),
            ));
        }
    }
    if mode == Mode::Vm && members.len() != 1 {
        return Err(disk_error(&members[1].path, "a VM-mode disk is opened alone"));
    }
    members.sort_by_key(|m| m.headers.header().place.member_index);
    check_group(&members)?;
    Ok(members)
}

fn check_group(members: &[Member]) -> Result<()> {
    let first = members[0].headers.header();
    let count = first.place.member_count as usize;
    for (index, member) in members.iter().enumerate() {
        let header = member.headers.header();
        let fail = |reason: String| Err(disk_error(&member.path, reason));
        if header.place.group_uuid != first.place.group_uuid {
            return fail(format!(
                "belongs to group {}, not to group {} of {}",
                uuid_string(&header.place.group_uuid),
                uuid_string(&first.place.group_uuid),
                members[0].path.display()
            ));
        }
        if header.place.member_index as usize != index {
            return fail(
                if index > 0
                    && members[index - 1].headers.header().place.member_index == header.place.member_index
                {
                    format!("member {} of the group is given twice", header.place.member_index)
                } else {
                    format!(
                        "member {index} of {count} is missing (this is member {})",
                        header.place.member_index
                    )
                },
            );
        }
        if header.generation != first.generation {
            return fail(format!(
                "is at key generation {}, member 0 at {} (an interrupted rekey?): run `group repair`",
                header.generation, first.generation
            ));
        }
        let same_layout = header.data_unit == first.data_unit
            && header.data_size == first.data_size
            && header.data_offset == first.data_offset
            && header.place.stripe == first.place.stripe
            && header.place.member_count == first.place.member_count
            && header.wrapped_dek == first.wrapped_dek;
        if !same_layout {
            return fail("disagrees with member 0 about the layout or the wrapped key".into());
        }
    }
    if members.len() != count {
        let last = &members[members.len() - 1];
        return Err(disk_error(
            &last.path,
            format!("the group has {count} members, {} given", members.len()),
        ));
    }
    Ok(())
}

impl Volume {
    /// Creates a new disk (VM mode, one path) or group (datastore mode, one path per member) of
    /// `member_size` data bytes per member, with a fresh DEK wrapped under a KEK from `provider`. Refuses
    /// existing paths; on any failure every file it created is removed.
    pub fn create(
        paths: &[PathBuf],
        mode: Mode,
        member_size: u64,
        options: &CreateOptions,
        provider: &dyn KeyProvider,
    ) -> Result<()> {
        let unit = DataUnits::new(options.data_unit)?.size() as u64;
        let count = paths.len();
        let stripe = match mode {
            Mode::Vm => member_size,
            Mode::Datastore => options.stripe,
        };
        let bad = |reason: String| Error::Disk { path: String::new(), reason };
        match mode {
            Mode::Vm if count != 1 => return Err(bad("a VM-mode disk has exactly one file".into())),
            Mode::Datastore if count == 0 => return Err(bad("a group needs at least one member".into())),
            _ => {}
        }
        if member_size == 0 || !member_size.is_multiple_of(unit) {
            return Err(bad(format!("the size must be a positive multiple of the data unit ({unit} bytes)")));
        }
        if mode == Mode::Datastore
            && (stripe == 0 || !stripe.is_multiple_of(unit) || !member_size.is_multiple_of(stripe))
        {
            return Err(bad(format!(
                "the stripe ({stripe}) must be a multiple of the data unit ({unit}) and divide the size per member ({member_size})"
            )));
        }
        if DATA_OFFSET.checked_add(member_size).is_none() {
            return Err(bad("the size is too large".into()));
        }
        for (i, path) in paths.iter().enumerate() {
            if paths[..i].contains(path) {
                return Err(disk_error(path, "is given twice"));
            }
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(disk_error(path, "already exists; refusing to overwrite it"));
            }
        }
        let (_dek, wrapped) = provider.new_wrapped_dek(options.cipher, options.key_id.as_deref())?;
        let group_uuid = if mode == Mode::Datastore { new_uuid()? } else { [0; 16] };
        let mut created = Vec::new();
        let result = (|| {
            for (index, path) in paths.iter().enumerate() {
                let header = Header {
                    sequence: 0,
                    generation: 1,
                    uuid: new_uuid()?,
                    mode,
                    cipher: options.cipher,
                    data_unit: unit as u32,
                    data_offset: DATA_OFFSET,
                    data_size: member_size,
                    place: GroupPlace {
                        group_uuid,
                        member_index: index as u32,
                        member_count: count as u32,
                        stripe,
                    },
                    wrapped_dek: wrapped.clone(),
                };
                header.check_geometry()?;
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .map_err(|err| io_error(path, err))?;
                created.push(path.clone());
                let fail = |err| io_error(path, err);
                file.set_len(DATA_OFFSET + member_size).map_err(fail)?;
                for slot in [0, 1] {
                    let copy = Header { sequence: slot as u64 + 1, ..header.clone() };
                    file.write_all_at(&copy.encode(slot), HEADER_OFFSETS[slot]).map_err(fail)?;
                }
                file.sync_all().map_err(fail)?;
            }
            Ok(())
        })();
        if result.is_err() {
            for path in &created {
                let _ = std::fs::remove_file(path);
            }
        }
        result
    }

    /// Opens a disk or a complete group, unwrapping its DEK with `provider`.
    pub fn open(
        paths: &[PathBuf],
        mode: Mode,
        provider: &dyn KeyProvider,
        options: OpenOptions,
    ) -> Result<Volume> {
        let members = open_members(paths, mode, options.writable, options.direct)?;
        let header = members[0].headers.header().clone();
        let dek = provider.unwrap_dek(&header.wrapped_dek)?;
        Volume::from_members(members, &dek, options)
    }

    /// HAZMAT, for benchmarks only: the volume on the same data path (staging, io_uring, O_DIRECT,
    /// pieces, locks) but with the cipher left out, so a benchmark can measure what encryption adds. Needs
    /// no key; what it writes is **plaintext**, so never point it at a disk that holds data.
    #[doc(hidden)]
    pub fn hazmat_open_unencrypted_for_benchmark(
        paths: &[PathBuf],
        mode: Mode,
        options: OpenOptions,
    ) -> Result<Volume> {
        let members = open_members(paths, mode, options.writable, options.direct)?;
        let throwaway = Dek::generate(members[0].headers.header().cipher)?;
        let mut volume = Volume::from_members(members, &throwaway, options)?;
        volume.passthrough = true;
        Ok(volume)
    }

    fn from_members(members: Vec<Member>, dek: &Dek, options: OpenOptions) -> Result<Volume> {
        let header = members[0].headers.header();
        let xts = Xts::new(dek.xts_key(), options.backend)?;
        let size = header.data_size * members.len() as u64;
        Ok(Volume {
            unit: header.data_unit as u64,
            stripe: header.place.stripe,
            size,
            xts,
            members,
            options,
            workers: Mutex::default(),
            unit_locks: (0..UNIT_LOCKS).map(|_| Mutex::new(())).collect(),
            passthrough: false,
        })
    }

    /// Logical size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes per data unit.
    pub fn data_unit(&self) -> usize {
        self.unit as usize
    }

    /// The header that counts, of member 0.
    pub fn header(&self) -> &Header {
        self.members[0].headers.header()
    }

    /// The member files, in member order.
    pub fn paths(&self) -> Vec<&Path> {
        self.members.iter().map(|m| m.path.as_path()).collect()
    }

    /// Whether the data area of every member is opened with O_DIRECT.
    pub fn is_direct(&self) -> bool {
        self.members.iter().all(|m| m.direct)
    }

    /// `"io_uring"` or `"pread/pwrite"`: what moves this volume's bytes.
    pub fn io_engine_name(&self) -> Result<&'static str> {
        let worker = self.take_worker()?;
        let name = if worker.uses_uring() { "io_uring" } else { "pread/pwrite" };
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
        Ok(name)
    }

    /// The cipher backend in use.
    pub fn backend(&self) -> crate::Backend {
        self.xts.backend()
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

    /// Makes every completed write durable (fdatasync on every member).
    pub fn flush(&self) -> Result<()> {
        for member in &self.members {
            member.data.sync_data().map_err(|err| io_error(&member.path, err))?;
        }
        Ok(())
    }

    /// Runs a batch of requests, up to `queue_depth` pieces in flight. Every request is checked before
    /// any I/O starts; a refused batch reads and writes nothing.
    pub fn submit(&self, requests: &mut [IoRequest<'_>]) -> Result<()> {
        let mut write_locks = 0u64;
        for request in requests.iter() {
            let (offset, len) = request.span();
            let write = matches!(request, IoRequest::Write { .. });
            if offset.checked_add(len).is_none_or(|end| end > self.size) {
                return Err(Error::OutOfRange { offset, len, size: self.size });
            }
            if write && !self.options.writable {
                return Err(disk_error(&self.members[0].path, "is open read-only"));
            }
            if write && len > 0 {
                write_locks |= self.lock_mask(offset, len);
            }
        }
        let _guards = self.lock_units(write_locks);

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
        self.run_aligned(&mut rmw)?;
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
        self.run_aligned(&mut dirs)?;
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

    /// Takes the unit locks in `mask`, always in ascending order so two batches cannot deadlock.
    fn lock_units(&self, mask: u64) -> Vec<MutexGuard<'_, ()>> {
        (0..UNIT_LOCKS)
            .filter(|bit| mask & (1 << bit) != 0)
            .map(|bit| self.unit_locks[bit as usize].lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
            .collect()
    }

    fn take_worker(&self) -> Result<Worker> {
        let pooled = self.workers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(worker) => Ok(worker),
            None => Worker::new(self.engine(), self.options.queue_depth)
                .map_err(|err| io_error(&self.members[0].path, err)),
        }
    }

    /// The engine `auto` means here: io_uring for O_DIRECT files, where requests really run
    /// asynchronously; pread/pwrite for page-cache I/O, which is a synchronous copy either way and which
    /// io_uring (measured on Linux 6.18, ext4 and tmpfs) hands to its worker threads for writes, adding a
    /// wakeup: 40-50 us per 4 KiB write instead of 1-1.5 us.
    fn engine(&self) -> IoEngine {
        match self.options.io {
            IoEngine::Auto if !self.is_direct() => IoEngine::Sync,
            engine => engine,
        }
    }

    /// Whole-unit requests: cut into pieces, staged, encrypted or decrypted, moved `depth` at a time.
    fn run_aligned(&self, requests: &mut [(u64, Dir<'_>)]) -> Result<()> {
        let mut pieces = Vec::new();
        for (index, (offset, dir)) in requests.iter().enumerate() {
            self.cut(index, *offset, dir.len(), dir.is_write(), &mut pieces);
        }
        if pieces.is_empty() {
            return Ok(());
        }
        let mut worker = self.take_worker()?;
        let depth = worker.depth();
        let units = DataUnits::new(self.unit as usize)?;
        for round in pieces.chunks(depth) {
            let mut staged: Vec<(&mut [u8], &Piece)> =
                worker.slots_mut().zip(round).map(|(slot, piece)| (&mut slot[..piece.len], piece)).collect();
            for (slot, piece) in staged.iter_mut() {
                if let Dir::Write(data) = &requests[piece.request].1 {
                    slot.copy_from_slice(&data[piece.buf_offset..][..piece.len]);
                }
            }
            self.crypt(&mut staged, units, true)?;
            drop(staged);
            let ops: Vec<Op<'_>> = round
                .iter()
                .enumerate()
                .map(|(slot, piece)| {
                    let member = &self.members[piece.member];
                    Op {
                        file: &member.data,
                        offset: piece.physical,
                        slot,
                        len: piece.len,
                        write: piece.write,
                    }
                })
                .collect();
            if let Err(err) = worker.run(&ops) {
                return Err(io_error(&self.members[round[0].member].path, err));
            }
            let mut staged: Vec<(&mut [u8], &Piece)> =
                worker.slots_mut().zip(round).map(|(slot, piece)| (&mut slot[..piece.len], piece)).collect();
            self.crypt(&mut staged, units, false)?;
            for (slot, piece) in staged.iter() {
                if let Dir::Read(buf) = &mut requests[piece.request].1 {
                    buf[piece.buf_offset..][..piece.len].copy_from_slice(slot);
                }
            }
        }
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).push(worker);
        Ok(())
    }

    /// Encrypts the staged writes (`writes`) or decrypts the staged reads (`!writes`); across slots in
    /// parallel when the round is large enough to pay for waking the pool.
    fn crypt(&self, staged: &mut [(&mut [u8], &Piece)], units: DataUnits, writes: bool) -> Result<()> {
        if self.passthrough {
            return Ok(());
        }
        let one = |(slot, piece): &mut (&mut [u8], &Piece)| -> Result<()> {
            match (piece.write, writes) {
                (true, true) => self.xts.encrypt_units(slot, units.starting_at(piece.first_unit)),
                (false, false) => self.xts.decrypt_units(slot, units.starting_at(piece.first_unit)),
                _ => Ok(()),
            }
        };
        let bytes: usize =
            staged.iter().filter(|(_, piece)| piece.write == writes).map(|(slot, _)| slot.len()).sum();
        if bytes >= PARALLEL_THRESHOLD {
            staged.par_iter_mut().try_for_each(one)
        } else {
            staged.iter_mut().try_for_each(one)
        }
    }

    /// Cuts `len` logical bytes at `offset` (unit aligned) into pieces within one stripe and one slot.
    fn cut(&self, request: usize, offset: u64, len: usize, write: bool, pieces: &mut Vec<Piece>) {
        let count = self.members.len() as u64;
        let data_offset = self.header().data_offset;
        let mut done = 0usize;
        while done < len {
            let at = offset + done as u64;
            let (stripe, within) = (at / self.stripe, at % self.stripe);
            let take = (len - done).min((self.stripe - within) as usize).min(SLOT_LEN);
            pieces.push(Piece {
                request,
                member: (stripe % count) as usize,
                physical: data_offset + (stripe / count) * self.stripe + within,
                first_unit: at / self.unit,
                len: take,
                buf_offset: done,
                write,
            });
            done += take;
        }
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
}

/// Shallow rekey: the DEK re-wrapped under a new KEK (`new_key_id`, or a fresh id) in every member's
/// header, generation + 1. No data is rewritten. Returns the old and new KEK references.
pub fn rekey_shallow(
    paths: &[PathBuf],
    mode: Mode,
    provider: &dyn KeyProvider,
    new_key_id: Option<&str>,
) -> Result<(KeyRef, KeyRef)> {
    let mut members = open_members(paths, mode, true, false)?;
    let current = members[0].headers.header().clone();
    let rewrapped = provider.rewrap_dek(&current.wrapped_dek, new_key_id)?;
    let new_ref = rewrapped.key_ref().clone();
    for member in &mut members {
        let header = Header {
            generation: current.generation + 1,
            wrapped_dek: rewrapped.clone(),
            ..member.headers.header().clone()
        };
        write_pair(member, &header)?;
    }
    Ok((current.wrapped_dek.key_ref().clone(), new_ref))
}

/// Rewrites damaged or stale header copies from the current one, and (in a group) brings members left
/// behind by an interrupted rekey to the newest key generation. Needs no key. Returns what it did.
pub fn repair(paths: &[PathBuf], mode: Mode) -> Result<Vec<String>> {
    let mut actions = Vec::new();
    let mut members = Vec::new();
    for path in paths {
        let member = open_member(path, true, false)?;
        if member.headers.header().mode != mode {
            return Err(disk_error(path, format!("is not a {}-mode disk", mode.name())));
        }
        members.push(member);
    }
    for member in &mut members {
        for (slot, problem) in member.headers.problems().into_iter().enumerate() {
            if let Some(problem) = problem {
                let mut header = member.headers.header().clone();
                header.sequence = max_sequence(&member.headers) + 1;
                write_copy(member, &header, slot)?;
                actions.push(format!("{}: rewrote header copy {slot} ({problem})", member.path.display()));
            }
        }
        member.headers = read_pair(&member.meta)?;
    }
    // An interrupted group rekey: members at an older generation take the newest wrapped key.
    let newest = members.iter().map(|m| m.headers.header().clone()).max_by_key(|h| h.generation);
    if let Some(newest) = newest {
        for member in &mut members {
            let header = member.headers.header().clone();
            if header.generation < newest.generation && header.place.group_uuid == newest.place.group_uuid {
                let updated = Header {
                    generation: newest.generation,
                    wrapped_dek: newest.wrapped_dek.clone(),
                    ..header.clone()
                };
                write_pair(member, &updated)?;
                actions.push(format!(
                    "{}: key generation {} -> {} (finished an interrupted rekey)",
                    member.path.display(),
                    header.generation,
                    newest.generation
                ));
            }
        }
    }
    members.sort_by_key(|m| m.headers.header().place.member_index);
    check_group(&members)?;
    Ok(actions)
}

fn max_sequence(pair: &HeaderPair) -> u64 {
    pair.copies
        .iter()
        .filter_map(|c| match c {
            CopyState::Valid(h) => Some(h.sequence),
            CopyState::Damaged(_) => None,
        })
        .max()
        .unwrap_or(0)
}

/// The DEK of a disk or group, for interop checks. Anyone holding it can decrypt the data without the
/// key provider: only the explicitly named hazmat command exposes it.
pub fn hazmat_unwrap_dek(
    paths: &[PathBuf],
    mode: Mode,
    provider: &dyn KeyProvider,
) -> Result<(Dek, WrappedDek)> {
    let members = open_members(paths, mode, false, false)?;
    let wrapped = members[0].headers.header().wrapped_dek.clone();
    Ok((provider.unwrap_dek(&wrapped)?, wrapped))
}
