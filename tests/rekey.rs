//! Deep rekey: every unit re-encrypted to a new DEK, online, and resumable after a crash at any write
//! or flush, with unflushed writes torn at 512-byte granularity (`tests/support/crash_storage.rs`):
//! after each crash, a read-only open reads exactly the data, and a writable open resumes the rekey to
//! the end with the data intact.

#[path = "common/mod.rs"]
mod common;

#[path = "support/crash_storage.rs"]
mod crash_storage;

use crash_storage::CrashStorage;
use sectorcrypt::disk::{CreateOptions, Mode, OpenOptions, Volume};
use sectorcrypt::keys::NativeProvider;
use sectorcrypt::storage::{MemStorage, Storage};
use sectorcrypt::{DiskFault, Error};
use std::sync::atomic::{AtomicBool, Ordering};

const MIB: usize = 1 << 20;

struct Fixture {
    _dir: tempfile::TempDir,
    provider: NativeProvider,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let provider = NativeProvider::init(dir.path().join("kdk")).unwrap();
        Fixture { _dir: dir, provider }
    }

    /// A disk of `size` data bytes with `unit`-byte data units, every fifth unit left unwritten, every
    /// seventh written with zeros (written units whose plaintext is zero are no unwritten ones), the
    /// others a pattern; returns its image and the logical content.
    fn disk(&self, size: usize, unit: usize) -> (Vec<u8>, Vec<u8>) {
        let store = CrashStorage::new("disk", vec![0; MIB + size], 1);
        let options = CreateOptions { data_unit: unit, ..CreateOptions::default() };
        Volume::create_on(&[&store as &dyn Storage], Mode::Vm, size as u64, &options, &self.provider)
            .unwrap();
        let mut model = common::pattern(size, 99);
        let volume = self.open(&store, true);
        for (index, chunk) in model.chunks_mut(unit).enumerate() {
            if index % 7 == 2 {
                chunk.fill(0);
            }
            if index % 5 == 3 {
                chunk.fill(0);
            } else {
                volume.write_at((index * unit) as u64, chunk).unwrap();
            }
        }
        volume.flush().unwrap();
        drop(volume);
        (store.survivor(), model)
    }

    fn open(&self, store: &CrashStorage, writable: bool) -> Volume {
        self.try_open(Box::new(store.clone()), writable).unwrap()
    }

    fn try_open(&self, store: Box<dyn Storage>, writable: bool) -> sectorcrypt::Result<Volume> {
        let options = OpenOptions { writable, ..OpenOptions::default() };
        Volume::open_on(vec![store], Mode::Vm, &self.provider, options)
    }

    fn rekey(&self, volume: &Volume, chunk: u64) -> sectorcrypt::Result<()> {
        volume.deep_rekey_in_chunks(&self.provider, None, chunk, &mut |_| {}).map(drop)
    }
}

fn contents(volume: &Volume) -> Vec<u8> {
    let mut all = vec![0u8; volume.size() as usize];
    volume.read_at(0, &mut all).unwrap();
    all
}

/// After a crash: a read-only open reads the data as it was, and a writable open resumes the rekey
/// to its end (the new DEK, version 1, generation 2) with the data intact.
fn check_recovery(fixture: &Fixture, image: Vec<u8>, model: &[u8], chunk: u64, what: &str) {
    let read_only = fixture.try_open(Box::new(MemStorage::from_bytes("disk", image.clone())), false).unwrap();
    assert!(contents(&read_only) == model, "{what}: a read-only open reads other data");
    drop(read_only);
    let store = CrashStorage::new("disk", image, 7);
    let volume = fixture.open(&store, true);
    assert!(contents(&volume) == model, "{what}: the settled disk reads other data");
    fixture.rekey(&volume, chunk).unwrap_or_else(|e| panic!("{what}: resume failed: {e}"));
    assert!(contents(&volume) == model, "{what}: the rekeyed disk reads other data");
    drop(volume);
    let volume = fixture.open(&store, false);
    let header = volume.header().unwrap();
    assert!(header.reencryption.is_none(), "{what}");
    assert!(contents(&volume) == model, "{what}: reopened");
}

