//! A volume over memory storage driven by arbitrary request sequences, with storage faults: nothing
//! panics, and until the first injected fault every read matches a plain model of the disk (unwritten
//! and discarded bytes read as zeros).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sectorcrypt::disk::{CreateOptions, IoRequest, Mode, OpenOptions, Volume};
use sectorcrypt::keys::{Kek, KeyProvider, KeyRef, ProviderKind};
use sectorcrypt::storage::{MemStorage, Storage};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const SIZE: u64 = 64 * 1024;
const STORE: usize = (1 << 20) + SIZE as usize;

/// One fixed KEK: the target is the data path, not key management.
#[derive(Debug)]
struct FixedProvider;

impl KeyProvider for FixedProvider {
    fn name(&self) -> String {
        "fixed".into()
    }
    fn create_kek(&self, _key_id: Option<&str>) -> sectorcrypt::Result<KeyRef> {
        KeyRef::new(ProviderKind::Native, "fuzz", "fuzz")
    }
    fn get_kek(&self, _key_ref: &KeyRef) -> sectorcrypt::Result<Kek> {
        Kek::from_bytes(&[7; 32])
    }
}

/// Memory storage that fails every operation once `budget` operations have run.
#[derive(Debug)]
struct Faulty {
    inner: Arc<MemStorage>,
    budget: Arc<AtomicU64>,
}

impl Faulty {
    fn spend(&self) -> io::Result<()> {
        let left = self.budget.load(Ordering::Relaxed);
        if left == 0 {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.budget.store(left - 1, Ordering::Relaxed);
        Ok(())
    }
}

impl Storage for Faulty {
    fn name(&self) -> &str {
        "faulty"
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.spend()?;
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.spend()?;
        self.inner.write_at(data, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.spend()
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&setup, ops)) = input.split_first() else { return };
    let memory = Arc::new(MemStorage::new("mem", STORE));
    let data_unit = 512usize << (setup % 4);
    let options = CreateOptions { data_unit, ..CreateOptions::default() };
    Volume::create_on(&[memory.as_ref()], Mode::Vm, SIZE, &options, &FixedProvider).unwrap();
    // Fault-free open, then a budget of storage operations from the input (255: none).
    let budget = if setup >> 4 == 15 { u64::MAX } else { u64::from(setup >> 4) * 8 };
    let handle = Arc::new(AtomicU64::new(u64::MAX));
    let store = Faulty { inner: memory.clone(), budget: handle.clone() };
    // Two staging slots: more rounds per request, and an arena small enough to make thousands a second.
    let open = OpenOptions { writable: true, queue_depth: 2, ..OpenOptions::default() };
    let volume = Volume::open_on(vec![Box::new(store)], Mode::Vm, &FixedProvider, open).unwrap();
    handle.store(budget, Ordering::Relaxed);
    let mut model = vec![0u8; SIZE as usize];
    let mut faulted = false;
    for op in ops.chunks_exact(6) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]])) * 3 % (SIZE + 64);
        let len = u64::from(u16::from_le_bytes([op[3], op[4]])) % 9000;
        let in_range = offset + len <= SIZE;
        let result = match op[0] % 4 {
            0 => {
                let mut buf = vec![0u8; len as usize];
                let result = volume.read_at(offset, &mut buf);
                if result.is_ok() && !faulted {
                    assert!(buf[..] == model[offset as usize..(offset + len) as usize], "read differs");
                }
                result
            }
            1 => {
                let data = vec![op[5]; len as usize];
                let result = volume.write_at(offset, &data);
                if result.is_ok() {
                    model[offset as usize..(offset + len) as usize].copy_from_slice(&data);
                }
                result
            }
            2 => {
                let result = volume.discard(offset, len).map(|_| ());
                if result.is_ok() {
                    model[offset as usize..(offset + len) as usize].fill(0);
                }
                result
            }
            _ => {
                let half = len / 2;
                let mut a = vec![0u8; half as usize];
                let b = vec![op[5]; half as usize];
                let second = (offset + SIZE / 2) % SIZE;
                let result = volume.submit(&mut [
                    IoRequest::Read { offset, buf: &mut a },
                    IoRequest::Write { offset: second, data: &b },
                ]);
                let apart = offset + half <= second || second + half <= offset;
                match result {
                    // A batch's requests run in any order: only a read apart from the write is defined.
                    Ok(()) if apart => {
                        if !faulted {
                            assert!(
                                a[..] == model[offset as usize..(offset + half) as usize],
                                "batch read differs"
                            );
                        }
                        model[second as usize..(second + half) as usize].copy_from_slice(&b);
                    }
                    Ok(()) => faulted = true,
                    Err(_) => {}
                }
                result
            }
        };
        if result.is_err() {
            let must_succeed = in_range && budget == u64::MAX && op[0] % 4 != 3;
            assert!(!must_succeed, "a fault-free request failed: {result:?}");
            faulted = true;
        }
    }
});
