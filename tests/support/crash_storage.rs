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

/// The power all stores of one machine share: the op count and the moment it goes.
#[derive(Debug)]
struct Power {
    /// Writes and flushes so far, over every store.
    ops: u64,
    /// At this op index the power goes.
    crash_at: Option<u64>,
    /// At this op index one EIO is returned.
    fail_at: Option<u64>,
    crashed: bool,
}

/// One store's bytes.
#[derive(Debug)]
struct Disk {
    /// The bytes as readers see them now.
    current: Vec<u8>,
    /// What a crash keeps for sure.
    durable: Vec<u8>,
    /// Writes since the last flush, in order.
    pending: Vec<(usize, Vec<u8>)>,
    seed: u64,
}

/// A crash-simulating store; clones share it.
#[derive(Clone, Debug)]
pub struct CrashStorage {
    name: String,
    power: Arc<Mutex<Power>>,
    disk: Arc<Mutex<Disk>>,
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
    /// A store holding `bytes`, all durable, on a power supply of its own.
    pub fn new(name: &str, bytes: Vec<u8>, seed: u64) -> CrashStorage {
        let power = Power { ops: 0, crash_at: None, fail_at: None, crashed: false };
        CrashStorage::on(name, bytes, seed, Arc::new(Mutex::new(power)))
    }

    /// Stores (one per image) that share one power supply, as the members of a group on one host.
    pub fn group(images: Vec<Vec<u8>>, seed: u64) -> Vec<CrashStorage> {
        let first = CrashStorage::new("m0", Vec::new(), seed);
        images
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| CrashStorage::on(&format!("m{i}"), bytes, seed + i as u64, first.power.clone()))
            .collect()
    }

    fn on(name: &str, bytes: Vec<u8>, seed: u64, power: Arc<Mutex<Power>>) -> CrashStorage {
        let disk = Disk { durable: bytes.clone(), current: bytes, pending: Vec::new(), seed: seed | 1 };
        CrashStorage { name: name.to_owned(), power, disk: Arc::new(Mutex::new(disk)) }
    }

    fn power(&self) -> std::sync::MutexGuard<'_, Power> {
        self.power.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loses power at write-or-flush number `op` (counted from now, over every store sharing it).
    pub fn crash_at(&self, op: u64) {
        let mut p = self.power();
        p.crash_at = Some(p.ops + op);
    }

    /// Fails write-or-flush number `op` (from now) with EIO, once.
    pub fn fail_at(&self, op: u64) {
        let mut p = self.power();
        p.fail_at = Some(p.ops + op);
    }

    /// Writes and flushes so far (over every store sharing the power).
    pub fn ops(&self) -> u64 {
        self.power().ops
    }

    pub fn crashed(&self) -> bool {
        self.power().crashed
    }

    /// What the device holds after the crash: what was flushed, and of each unflushed write an
    /// arbitrary subset of its sectors. Before a crash: the current bytes.
    pub fn survivor(&self) -> Vec<u8> {
        let crashed = self.crashed();
        let disk = self.disk();
        if !crashed {
            return disk.current.clone();
        }
        let mut image = disk.durable.clone();
        let mut seed = disk.seed;
        for (offset, data) in &disk.pending {
            for (i, sector) in data.chunks(SECTOR).enumerate() {
                if next(&mut seed).is_multiple_of(2) {
                    let at = offset + i * SECTOR;
                    image[at..at + sector.len()].copy_from_slice(sector);
                }
            }
        }
        image
    }

    /// Counts an op; Err when it is the one to fail, or the crash, or after it.
    fn op(&self) -> io::Result<()> {
        let mut p = self.power();
        if p.crashed {
            return Err(eio());
        }
        let index = p.ops;
        p.ops += 1;
        if p.fail_at == Some(index) {
            p.fail_at = None;
            return Err(eio());
        }
        if p.crash_at == Some(index) {
            p.crashed = true;
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
        Ok(self.disk().current.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.crashed() {
            return Err(eio());
        }
        let disk = self.disk();
        let at = offset as usize;
        let src = disk
            .current
            .get(at..at + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.op()?;
        let mut disk = self.disk();
        let at = offset as usize;
        if at + data.len() > disk.current.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        disk.current[at..at + data.len()].copy_from_slice(data);
        disk.pending.push((at, data.to_vec()));
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.op()?;
        let mut disk = self.disk();
        for (at, data) in std::mem::take(&mut disk.pending) {
            disk.durable[at..at + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }
}
