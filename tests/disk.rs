//! Encrypted disks and disk groups through the library: reads and writes at any offset against a plain
//! model, on both I/O engines, with and without O_DIRECT; data at rest is ciphertext; every fault is
//! refused cleanly.

mod common;

use sectorcrypt::disk::{
    CreateOptions, DiskGroup, EncryptedDisk, IoEngine, IoRequest, Mode, OpenOptions, Volume,
};
use sectorcrypt::keys::NativeProvider;
use sectorcrypt::{Error, KeySize};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

struct Fixture {
    dir: tempfile::TempDir,
    provider: NativeProvider,
}

fn fixture_in(base: Option<&Path>) -> Fixture {
    let dir = match base {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let provider = NativeProvider::init(dir.path().join("kdk")).unwrap();
    Fixture { dir, provider }
}

fn fixture() -> Fixture {
    fixture_in(None)
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn writable(io: IoEngine) -> OpenOptions {
    OpenOptions { writable: true, io, ..OpenOptions::default() }
}

/// A small deterministic generator for offsets and lengths.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Random reads and writes (aligned and not, single and batched) against a plain in-memory model.
fn exercise(volume: &Volume, seed: u64, rounds: usize) {
    let size = volume.size() as usize;
    let mut model = vec![0u8; size];
    volume.write_at(0, &model).unwrap();
    let mut rng = Lcg(seed);
    for round in 0..rounds {
        let unit = volume.data_unit() as u64;
        let len = match rng.next() % 4 {
            0 => (rng.next() % 3 + 1) * unit,
            1 => rng.next() % (3 * unit) + 1,
            2 => rng.next() % 600_000 + 1,
            _ => rng.next() % 17 + 1,
        } as usize;
        let len = len.min(size);
        let offset = if rng.next().is_multiple_of(2) {
            (rng.next() % (size - len) as u64 + 1) / unit * unit
        } else {
            rng.next() % (size - len + 1) as u64
        } as usize;
        let data = common::pattern(len, seed + round as u64);
        volume.write_at(offset as u64, &data).unwrap();
        model[offset..offset + len].copy_from_slice(&data);
        let mut back = vec![0u8; len];
        volume.read_at(offset as u64, &mut back).unwrap();
        assert!(back == model[offset..offset + len], "round {round}: {len} bytes at {offset}");
    }
    // A batch of reads of the whole volume in odd pieces.
    let mut whole = vec![0u8; size];
    let (a, rest) = whole.split_at_mut(12_345);
    let (b, c) = rest.split_at_mut(size / 2);
    let mut batch = [
        IoRequest::Read { offset: 0, buf: a },
        IoRequest::Read { offset: 12_345, buf: b },
        IoRequest::Read { offset: (12_345 + size / 2) as u64, buf: c },
    ];
    volume.submit(&mut batch).unwrap();
    assert!(whole == model);
}

#[test]
fn vm_disk_matches_a_plain_model_on_every_engine() {
    let f = fixture();
    for (i, (unit, cipher)) in
        [(4096, KeySize::Aes256), (512, KeySize::Aes128), (131072, KeySize::Aes256)].into_iter().enumerate()
    {
        let path = f.path(&format!("disk{i}"));
        let options = CreateOptions { data_unit: unit, cipher, ..CreateOptions::default() };
        EncryptedDisk::create(&path, 4 * MIB, &options, &f.provider).unwrap();
        for io in [IoEngine::Uring, IoEngine::Sync] {
            let disk = EncryptedDisk::open(&path, &f.provider, writable(io)).unwrap();
            assert_eq!(disk.size(), 4 * MIB);
            assert_eq!(disk.header().expect("a sectorcrypt disk").cipher, cipher);
            exercise(&disk, i as u64 * 10 + 1, 60);
        }
    }
}

#[test]
fn buffered_fallback_on_tmpfs() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return;
    }
    let f = fixture_in(Some(shm));
    let path = f.path("disk");
    EncryptedDisk::create(&path, 2 * MIB, &CreateOptions::default(), &f.provider).unwrap();
    let disk = EncryptedDisk::open(&path, &f.provider, writable(IoEngine::Auto)).unwrap();
    exercise(&disk, 5, 30);
}