#[test]
fn a_deep_rekey_changes_the_key_and_keeps_the_data() {
    let fixture = Fixture::new();
    let (image, model) = fixture.disk(3 * MIB + 4096 * 3, 4096);
    let store = CrashStorage::new("disk", image, 3);
    let before = fixture.open(&store, false).header().unwrap().clone();
    let volume = fixture.open(&store, true);
    let mut steps = Vec::new();
    let done = volume
        .deep_rekey_in_chunks(&fixture.provider, Some("deep-1"), 1 << 20, &mut |p| steps.push(p))
        .unwrap();
    assert!(!done.resumed);
    assert_eq!(done.key_ref.key_id(), "deep-1");
    assert_eq!(steps.len(), 4);
    assert_eq!(steps.last().map(|p| (p.done, p.total)), Some((model.len() as u64, model.len() as u64)));
    assert!(contents(&volume) == model);
    drop(volume);
    let after = fixture.open(&store, false);
    let header = after.header().unwrap();
    assert_eq!(header.generation, before.generation + 1);
    assert_ne!(header.wrapped_dek.verifier(), before.wrapped_dek.verifier());
    assert!(header.reencryption.is_none());
    assert!(contents(&after) == model);
    // The data area really changed: every written unit's ciphertext differs from before.
    let old_image = fixture.disk(3 * MIB + 4096 * 3, 4096).0;
    let new_image = store.survivor();
    let unit = 4096;
    for (index, (old, new)) in old_image[MIB..].chunks(unit).zip(new_image[MIB..].chunks(unit)).enumerate() {
        if index % 5 != 3 {
            assert_ne!(old, new, "unit {index} was not re-encrypted");
            assert!(new.iter().any(|&b| b != 0), "written unit {index} reads as unwritten");
        }
    }
}

#[test]
fn a_crash_at_every_write_and_flush_of_a_small_rekey_loses_nothing() {
    let fixture = Fixture::new();
    for unit in [4096usize, 512] {
        let (image, model) = fixture.disk(64 << 10, unit);
        let chunk = 16 << 10;
        // A dry run counts the writes and flushes of the whole rekey.
        let dry = CrashStorage::new("disk", image.clone(), 1);
        let volume = fixture.open(&dry, true);
        let start = dry.ops();
        fixture.rekey(&volume, chunk).unwrap();
        let total = dry.ops() - start;
        assert!(total > 20, "{total} operations");
        drop(volume);
        for op in 0..total {
            for seed in [1u64, 2, 3] {
                let store = CrashStorage::new("disk", image.clone(), seed * 1000 + op);
                let volume = fixture.open(&store, true);
                store.crash_at(op);
                let outcome = fixture.rekey(&volume, chunk);
                // The last operation gives the resilience areas' space back; its failure is no error.
                assert!(outcome.is_err() || op + 1 == total, "unit {unit}, op {op}: no crash");
                drop(volume);
                let what = format!("unit {unit}, crash at op {op} of {total}, seed {seed}");
                check_recovery(&fixture, store.survivor(), &model, chunk, &what);
            }
        }
    }
}

#[test]
fn crashes_at_random_points_of_a_larger_rekey_lose_nothing() {
    let fixture = Fixture::new();
    let (image, model) = fixture.disk(4 * MIB, 4096);
    let chunk = 256 << 10;
    let mut seed = 0x5eed_u64;
    for round in 0..12 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let store = CrashStorage::new("disk", image.clone(), seed);
        let volume = fixture.open(&store, true);
        let op = (seed >> 33) % 200;
        store.crash_at(op);
        // A crash point past the rekey's last operation lets it finish: the recovery check holds too.
        let _ = fixture.rekey(&volume, chunk);
        drop(volume);
        check_recovery(
            &fixture,
            store.survivor(),
            &model,
            chunk,
            &format!("round {round}, crash at op {op}"),
        );
    }
}

#[test]
fn an_io_error_stops_the_rekey_clearly_and_a_rerun_resumes() {
    let fixture = Fixture::new();
    let (image, model) = fixture.disk(MIB, 4096);
    for op in [0u64, 3, 9, 14, 20] {
        let store = CrashStorage::new("disk", image.clone(), 5);
        let volume = fixture.open(&store, true);
        store.fail_at(op);
        let err = fixture.rekey(&volume, 128 << 10).unwrap_err();
        assert_eq!(err.os_error(), Some(5), "op {op}: {err}");
        // The same volume still reads everything; a rerun on it resumes and finishes.
        assert!(contents(&volume) == model, "op {op}: unreadable after the error");
        drop(volume);
        let volume = fixture.open(&store, true);
        assert!(contents(&volume) == model, "op {op}");
        fixture.rekey(&volume, 128 << 10).unwrap();
        assert!(contents(&volume) == model, "op {op}");
    }
}

