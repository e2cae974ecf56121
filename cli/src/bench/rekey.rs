//! `bench rekey`: how fast a deep rekey runs against what the storage can do, and what it costs the
//! I/O that goes on meanwhile.
//!
//! In a temporary directory (on the storage to measure) it makes a disk, fills it, and then, with the
//! file's pages dropped from the page cache before each run:
//! 1. a plain copy of the same bytes with the same I/O: the data area read and written back in place
//!    by [`Volume::copy_in_place`], the deep rekey's own steps, pipeline and engine (O_DIRECT where the
//!    file system has it) without the cipher or the resilience record: the storage's rate for the job;
//! 2. a deep rekey of the disk;
//! 3. 4 KiB random reads and writes through the volume from one thread, for a while without a rekey and
//!    then while a second deep rekey runs: the foreground rate in both.

use anyhow::{Context, Result};
use sectorcrypt::disk::{CreateOptions, Mode, OpenOptions, Volume};
use sectorcrypt::keys::NativeProvider;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A deep rekey's largest step: the disk is a whole number of them, filled one at a time.
const CHUNK: usize = 28 << 20;

#[derive(clap::Args, Debug)]
pub(crate) struct RekeyArgs {
    /// Directory on the storage to measure (a temporary disk is made in it and removed).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Size of the disk.
    #[arg(long, value_parser = crate::size::parse_size, default_value = "1G")]
    size: u64,
    /// Seconds of foreground I/O without a rekey (the same again, at most, while one runs).
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    foreground_seconds: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Drops the file's clean pages from the page cache, so the next run reads from the storage.
fn drop_cache(path: &std::path::Path) -> Result<()> {
    let file = std::fs::File::open(path)?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

fn gbps(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e9
}

/// Random 4 KiB reads and writes (one in four a write) until `stop`, or `limit` passes; returns IOPS.
fn foreground(volume: &Volume, stop: &AtomicBool, limit: Duration) -> Result<f64> {
    let start = Instant::now();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut buf = vec![0u8; 4096];
    let mut ops = 0u64;
    let units = volume.size() / 4096;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < limit {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = (seed % units) * 4096;
        if seed & 3 == 0 {
            buf[..8].copy_from_slice(&seed.to_le_bytes());
            volume.write_at(at, &buf)?;
        } else {
            volume.read_at(at, &mut buf)?;
        }
        ops += 1;
    }
    Ok(ops as f64 / start.elapsed().as_secs_f64())
}

/// The data area read and written back in place, as a deep rekey moves it; returns GB/s of reads +
/// writes.
fn plain_copy(paths: &[PathBuf], provider: &NativeProvider, options: &OpenOptions, size: u64) -> Result<f64> {
    drop_cache(&paths[0])?;
    let volume = Volume::open(paths, Mode::Vm, provider, options.clone())?;
    let start = Instant::now();
    volume.copy_in_place()?;
    Ok(gbps(2 * size, start.elapsed()))
}

pub(crate) fn run(args: &RekeyArgs) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix(".sectorcrypt-bench-")
        .tempdir_in(&args.dir)
        .with_context(|| format!("cannot make a temporary directory in {}", args.dir.display()))?;
    let provider = NativeProvider::init(dir.path().join("kdk"))?;
    let path = dir.path().join("bench.disk");
    let size = args.size / CHUNK as u64 * CHUNK as u64;
    anyhow::ensure!(size > 0, "--size must be at least 28 MiB");
    let paths = [path.clone()];
    Volume::create(&paths, Mode::Vm, size, &CreateOptions::default(), &provider)?;
    let writable = OpenOptions { writable: true, ..OpenOptions::default() };
    {
        let volume = Volume::open(&paths, Mode::Vm, &provider, writable.clone())?;
        let fill: Vec<u8> = (0..CHUNK).map(|i| (i as u8).wrapping_mul(37) ^ (i >> 12) as u8).collect();
        for at in (0..size).step_by(CHUNK) {
            volume.write_at(at, &fill)?;
        }
        volume.flush()?;
    }

    // Copy and rekey take turns, twice: the storage (and the host under a virtual disk) caches what
    // it saw last, so each round compares the two on equal terms, and the second round's figures are
    // reported.
    let (mut copy, mut rekey) = (0.0, 0.0);
    let mut rounds = Vec::new();
    for _ in 0..2 {
        copy = plain_copy(&paths, &provider, &writable, size)?;
        drop_cache(&path)?;
        let volume = Volume::open(&paths, Mode::Vm, &provider, writable.clone())?;
        let start = Instant::now();
        volume.deep_rekey(&provider, None, &mut |_| {})?;
        rekey = gbps(2 * size, start.elapsed());
        rounds.push(serde_json::json!({ "copy_gbps": copy, "rekey_gbps": rekey }));
    }
    let volume = Volume::open(&paths, Mode::Vm, &provider, writable.clone())?;
    let limit = Duration::from_secs_f64(args.foreground_seconds);
    let idle = foreground(&volume, &AtomicBool::new(false), limit)?;
    drop_cache(&path)?;
    let stop = AtomicBool::new(false);
    let (busy, rekey_again) = std::thread::scope(|scope| -> Result<(f64, f64)> {
        let io = scope.spawn(|| foreground(&volume, &stop, Duration::from_secs(3600)));
        let start = Instant::now();
        let outcome = volume.deep_rekey(&provider, None, &mut |_| {});
        let took = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let busy = io.join().expect("the foreground thread does not panic")?;
        outcome?;
        Ok((busy, gbps(2 * size, took)))
    })?;

    let row = serde_json::json!({
        "size": size,
        "dir": args.dir.display().to_string(),
        "rounds": rounds,
        "copy_gbps": copy,
        "rekey_gbps": rekey,
        "rekey_pct_of_copy": 100.0 * rekey / copy,
        "rekey_with_foreground_gbps": rekey_again,
        "foreground_iops_idle": idle,
        "foreground_iops_during_rekey": busy,
        "foreground_slowdown_pct": 100.0 * (1.0 - busy / idle),
    });
    if args.json {
        outln!("{row}");
    } else {
        outln!("deep rekey of {} in {}", crate::size::human(size), args.dir.display());
        outln!("  plain copy (read + write, the rekey's steps and I/O) {copy:.3} GB/s of reads + writes");
        outln!(
            "  deep rekey                                           {rekey:.3} GB/s ({:.0}% of the copy)",
            100.0 * rekey / copy
        );
        outln!("  deep rekey beside foreground I/O                     {rekey_again:.3} GB/s");
        outln!(
            "  foreground 4 KiB random I/O (1/4 writes)             {idle:.0} IOPS alone, {busy:.0} during the rekey ({:.0}% slower)",
            100.0 * (1.0 - busy / idle)
        );
    }
    Ok(())
}