#[test]
fn group_stripes_and_numbers_units_over_the_group() {
    let f = fixture();
    let members: Vec<PathBuf> = (0..3).map(|i| f.path(&format!("m{i}"))).collect();
    let options = CreateOptions { stripe: 64 * 1024, ..CreateOptions::default() };
    DiskGroup::create(&members, MIB, &options, &f.provider).unwrap();
    // Members in any order.
    let shuffled = vec![members[2].clone(), members[0].clone(), members[1].clone()];
    let group = DiskGroup::open(&shuffled, &f.provider, writable(IoEngine::Auto)).unwrap();
    assert_eq!(group.size(), 3 * MIB);
    exercise(&group, 7, 60);

    // Stripe 1 (logical 64 KiB..128 KiB) lives at the start of member 1's data area, encrypted with the
    // logical unit numbers 16.. (not 0..): the same plaintext on different members differs.
    let plain = vec![0x42u8; 64 * 1024];
    group.write_at(0, &plain).unwrap();
    group.write_at(64 * 1024, &plain).unwrap();
    group.flush().unwrap();
    drop(group);
    let read_member = |i: usize| {
        let bytes = std::fs::read(&members[i]).unwrap();
        bytes[MIB as usize..MIB as usize + 64 * 1024].to_vec()
    };
    let (m0, m1) = (read_member(0), read_member(1));
    assert_ne!(m0, m1);
    let (dek, _) = sectorcrypt::disk::hazmat_unwrap_dek(&members, Mode::Datastore, &f.provider).unwrap();
    let xts = sectorcrypt::Xts::new(dek.xts_key(), sectorcrypt::BackendChoice::Auto).unwrap();
    let mut expect = plain.clone();
    xts.encrypt_units(&mut expect, sectorcrypt::DataUnits::new(4096).unwrap().starting_at(16)).unwrap();
    assert_eq!(m1, expect);
}

#[test]
fn data_at_rest_is_ciphertext() {
    let f = fixture();
    let path = f.path("disk");
    EncryptedDisk::create(&path, 2 * MIB, &CreateOptions::default(), &f.provider).unwrap();
    let disk = EncryptedDisk::open(&path, &f.provider, writable(IoEngine::Auto)).unwrap();
    let marker = b"KNOWN-PLAINTEXT-MARKER-0123456789";
    let pattern: Vec<u8> = marker.iter().copied().cycle().take(MIB as usize).collect();
    disk.write_at(12_345, &pattern).unwrap();
    disk.flush().unwrap();
    drop(disk);
    let raw = std::fs::read(&path).unwrap();
    assert!(!raw.windows(marker.len()).any(|w| w == marker), "plaintext found at rest");
    // ... while the disk gives it back.
    let disk = EncryptedDisk::open(&path, &f.provider, OpenOptions::default()).unwrap();
    let mut back = vec![0u8; pattern.len()];
    disk.read_at(12_345, &mut back).unwrap();
    assert!(back == pattern);
}

