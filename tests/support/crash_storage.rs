//! A store that crashes: it counts writes and flushes, and at a chosen one it "loses power". What
//! survives is everything flushed before, plus an arbitrary (seeded) subset of the writes made since
//! the last flush, each torn at 512-byte granularity (every aligned 512-byte sector of such a write is
//! kept or lost on its own), as a disk with a volatile write cache may leave it. From the crash on,
//! every operation fails with EIO, like a device that went away.
//!
//! It can also fail one operation with EIO and go on (an injected I/O error).

#![allow(dead_code)]

use sectorcrypt::storage::Storage;
use std::io;
use std::sync::{Arc, Mutex};

const SECTOR: usize = 512;

#[derive(Debug)]
struct State {
    /// The bytes as readers see them now.
    current: Vec<u8>,
    /// What a crash keeps for sure.
    durable: Vec<u8>,
    /// Writes since the last flush, in order.
    pending: Vec<(usize, Vec<u8>)>,
    /// Writes and flushes so far.
    ops: u64,
    /// At this op index the power goes.
    crash_at: Option<u64>,
    /// At this op index one EIO is returned.
    fail_at: Option<u64>,
    crashed: bool,
    seed: u64,
}

/// A crash-simulating store; clones share it.
#[derive(Clone, Debug)]
pub struct CrashStorage {
    name: String,
    state: Arc<Mutex<State>>,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(5)
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

impl CrashStorage {
    /// A store holding `bytes`, all durable.
    pub fn new(name: &str, bytes: Vec<u8>, seed: u64) -> CrashStorage {
        let state = State {
            durable: bytes.clone(),
            current: bytes,
            pending: Vec::new(),
            ops: 0,
            crash_at: None,
            fail_at: None,
            crashed: false,
            seed: seed | 1,
        };
        CrashStorage { name: name.to_owned(), state: Arc::new(Mutex::new(state)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loses power at write-or-flush number `op` (counted from now, 0-based).
    pub fn crash_at(&self, op: u64) {
        let mut s = self.lock();
        s.crash_at = Some(s.ops + op);
    }

    /// Fails write-or-flush number `op` (from now) with EIO, once.
    pub fn fail_at(&self, op: u64) {
        let mut s = self.lock();
        s.fail_at = Some(s.ops + op);
    }

    /// Writes and flushes so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// What the device holds after the crash (or now, if it has not crashed: the current bytes).
    pub fn survivor(&self) -> Vec<u8> {
        let s = self.lock();
        if s.crashed { s.durable.clone() } else { s.current.clone() }
    }

    /// Counts an op; Err when it is the one to fail or the crash (which it then performs).
    fn op(s: &mut State) -> io::Result<()> {
        if s.crashed {
            return Err(eio());
        }
        let index = s.ops;
        s.ops += 1;
        if s.fail_at == Some(index) {
            s.fail_at = None;
            return Err(eio());
        }
        if s.crash_at == Some(index) {
            // Power lost: an arbitrary subset of the unflushed writes' sectors reaches the medium.
            let pending = std::mem::take(&mut s.pending);
            let mut seed = s.seed;
            for (offset, data) in pending {
                for (i, sector) in data.chunks(SECTOR).enumerate() {
                    if next(&mut seed).is_multiple_of(2) {
                        let at = offset + i * SECTOR;
                        s.durable[at..at + sector.len()].copy_from_slice(sector);
                    }
                }
            }
            s.crashed = true;
            return Err(eio());
        }
        Ok(())
    }
}

impl Storage for CrashStorage {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.lock().current.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let s = self.lock();
        if s.crashed {
            return Err(eio());
        }
        let at = offset as usize;
        let src =
            s.current.get(at..at + buf.len()).ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.lock();
        CrashStorage::op(&mut s)?;
        let at = offset as usize;
        if at + data.len() > s.current.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        s.current[at..at + data.len()].copy_from_slice(data);
        s.pending.push((at, data.to_vec()));
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let mut s = self.lock();
        CrashStorage::op(&mut s)?;
        for (at, data) in std::mem::take(&mut s.pending) {
            s.durable[at..at + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }
}
