//! The I/O engine: batches of reads and writes between files and page-aligned staging buffers, through
//! io_uring where the kernel allows it and `pread`/`pwrite` where it does not.
//!
//! Each [`Worker`] owns a staging arena of `queue_depth` slots of [`SLOT_LEN`] bytes, page aligned (so
//! O_DIRECT accepts them) and registered with its ring as one fixed buffer (so the kernel does not map
//! and pin the pages again for every request). Callers encrypt into a slot and queue a write from it, or
//! queue a read into a slot and decrypt there: the staging copy is needed anyway, since a caller's buffer
//! to be written must not be encrypted in place. A worker serves one batch at a time; the volume keeps a
//! pool of them, one per thread that is doing I/O.
//!
//! A transfer goes to a descriptor (io_uring or pread/pwrite on it) or, for a store that has none, to
//! the [`Storage`] itself. Where io_uring cannot be had, [`Worker::new`] falls back to pread/pwrite
//! and hands the reason back, for the volume to pass on as a notice: a library does not print.
//!
//! This is the only module of the crate that uses `unsafe`: io_uring's kernel interface takes raw
//! buffer addresses, which the kernel reads or writes after the call that queued them has returned.

#![allow(unsafe_code)]

use super::Storage;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Bytes per staging slot: the largest piece one request moves (a multiple of every data-unit size).
pub const SLOT_LEN: usize = 256 * 1024;
const PAGE: usize = 4096;

/// The environment variable that picks the engine: `uring`, `sync` or `auto` (default).
pub const IO_ENGINE_ENV: &str = "SECTORCRYPT_IO";

/// Which system interface moves the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoEngine {
    /// io_uring if the kernel allows it, else `pread`/`pwrite` (with a notice to the caller).
    #[default]
    Auto,
    /// io_uring only; an error where it is unavailable.
    Uring,
    /// `pread`/`pwrite`, one request at a time.
    Sync,
}

impl IoEngine {
    /// Every engine, in the order `auto`, `uring`, `sync`.
    pub const ALL: [IoEngine; 3] = [IoEngine::Auto, IoEngine::Uring, IoEngine::Sync];

    /// `auto`, `uring` or `sync`.
    pub const fn name(self) -> &'static str {
        match self {
            IoEngine::Auto => "auto",
            IoEngine::Uring => "uring",
            IoEngine::Sync => "sync",
        }
    }

    /// The engine with this name (as `SECTORCRYPT_IO` and `--io` spell it).
    pub fn from_name(name: &str) -> Option<IoEngine> {
        IoEngine::ALL.into_iter().find(|engine| engine.name() == name.trim())
    }
}

#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// Where a transfer goes.
#[derive(Clone, Copy)]
pub enum Target<'f> {
    /// A descriptor: io_uring or pread/pwrite on it.
    Fd(BorrowedFd<'f>),
    /// A store without one: its own `read_at`/`write_at`.
    Store(&'f dyn Storage),
}

/// One queued transfer between a store and a staging slot.
pub struct Op<'f> {
    /// Where the bytes go or come from.
    pub target: Target<'f>,
    /// Byte offset in the file.
    pub offset: u64,
    /// Which staging slot.
    pub slot: usize,
    /// Where in the slot the bytes start.
    pub within: usize,
    /// Bytes to move: to the end of the slot, or on through the slots after it (the arena is one
    /// piece of memory), up to the end of the arena.
    pub len: usize,
    /// Write from the slot (else read into it).
    pub write: bool,
}

struct Ring {
    ring: io_uring::IoUring,
    /// Whether the arena is registered (fixed-buffer opcodes) or not (plain read/write opcodes).
    fixed: bool,
}

/// A staging arena and, where available, the io_uring instance that moves it.
pub struct Worker {
    // Declared before `arena` so the ring (and any registration of the arena) goes first on drop.
    ring: Option<Ring>,
    arena: Vec<Page>,
    depth: usize,
}