#[test]
fn bounds_read_only_and_second_writer_are_refused() {
    let f = fixture();
    let path = f.path("disk");
    EncryptedDisk::create(&path, MIB, &CreateOptions::default(), &f.provider).unwrap();
    let disk = EncryptedDisk::open(&path, &f.provider, writable(IoEngine::Auto)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut buf = [0u8; 10];
    assert_eq!(
        disk.read_at(MIB - 5, &mut buf),
        Err(Error::OutOfRange { offset: MIB - 5, len: 10, size: MIB })
    );
    assert!(matches!(disk.write_at(u64::MAX - 3, &buf), Err(Error::OutOfRange { .. })));
    // A batch with one bad request does nothing at all.
    let mut batch = [
        IoRequest::Write { offset: 0, data: &[1u8; 4096] },
        IoRequest::Write { offset: MIB, data: &[1u8; 1] },
    ];
    assert!(matches!(disk.submit(&mut batch), Err(Error::OutOfRange { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let second = EncryptedDisk::open(&path, &f.provider, writable(IoEngine::Auto)).unwrap_err();
    assert!(second.to_string().contains("is open for writing by another process"), "{second}");
    let reader = EncryptedDisk::open(&path, &f.provider, OpenOptions::default()).unwrap_err();
    assert!(reader.to_string().contains("another process"), "{reader}");
    drop(disk);
    let reader = EncryptedDisk::open(&path, &f.provider, OpenOptions::default()).unwrap();
    assert!(reader.write_at(0, &[1]).unwrap_err().to_string().contains("read-only"));
}

#[test]
fn concurrent_partial_writes_to_the_same_units_lose_nothing() {
    let f = fixture();
    let path = f.path("disk");
    EncryptedDisk::create(&path, MIB, &CreateOptions::default(), &f.provider).unwrap();
    let disk = EncryptedDisk::open(&path, &f.provider, writable(IoEngine::Auto)).unwrap();
    disk.write_at(0, &vec![0u8; 64 * 1024]).unwrap();
    // Two threads write interleaved 50-byte pieces of the same 4 KiB units: every write is a
    // read-modify-write of a unit the other thread is changing too.
    std::thread::scope(|scope| {
        for thread in 0..2u8 {
            let disk = &disk;
            scope.spawn(move || {
                for i in 0..600u64 {
                    let offset = i * 100 + thread as u64 * 50;
                    disk.write_at(offset, &[thread + 1; 50]).unwrap();
                }
            });
        }
    });
    let mut back = vec![0u8; 60_000];
    disk.read_at(0, &mut back).unwrap();
    for (i, piece) in back.chunks(50).enumerate() {
        assert!(piece.iter().all(|&b| b == (i % 2) as u8 + 1), "piece {i} lost a write");
    }
}

/// Whole-unit writes run under shared unit locks, read-modify-writes under exclusive ones: a partial
/// write racing whole-unit writes of the same units never writes back a unit it read before one of
/// them (which would undo that write in the bytes it did not change).
#[test]
fn partial_writes_never_undo_concurrent_whole_unit_writes() {
    let f = fixture();
    let path = f.path("disk");
    EncryptedDisk::create(&path, MIB, &CreateOptions::default(), &f.provider).unwrap();
    let disk = EncryptedDisk::open(&path, &f.provider, writable(IoEngine::Auto)).unwrap();
    const UNITS: u64 = 8;
    const ROUNDS: u64 = 200;
    std::thread::scope(|scope| {
        let disk = &disk;
        // Two threads rewrite their own four units whole, each round with the round's number.
        for thread in 0..2u64 {
            scope.spawn(move || {
                for round in 1..=ROUNDS {
                    for unit in (thread..UNITS).step_by(2) {
                        disk.write_at(unit * 4096, &[round as u8; 4096]).unwrap();
                    }
                }
            });
        }
        // One thread changes the first 16 bytes of every unit, over and over.
        scope.spawn(move || {
            for i in 0..2000u64 {
                disk.write_at((i % UNITS) * 4096, &[0xff; 16]).unwrap();
            }
        });
    });
    // The last write of each unit's other bytes was its thread's last round: a stale write-back of a
    // unit read before it would leave an earlier round there.
    for unit in 0..UNITS {
        let mut back = vec![0u8; 4096];
        disk.read_at(unit * 4096, &mut back).unwrap();
        assert!(back[16..].iter().all(|&b| b == ROUNDS as u8), "unit {unit} lost its last write");
    }
}

/// A volume on caller-supplied storage (memory here) works like one on files; a write whose
/// ciphertext would be all zeros (the mark of an unwritten unit) is refused and writes nothing, so no
/// written unit can be taken for an unwritten one; unwritten and discarded units read as zeros.
#[test]
fn memory_storage_unwritten_units_and_the_one_unwritable_plaintext() {
    use sectorcrypt::keys::KeyProvider;
    use sectorcrypt::storage::MemStorage;
    use sectorcrypt::{BackendChoice, DataUnits, Xts};
    use std::sync::Arc;

    let f = fixture();
    let memory = Arc::new(MemStorage::new("mem", (MIB + 64 * 4096) as usize));
    Volume::create_on(&[memory.as_ref()], Mode::Vm, 64 * 4096, &CreateOptions::default(), &f.provider)
        .unwrap();
    let open = OpenOptions { writable: true, ..OpenOptions::default() };
    let volume = Volume::open_on(vec![Box::new(memory.clone())], Mode::Vm, &f.provider, open).unwrap();
    let mut all = vec![1u8; 64 * 4096];
    volume.read_at(0, &mut all).unwrap();
    assert!(all.iter().all(|&b| b == 0), "a new volume reads as zeros");

    // The plaintext that unit 5 would encrypt to all zeros: D(0) under the disk's own key.
    let dek = f.provider.unwrap_dek(&volume.header().expect("a sectorcrypt disk").wrapped_dek).unwrap();
    let xts = Xts::new(dek.xts_key(), BackendChoice::Auto).unwrap();
    let mut unwritable = vec![0u8; 4096];
    xts.decrypt_units(&mut unwritable, DataUnits::new(4096).unwrap().starting_at(5)).unwrap();
    let before = memory.to_bytes();
    assert_eq!(volume.write_at(5 * 4096, &unwritable), Err(Error::UnwritableUnit(5)));
    assert!(memory.to_bytes() == before, "the refused write changed the store");

    // Any other data, zeros included, is written as non-zero ciphertext and reads back.
    volume.write_at(4096, &vec![0u8; 3 * 4096]).unwrap();
    let at_rest = memory.to_bytes();
    assert!(at_rest[MIB as usize + 4096..][..3 * 4096].chunks(4096).all(|u| u.iter().any(|&b| b != 0)));
    volume.write_at(100, b"kept").unwrap();
    assert_eq!(volume.discard(4096, 2 * 4096).unwrap(), 2 * 4096);
    volume.read_at(0, &mut all).unwrap();
    let mut expected = vec![0u8; 64 * 4096];
    expected[100..104].copy_from_slice(b"kept");
    assert!(all == expected);
}