#[test]
fn the_volume_serves_reads_and_writes_while_the_rekey_runs() {
    let fixture = Fixture::new();
    let size = 6 * MIB;
    let (image, mut model) = fixture.disk(size, 4096);
    let store = CrashStorage::new("disk", image, 11);
    let volume = fixture.open(&store, true);
    let running = AtomicBool::new(true);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut seed = 42u64;
            let mut rounds = 0;
            while running.load(Ordering::Relaxed) || rounds < 200 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let offset = (seed >> 20) as usize % (size - 70_000);
                let len = 1 + (seed >> 44) as usize % 65_536;
                let data = common::pattern(len, seed);
                volume.write_at(offset as u64, &data).unwrap();
                model[offset..offset + len].copy_from_slice(&data);
                let mut back = vec![0u8; len];
                volume.read_at(offset as u64, &mut back).unwrap();
                assert!(back == data, "a read during the rekey returned other data");
                rounds += 1;
            }
            rounds
        });
        fixture.rekey(&volume, 512 << 10).unwrap();
        running.store(false, Ordering::Relaxed);
        assert!(writer.join().unwrap() >= 200);
    });
    assert!(contents(&volume) == model);
    drop(volume);
    assert!(contents(&fixture.open(&store, false)) == model);
}

/// The same on a file, where the rekey's steps move through io_uring on the O_DIRECT descriptor (on a
/// file system that has O_DIRECT; through pread/pwrite elsewhere), with two threads writing and
/// reading beside it and steps small enough that reading one and writing the one before overlap often.
#[test]
fn a_file_keeps_serving_two_threads_while_its_steps_move_through_the_io_engine() {
    let fixture = Fixture::new();
    let size = 16 * MIB;
    let paths = [fixture._dir.path().join("online.disk")];
    Volume::create(&paths, Mode::Vm, size as u64, &CreateOptions::default(), &fixture.provider).unwrap();
    let writable = OpenOptions { writable: true, ..OpenOptions::default() };
    let volume = Volume::open(&paths, Mode::Vm, &fixture.provider, writable.clone()).unwrap();
    let start = common::pattern(size, 5);
    // Every third MiB is left unwritten (holes the rekey must keep).
    for (index, chunk) in start.chunks(MIB).enumerate().filter(|(i, _)| i % 3 != 1) {
        volume.write_at((index * MIB) as u64, chunk).unwrap();
    }
    let mut model = start.clone();
    for chunk in model.chunks_mut(MIB).skip(1).step_by(3) {
        chunk.fill(0);
    }
    let running = AtomicBool::new(true);
    // Each thread owns one half of the disk (its model), so the final image is known.
    let halves: Vec<(usize, Vec<u8>)> = model.chunks(size / 2).map(|h| h.to_vec()).enumerate().collect();
    let finished = std::thread::scope(|scope| {
        let threads: Vec<_> = halves
            .into_iter()
            .map(|(half, mut own)| {
                let (volume, running) = (&volume, &running);
                scope.spawn(move || {
                    let base = half * size / 2;
                    let mut seed = 7 + half as u64;
                    let mut rounds = 0;
                    while running.load(Ordering::Relaxed) || rounds < 100 {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        let offset = (seed >> 20) as usize % (own.len() - 70_000);
                        let len = 1 + (seed >> 44) as usize % 65_536;
                        let data = common::pattern(len, seed);
                        volume.write_at((base + offset) as u64, &data).unwrap();
                        own[offset..offset + len].copy_from_slice(&data);
                        let mut back = vec![0u8; len];
                        volume.read_at((base + offset) as u64, &mut back).unwrap();
                        assert!(back == data, "a read during the rekey returned other data");
                        rounds += 1;
                    }
                    own
                })
            })
            .collect();
        fixture.rekey(&volume, 256 << 10).unwrap();
        running.store(false, Ordering::Relaxed);
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect::<Vec<u8>>()
    });
    assert!(contents(&volume) == finished);
    drop(volume);
    let volume = Volume::open(&paths, Mode::Vm, &fixture.provider, OpenOptions::default()).unwrap();
    assert!(volume.header().unwrap().reencryption.is_none());
    assert!(contents(&volume) == finished);
}