impl Worker {
    /// A worker with `depth` slots, on the engine asked for. With [`IoEngine::Auto`], a kernel that
    /// refuses io_uring gives a pread/pwrite worker and the reason, as the second value.
    pub fn new(engine: IoEngine, depth: usize) -> std::io::Result<(Worker, Option<std::io::Error>)> {
        let depth = depth.clamp(1, 4096);
        let arena = vec![Page([0; PAGE]); depth * SLOT_LEN / PAGE];
        let mut worker = Worker { ring: None, arena, depth };
        if engine == IoEngine::Sync {
            return Ok((worker, None));
        }
        match io_uring::IoUring::new(depth.next_power_of_two() as u32) {
            Ok(ring) => {
                let bytes = bytemuck::cast_slice_mut::<Page, u8>(&mut worker.arena);
                let iovec = libc::iovec { iov_base: bytes.as_mut_ptr().cast(), iov_len: bytes.len() };
                // SAFETY: the arena is a heap allocation owned by this worker that is never resized; the
                // ring, which holds the registration, is dropped before it (field order).
                let fixed = unsafe { ring.submitter().register_buffers(&[iovec]) }.is_ok();
                worker.ring = Some(Ring { ring, fixed });
            }
            Err(err) if engine == IoEngine::Uring => return Err(err),
            Err(err) => return Ok((worker, Some(err))),
        }
        Ok((worker, None))
    }

    /// Slots per batch.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether this worker runs on io_uring.
    pub fn uses_uring(&self) -> bool {
        self.ring.is_some()
    }