/// `bench rekey`'s baseline moves the same bytes without changing them: the data reads the same, the
/// holes stay holes, and it refuses where a rekey would.
#[test]
fn the_copy_in_place_baseline_changes_nothing() {
    let fixture = Fixture::new();
    let (image, model) = fixture.disk(3 * MIB, 4096);
    let store = CrashStorage::new("disk", image.clone(), 1);
    let volume = fixture.open(&store, true);
    volume.copy_in_place().unwrap();
    assert!(contents(&volume) == model);
    drop(volume);
    assert!(store.survivor() == image, "the image changed");
    let err = fixture.open(&store, false).copy_in_place().unwrap_err();
    assert!(matches!(err, Error::Disk { fault: DiskFault::ReadOnly, .. }), "{err}");
    // In the middle of a deep rekey (stopped by an I/O error): refused, nothing written.
    let volume = fixture.open(&store, true);
    store.fail_at(12);
    fixture.rekey(&volume, 1 << 20).unwrap_err();
    drop(volume);
    let stopped = store.survivor();
    let store = CrashStorage::new("disk", stopped.clone(), 1);
    let volume = fixture.open(&store, true);
    let settled = store.survivor();
    let err = volume.copy_in_place().unwrap_err();
    assert!(matches!(err, Error::Disk { fault: DiskFault::Busy, .. }), "{err}");
    assert!(store.survivor() == settled);
}

/// A stop request (from another thread; here from the progress report, which runs on the rekey's
/// thread) ends the rekey after the step being written: the disk is left mid-rekey with nothing to
/// settle, fully usable, and the next rekey resumes it. A stop that comes after the last step does not
/// stop the next rekey.
#[test]
fn a_rekey_asked_to_stop_leaves_a_usable_disk_and_a_rerun_finishes_it() {
    let fixture = Fixture::new();
    let (image, mut model) = fixture.disk(4 * MIB, 4096);
    let store = CrashStorage::new("disk", image, 3);
    let volume = fixture.open(&store, true);
    let mut steps = 0;
    let stopped = volume
        .deep_rekey_in_chunks(&fixture.provider, None, 512 << 10, &mut |_| {
            steps += 1;
            if steps == 2 {
                volume.stop_deep_rekey();
            }
        })
        .unwrap();
    assert!(!stopped.finished && !stopped.resumed);
    assert_eq!(steps, 2);
    // Writes on both sides of the boundary, without waiting for anything.
    for at in [0usize, MIB - 100, 3 * MIB] {
        let data = common::pattern(5000, at as u64);
        volume.write_at(at as u64, &data).unwrap();
        model[at..at + 5000].copy_from_slice(&data);
    }
    assert!(contents(&volume) == model);
    drop(volume);
    let read_only = fixture.open(&store, false);
    let record = read_only.header().unwrap().reencryption.clone().expect("still mid-rekey");
    assert_eq!((record.position, record.hot), (2 * 128, 0), "two steps of 128 units, nothing hot");
    assert!(contents(&read_only) == model);
    drop(read_only);
    // Resuming with another KEK than the rekey started with is refused, before anything is written.
    let volume = fixture.open(&store, true);
    let before = store.ops();
    let err =
        volume.deep_rekey_in_chunks(&fixture.provider, Some("other"), 512 << 10, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Disk { fault: DiskFault::Mismatch, .. }), "{err}");
    assert!(err.to_string().contains("resume it with that key id"), "{err}");
    assert_eq!(store.ops(), before);
    // Asked to stop before it starts: no step is written.
    volume.stop_deep_rekey();
    let again = fixture_rekey_result(&fixture, &volume);
    assert!(!again.finished && again.resumed);
    assert_eq!(store.ops(), before, "a rekey stopped before its first step wrote");
    // A stop asked for at the last step is not honoured, and does not stop the next rekey.
    let done = volume
        .deep_rekey_in_chunks(&fixture.provider, None, 512 << 10, &mut |p| {
            if p.done == p.total {
                volume.stop_deep_rekey();
            }
        })
        .unwrap();
    assert!(done.finished && done.resumed);
    assert!(contents(&volume) == model);
    let next = fixture_rekey_result(&fixture, &volume);
    assert!(next.finished && !next.resumed);
    drop(volume);
    let volume = fixture.open(&store, false);
    assert!(volume.header().unwrap().reencryption.is_none());
    assert!(contents(&volume) == model);
}