    /// The slots, each [`SLOT_LEN`] bytes.
    pub fn slots_mut(&mut self) -> std::slice::ChunksExactMut<'_, u8> {
        bytemuck::cast_slice_mut::<Page, u8>(&mut self.arena).chunks_exact_mut(SLOT_LEN)
    }

    /// The whole arena: the slots one after the other.
    pub fn arena(&self) -> &[u8] {
        bytemuck::cast_slice::<Page, u8>(&self.arena)
    }

    /// The whole arena, to fill or change.
    pub fn arena_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut::<Page, u8>(&mut self.arena)
    }

    /// Runs every op (at most `depth`, each in its own slot) and returns when all are done. A short
    /// transfer is continued; end of file on a read is an error.
    pub fn run(&mut self, ops: &[Op<'_>]) -> std::io::Result<()> {
        // Checked arithmetic: the unsafe submission relies on this bound.
        let end = |op: &Op<'_>| {
            op.slot
                .checked_mul(SLOT_LEN)
                .and_then(|at| at.checked_add(op.within))
                .and_then(|at| at.checked_add(op.len))
        };
        let outside = ops.len() > self.depth
            || ops.iter().any(|op| end(op).is_none_or(|end| end > self.depth * SLOT_LEN));
        if outside {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "transfers outside the staging arena",
            ));
        }
        let all_fds = ops.iter().all(|op| matches!(op.target, Target::Fd(_)));
        match self.ring.take() {
            None => self.run_sync(ops),
            Some(ring) if !all_fds => {
                self.ring = Some(ring);
                self.run_sync(ops)
            }
            Some(ring) => {
                let result = self.run_uring(&ring, ops);
                if result.is_ok() {
                    self.ring = Some(ring);
                } else {
                    // Some requests may still be in flight, and the kernel may yet write into the arena:
                    // retire the ring and leak the arena (rare, bounded) rather than free memory that
                    // a request could still reach. The worker is left with no slots.
                    drop(ring);
                    std::mem::forget(std::mem::take(&mut self.arena));
                    self.depth = 0;
                }
                result
            }
        }
    }

    fn run_sync(&mut self, ops: &[Op<'_>]) -> std::io::Result<()> {
        let bytes = bytemuck::cast_slice_mut::<Page, u8>(&mut self.arena);
        for op in ops {
            let slot = &mut bytes[op.slot * SLOT_LEN + op.within..][..op.len];
            match (op.target, op.write) {
                (Target::Store(store), true) => store.write_at(slot, op.offset)?,
                (Target::Store(store), false) => store.read_at(slot, op.offset)?,
                (Target::Fd(fd), true) => pwrite_all(fd, slot, op.offset)?,
                (Target::Fd(fd), false) => pread_exact(fd, slot, op.offset)?,
            }
        }
        Ok(())
    }

    fn run_uring(&mut self, ring: &Ring, ops: &[Op<'_>]) -> std::io::Result<()> {
        let base = bytemuck::cast_slice_mut::<Page, u8>(&mut self.arena).as_mut_ptr();
        // Bytes done per op; an op is resubmitted for its remainder after a short transfer.
        let mut done = vec![0usize; ops.len()];
        let mut in_flight = 0usize;
        let mut first_error = None;
        for index in 0..ops.len() {
            self.push(ring, base, ops, index, 0)?;
            in_flight += 1;
        }
        while in_flight > 0 {
            match ring.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
            let completed: Vec<(u64, i32)> = ring_completions(ring);
            for (user_data, result) in completed {
                in_flight -= 1;
                let index = user_data as usize;
                if result < 0 {
                    first_error.get_or_insert(std::io::Error::from_raw_os_error(-result));
                    continue;
                }
                if result == 0 && !ops[index].write {
                    first_error.get_or_insert(std::io::ErrorKind::UnexpectedEof.into());
                    continue;
                }
                done[index] += result as usize;
                if done[index] < ops[index].len && first_error.is_none() {
                    self.push(ring, base, ops, index, done[index])?;
                    in_flight += 1;
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Queues the part of op `index` from byte `from` on.
    fn push(
        &self,
        ring: &Ring,
        base: *mut u8,
        ops: &[Op<'_>],
        index: usize,
        from: usize,
    ) -> std::io::Result<()> {
        use io_uring::{opcode, types};
        let op = &ops[index];
        let Target::Fd(fd) = op.target else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "io_uring needs a descriptor"));
        };
        let fd = types::Fd(fd.as_raw_fd());
        let len = (op.len - from) as u32;
        let offset = op.offset + from as u64;
        // The address stays inside the arena: `run` checked that the op ends inside it.
        let addr = base.wrapping_add(op.slot * SLOT_LEN + op.within + from);
        let entry = match (op.write, ring.fixed) {
            (false, true) => opcode::ReadFixed::new(fd, addr, len, 0).offset(offset).build(),
            (true, true) => opcode::WriteFixed::new(fd, addr, len, 0).offset(offset).build(),
            (false, false) => opcode::Read::new(fd, addr, len).offset(offset).build(),
            (true, false) => opcode::Write::new(fd, addr, len).offset(offset).build(),
        }
        .user_data(index as u64);
        // SAFETY: the entry points into this worker's arena, which outlives the request: `run_uring` waits
        // for every completion before it returns, and on an error the worker is retired with its ring.
        // The file descriptor is borrowed for the whole call. The ring has `depth` or more entries and at
        // most `depth` requests are queued at once, so the queue cannot be full.
        let pushed = unsafe { ring.ring.submission_shared().push(&entry) };
        pushed.map_err(|_| std::io::Error::other("io_uring submission queue full"))
    }
}

fn pread_exact(fd: BorrowedFd<'_>, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pread(fd, &mut *buf, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

fn pwrite_all(fd: BorrowedFd<'_>, mut data: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

fn ring_completions(ring: &Ring) -> Vec<(u64, i32)> {
    // SAFETY: only the thread that owns this worker (it holds `&mut Worker`) reads the completion queue.
    unsafe { ring.ring.completion_shared() }.map(|cqe| (cqe.user_data(), cqe.result())).collect()
}