fn fixture_rekey_result(fixture: &Fixture, volume: &Volume) -> sectorcrypt::disk::DeepRekey {
    volume.deep_rekey_in_chunks(&fixture.provider, None, 512 << 10, &mut |_| {}).unwrap()
}

#[test]
fn a_read_only_volume_is_refused_and_nothing_is_written() {
    let fixture = Fixture::new();
    let (image, _) = fixture.disk(MIB, 4096);
    let store = CrashStorage::new("disk", image, 1);
    let err = fixture.rekey(&fixture.open(&store, false), 1 << 20).unwrap_err();
    assert!(matches!(err, Error::Disk { fault: DiskFault::ReadOnly, .. }), "{err}");
    assert_eq!(store.ops(), 0);
}

/// A group of `count` members of `member_size` bytes (16 KiB stripes, 4 KiB units), every fifth unit
/// unwritten: its member images and logical content.
fn group(fixture: &Fixture, count: usize, member_size: usize) -> (Vec<Vec<u8>>, Vec<u8>) {
    let stores = CrashStorage::group(vec![vec![0; MIB + member_size]; count], 1);
    let options = CreateOptions { stripe: 16 << 10, ..CreateOptions::default() };
    let refs: Vec<&dyn Storage> = stores.iter().map(|s| s as &dyn Storage).collect();
    Volume::create_on(&refs, Mode::Datastore, member_size as u64, &options, &fixture.provider).unwrap();
    let volume = open_group(fixture, &stores, true).unwrap();
    let mut model = common::pattern(count * member_size, 7);
    for (index, chunk) in model.chunks_mut(4096).enumerate() {
        if index % 7 == 2 {
            chunk.fill(0);
        }
        if index % 5 == 3 {
            chunk.fill(0);
        } else {
            volume.write_at((index * 4096) as u64, chunk).unwrap();
        }
    }
    volume.flush().unwrap();
    drop(volume);
    (stores.iter().map(CrashStorage::survivor).collect(), model)
}

fn open_group(fixture: &Fixture, stores: &[CrashStorage], writable: bool) -> sectorcrypt::Result<Volume> {
    let boxes: Vec<Box<dyn Storage>> =
        stores.iter().map(|s| Box::new(s.clone()) as Box<dyn Storage>).collect();
    Volume::open_on(
        boxes,
        Mode::Datastore,
        &fixture.provider,
        OpenOptions { writable, ..OpenOptions::default() },
    )
}

#[test]
fn a_group_crashed_at_every_step_of_its_rekey_reaches_one_state_and_loses_nothing() {
    let fixture = Fixture::new();
    let (images, model) = group(&fixture, 3, 64 << 10);
    let chunk = 16 << 10;
    let dry = CrashStorage::group(images.clone(), 1);
    let volume = open_group(&fixture, &dry, true).unwrap();
    let start = dry[0].ops();
    fixture_rekey(&fixture, &volume, chunk).unwrap();
    let total = dry[0].ops() - start;
    drop(volume);
    for op in 0..total {
        for seed in [1u64, 2] {
            let stores = CrashStorage::group(images.clone(), seed * 7919 + op);
            let volume = open_group(&fixture, &stores, true).unwrap();
            stores[0].crash_at(op);
            let outcome = fixture_rekey(&fixture, &volume, chunk);
            // The last three operations give the members' resilience areas back: no error if they fail.
            assert!(outcome.is_err() || op + 3 >= total, "op {op}: no crash");
            drop(volume);
            let what = format!("group, crash at op {op} of {total}, seed {seed}");
            let survivors: Vec<Vec<u8>> = stores.iter().map(CrashStorage::survivor).collect();
            // Read-only: every member as it is, the data exactly.
            let mems: Vec<Box<dyn Storage>> = survivors
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    Box::new(MemStorage::from_bytes(format!("m{i}"), b.clone())) as Box<dyn Storage>
                })
                .collect();
            let options = OpenOptions { writable: false, ..OpenOptions::default() };
            let read_only = Volume::open_on(mems, Mode::Datastore, &fixture.provider, options)
                .unwrap_or_else(|e| panic!("{what}: read-only open: {e}"));
            assert!(contents(&read_only) == model, "{what}: read-only");
            drop(read_only);
            // Writable: resume to the end; every member then has the same new key and generation.
            let stores = CrashStorage::group(survivors, 3);
            let volume = open_group(&fixture, &stores, true).unwrap_or_else(|e| panic!("{what}: open: {e}"));
            fixture_rekey(&fixture, &volume, chunk).unwrap_or_else(|e| panic!("{what}: resume: {e}"));
            assert!(contents(&volume) == model, "{what}: resumed");
            drop(volume);
            let volume = open_group(&fixture, &stores, false).unwrap();
            assert!(volume.header().unwrap().reencryption.is_none(), "{what}");
            assert!(contents(&volume) == model, "{what}: reopened");
        }
    }
}

fn fixture_rekey(fixture: &Fixture, volume: &Volume, chunk: u64) -> sectorcrypt::Result<()> {
    fixture.rekey(volume, chunk)
}

#[test]
fn writes_acknowledged_during_a_rekey_survive_a_crash_at_any_point() {
    let fixture = Fixture::new();
    let size = MIB;
    let (image, base) = fixture.disk(size, 4096);
    for op in 0..120u64 {
        let store = CrashStorage::new("disk", image.clone(), op + 17);
        let volume = fixture.open(&store, true);
        store.crash_at(op);
        let mut model = base.clone();
        // The write in flight when the power went may or may not have landed: (offset, old, new).
        let mut in_flight: Option<(usize, Vec<u8>, Vec<u8>)> = None;
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| {
                let mut seed = op * 31 + 5;
                for round in 0..400u64 {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let offset = (seed >> 24) as usize % (size - 9000);
                    let data = common::pattern(1 + (seed >> 50) as usize % 8192, seed ^ round);
                    let old = model[offset..offset + data.len()].to_vec();
                    // Acknowledged only once written and flushed.
                    let written = volume.write_at(offset as u64, &data).and_then(|()| volume.flush());
                    if written.is_err() {
                        return Some((offset, old, data));
                    }
                    model[offset..offset + data.len()].copy_from_slice(&data);
                }
                None
            });
            let _ = fixture.rekey(&volume, 64 << 10);
            in_flight = writer.join().unwrap();
        });
        drop(volume);
        let survivor = store.survivor();
        let reopened = fixture.try_open(Box::new(MemStorage::from_bytes("disk", survivor.clone())), true);
        let reopened = reopened.unwrap_or_else(|e| panic!("crash at op {op}: {e}"));
        let mut found = contents(&reopened);
        if let Some((offset, old, new)) = &in_flight {
            let landed = &found[*offset..offset + new.len()];
            // Torn at 512-byte sectors: each byte is the old or the new one.
            assert!(
                landed.iter().zip(old.iter().zip(new)).all(|(b, (o, n))| b == o || b == n),
                "crash at op {op}: the write in flight left other bytes"
            );
            found[*offset..offset + new.len()].copy_from_slice(old);
            let mut expect = model.clone();
            expect[*offset..offset + new.len()].copy_from_slice(old);
            assert!(found == expect, "crash at op {op}: an acknowledged write was lost");
        } else {
            assert!(found == model, "crash at op {op}: an acknowledged write was lost");
        }
        fixture.rekey(&reopened, 64 << 10).unwrap();
    }
}

#[test]
fn a_torn_first_write_reads_zeros_where_it_did_not_land() {
    // No rekey at all: thin provisioning's own crash semantics. A unit never written is all zeros; a
    // crash that tears its first write leaves some sectors zero, which must read as zeros (what was
    // there), not as the decryption of zeros.
    let fixture = Fixture::new();
    let (image, model) = fixture.disk(64 << 10, 4096);
    let unwritten = 3 * 4096; // unit 3 is one the fixture leaves unwritten
    assert!(model[unwritten..unwritten + 4096].iter().all(|&b| b == 0));
    for seed in 1..20u64 {
        let store = CrashStorage::new("disk", image.clone(), seed);
        let volume = fixture.open(&store, true);
        let data = common::pattern(4096, seed);
        volume.write_at(unwritten as u64, &data).unwrap();
        store.crash_at(0);
        assert!(volume.flush().is_err());
        drop(volume);
        let reopened =
            fixture.try_open(Box::new(MemStorage::from_bytes("disk", store.survivor())), false).unwrap();
        let mut back = vec![0u8; 4096];
        reopened.read_at(unwritten as u64, &mut back).unwrap();
        for (sector, (got, new)) in back.chunks(512).zip(data.chunks(512)).enumerate() {
            assert!(got == new || got.iter().all(|&b| b == 0), "seed {seed}: sector {sector} is neither");
        }
    }
}
