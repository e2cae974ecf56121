//! `sectorcrypt bench workload`: the VM-vs-datastore encryption matrix of the HCIBench study, on this
//! machine, in one command.
//!
//! Three configurations on the same data path (staging buffers, io_uring or pread/pwrite, O_DIRECT,
//! request splitting, unit locks): `baseline` (an unencrypted pass over the VM disk's file), `vm` (that
//! encrypted disk) and `datastore` (a disk group of `--members` files with the same total size). For every
//! block size × read share × thread count, each configuration runs for `--seconds` after a short warm-up,
//! 100% random, block-aligned offsets from a seeded generator. Every thread submits batches of
//! `--queue-depth` requests and waits for each batch; a request's latency is its batch's submit-to-done
//! time (exact at queue depth 1, the default; an upper bound above it). CPU is the process's user +
//! system time (CLOCK_PROCESS_CPUTIME_ID, every thread including io_uring's workers) over the cell's wall
//! time. The three configurations of one cell run back to back, so drift on a shared machine hits them
//! alike; compare within a run.

use super::cell::{Cell, csv, size_label};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sectorcrypt::disk::{CreateOptions, IoRequest, Mode, OpenOptions, Volume};
use sectorcrypt::keys::NativeProvider;
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Config {
    /// The same data path without encryption.
    Baseline,
    /// One encrypted disk (a DEK per disk).
    Vm,
    /// A disk group (one DEK per group).
    Datastore,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Baseline => "baseline",
            Config::Vm => "vm",
            Config::Datastore => "datastore",
        }
    }
}

pub(super) struct Plan {
    pub(super) configs: Vec<Config>,
    pub(super) block_sizes: Vec<u64>,
    pub(super) read_pct: Vec<u32>,
    pub(super) threads: Vec<usize>,
    pub(super) size: u64,
    pub(super) seconds: f64,
}

/// What one run measures and writes: the validated arguments of `bench workload`.
pub(super) struct Workload {
    pub(super) plan: Plan,
    pub(super) queue_depth: usize,
    pub(super) dir: Option<PathBuf>,
    pub(super) members: usize,
    pub(super) data_unit: usize,
    pub(super) seed: u64,
    pub(super) options: OpenOptions,
    /// JSON on stdout (the table then goes to stderr).
    pub(super) json: bool,
    pub(super) json_file: Option<PathBuf>,
    pub(super) csv: Option<PathBuf>,
    pub(super) chart: Option<PathBuf>,
    pub(super) force: bool,
}

fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Raw results of one cell.
struct Measured {
    wall: Duration,
    cpu: Duration,
    read_lat: Vec<f64>,
    write_lat: Vec<f64>,
}

/// Runs random I/O on `volume` for `seconds` with `threads` threads.
fn measure(
    volume: &Volume,
    bs: u64,
    read_pct: u32,
    threads: usize,
    depth: usize,
    seconds: f64,
    seed: u64,
) -> Result<Measured> {
    let blocks = volume.size() / bs;
    let deadline_after = Duration::from_secs_f64(seconds);
    let cpu_start = process_cpu();
    let start = Instant::now();
    let per_thread: Vec<Result<(Vec<f64>, Vec<f64>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || -> Result<(Vec<f64>, Vec<f64>)> {
                    let mut rng =
                        fastrand::Rng::with_seed(seed.wrapping_add(thread as u64 * 0x9e37_79b9_7f4a_7c15));
                    let mut bufs: Vec<Vec<u8>> =
                        (0..depth).map(|_| (0..bs).map(|_| rng.u8(..)).collect()).collect();
                    let (mut reads, mut writes) = (Vec::new(), Vec::new());
                    let mut kinds = vec![false; depth];
                    while start.elapsed() < deadline_after {
                        let mut requests: Vec<IoRequest<'_>> = Vec::with_capacity(depth);
                        for (buf, is_read) in bufs.iter_mut().zip(kinds.iter_mut()) {
                            let offset = rng.u64(..blocks) * bs;
                            *is_read = rng.u32(..100) < read_pct;
                            requests.push(if *is_read {
                                IoRequest::Read { offset, buf }
                            } else {
                                IoRequest::Write { offset, data: buf }
                            });
                        }
                        let issued = Instant::now();
                        volume.submit(&mut requests)?;
                        let micros = issued.elapsed().as_secs_f64() * 1e6;
                        for &is_read in &kinds {
                            if is_read { reads.push(micros) } else { writes.push(micros) }
                        }
                    }
                    Ok((reads, writes))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("benchmark thread panicked")).collect()
    });
    let wall = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_start);
    let (mut read_lat, mut write_lat) = (Vec::new(), Vec::new());
    for result in per_thread {
        let (r, w) = result?;
        read_lat.extend(r);
        write_lat.extend(w);
    }
    Ok(Measured { wall, cpu, read_lat, write_lat })
}

/// Average, p95 and p99 of a latency list.
fn summary(lat: &mut [f64]) -> (Option<f64>, Option<f64>, Option<f64>) {
    if lat.is_empty() {
        return (None, None, None);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1];
    (Some(lat.iter().sum::<f64>() / lat.len() as f64), Some(pct(0.95)), Some(pct(0.99)))
}

struct Setup {
    _dir: tempfile::TempDir,
    vm: Vec<PathBuf>,
    group: Vec<PathBuf>,
    provider: NativeProvider,
}

fn setup(w: &Workload) -> Result<Setup> {
    let plan = &w.plan;
    let base = w.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("sectorcrypt-workload-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot create a directory in {}", base.display()))?;
    let provider = NativeProvider::init(dir.path().join("kdk"))?;
    let vm = vec![dir.path().join("vm.disk")];
    let group: Vec<PathBuf> = (0..w.members).map(|i| dir.path().join(format!("group-{i}.disk"))).collect();
    let create = CreateOptions { data_unit: w.data_unit, ..CreateOptions::default() };
    let needs = |c: Config| plan.configs.contains(&c);
    if needs(Config::Vm) || needs(Config::Baseline) {
        Volume::create(&vm, Mode::Vm, plan.size, &create, &provider)?;
    }
    if needs(Config::Datastore) {
        Volume::create(&group, Mode::Datastore, plan.size / w.members as u64, &create, &provider)?;
    }
    Ok(Setup { _dir: dir, vm, group, provider })
}

impl Setup {
    fn open(&self, config: Config, options: OpenOptions) -> Result<Volume> {
        Ok(match config {
            Config::Baseline => Volume::open_unencrypted_baseline(&self.vm, Mode::Vm, options)?,
            Config::Vm => Volume::open(&self.vm, Mode::Vm, &self.provider, options)?,
            Config::Datastore => Volume::open(&self.group, Mode::Datastore, &self.provider, options)?,
        })
    }
}

/// Writes the whole volume once with random bytes, so reads never hit holes in a sparse file.
fn prefill(volume: &Volume, seed: u64) -> Result<()> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let chunk: Vec<u8> = (0..16 << 20).map(|_| rng.u8(..)).collect();
    let mut offset = 0u64;
    while offset < volume.size() {
        let n = (volume.size() - offset).min(chunk.len() as u64) as usize;
        volume.write_at(offset, &chunk[..n])?;
        offset += n as u64;
    }
    volume.flush()?;
    Ok(())
}

fn machine_line(dir: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kib| kib >> 20);
    format!(
        "{model}, {cores} cores, {mem_gib} GiB, Linux {}, files on {} ({})",
        kernel.trim(),
        dir.display(),
        fs_type(dir)
    )
}

/// The file system type of the mount that holds `dir`, from /proc/mounts.
fn fs_type(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(point).then(|| (point.len(), kind.to_string()))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
}

pub(super) fn run(w: &Workload) -> Result<()> {
    let (plan, options) = (&w.plan, &w.options);
    let setup = setup(w)?;
    let dir = setup.vm[0].parent().map(Path::to_path_buf).unwrap_or_default();
    // The baseline and the VM disk share one file, whose lock admits one writer: each configuration is
    // opened for its cells only.
    let probe = setup.open(plan.configs[0], options.clone())?;
    let io_engine = probe.io_engine_name()?;
    let direct = probe.is_direct();
    let backend = probe.backend();
    drop(probe);
    let say = |line: std::fmt::Arguments<'_>| report(w.json, line);
    say(format_args!("machine: {}", machine_line(&dir)));
    say(format_args!(
        "run: seed {}, {} s per cell, disk {} MiB ({} members for datastore), data unit {}, queue depth {}, {io_engine}, O_DIRECT {}, cipher backend {}",
        w.seed,
        plan.seconds,
        plan.size >> 20,
        w.members,
        w.data_unit,
        w.queue_depth,
        if direct { "on" } else { "off" },
        backend.name()
    ));
    for &config in &plan.configs {
        if config != Config::Baseline {
            prefill(&setup.open(config, options.clone())?, w.seed)?;
        }
    }

    let total = plan.block_sizes.len() * plan.read_pct.len() * plan.threads.len() * plan.configs.len();
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{msg:40} [{bar:30}] {pos}/{len} cells, eta {eta}").expect("template"),
    );
    say(format_args!("{}", table_header()));
    let mut cells = Vec::new();
    for &bs in &plan.block_sizes {
        for &read_pct in &plan.read_pct {
            for &threads in &plan.threads {
                let mut baseline: Option<Cell> = None;
                for config in &plan.configs {
                    let volume = &setup.open(*config, options.clone())?;
                    bar.set_message(format!(
                        "{} {} {read_pct}/{} x{threads}",
                        config.name(),
                        size_label(bs),
                        100 - read_pct
                    ));
                    let warm = (plan.seconds * 0.1).min(0.3);
                    measure(volume, bs, read_pct, threads, w.queue_depth, warm, w.seed ^ 0xdead)?;
                    let mut m = measure(volume, bs, read_pct, threads, w.queue_depth, plan.seconds, w.seed)?;
                    let mut cell = to_cell(*config, bs, read_pct, threads, w, &mut m, io_engine, direct);
                    if *config == Config::Baseline {
                        baseline = Some(cell.clone());
                    } else if let Some(base) = &baseline {
                        cell.iops_change_pct = Some(change(cell.iops, base.iops));
                        cell.cpu_change_pct = Some(change(cell.cpu_us_per_io, base.cpu_us_per_io));
                    }
                    bar.suspend(|| say(format_args!("{}", table_row(&cell))));
                    cells.push(cell);
                    bar.inc(1);
                }
            }
        }
    }
    bar.finish_and_clear();
    print_verdict(&cells, w.json);
    let json = serde_json::to_string_pretty(&cells)? + "\n";
    if w.json {
        outln!("{}", json.trim_end());
    }
    if let Some(path) = &w.json_file {
        write_file(path, json.as_bytes(), w.force)?;
    }
    if let Some(path) = &w.csv {
        write_file(path, csv(&cells).as_bytes(), w.force)?;
    }
    if let Some(path) = &w.chart {
        write_file(path, &super::chart::render(path, &cells, &machine_line(&dir))?, w.force)?;
        say(format_args!("chart: {}", path.display()));
    }
    Ok(())
}

fn change(value: f64, base: f64) -> f64 {
    if base > 0.0 { (value - base) / base * 100.0 } else { 0.0 }
}

#[allow(clippy::too_many_arguments)]
fn to_cell(
    config: Config,
    bs: u64,
    read_pct: u32,
    threads: usize,
    w: &Workload,
    m: &mut Measured,
    io_engine: &'static str,
    direct: bool,
) -> Cell {
    let ios = (m.read_lat.len() + m.write_lat.len()) as u64;
    let wall = m.wall.as_secs_f64();
    let (r_avg, r95, r99) = summary(&mut m.read_lat);
    let (w_avg, w95, w99) = summary(&mut m.write_lat);
    let within = |avg: Option<f64>, p95: Option<f64>| match (avg, p95) {
        (Some(avg), Some(p95)) => p95 <= 3.0 * avg,
        _ => true,
    };
    Cell {
        config: config.name().into(),
        block_size: bs,
        read_pct,
        threads,
        queue_depth: w.queue_depth,
        seconds: wall,
        ios,
        iops: ios as f64 / wall,
        mbps: ios as f64 * bs as f64 / wall / 1e6,
        read_lat_avg_us: r_avg,
        read_lat_p95_us: r95,
        read_lat_p99_us: r99,
        write_lat_avg_us: w_avg,
        write_lat_p95_us: w95,
        write_lat_p99_us: w99,
        p95_within_3x_avg: within(r_avg, r95) && within(w_avg, w95),
        cpu_pct: m.cpu.as_secs_f64() / wall * 100.0,
        cpu_us_per_io: if ios > 0 { m.cpu.as_secs_f64() / ios as f64 * 1e6 } else { 0.0 },
        cpu_change_pct: None,
        iops_change_pct: None,
        seed: w.seed,
        io_engine: io_engine.into(),
        direct,
    }
}

fn table_header() -> String {
    format!(
        "{:<9} {:>5} {:>6} {:>3} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>5} {:>6} {:>8} {:>7} {:>7}",
        "config",
        "block",
        "r/w",
        "thr",
        "IOPS",
        "MB/s",
        "rd avg",
        "rd p95",
        "wr avg",
        "wr p95",
        "p95ok",
        "CPU%",
        "CPU/IO",
        "dIOPS%",
        "dCPU%"
    )
}

fn table_row(c: &Cell) -> String {
    let us = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}us"));
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:+.1}"));
    format!(
        "{:<9} {:>5} {:>6} {:>3} {:>9.0} {:>8.1} {:>8} {:>8} {:>8} {:>8} {:>5} {:>6.1} {:>6.1}us {:>7} {:>7}",
        c.config,
        size_label(c.block_size),
        format!("{}/{}", c.read_pct, 100 - c.read_pct),
        c.threads,
        c.iops,
        c.mbps,
        us(c.read_lat_avg_us),
        us(c.read_lat_p95_us),
        us(c.write_lat_avg_us),
        us(c.write_lat_p95_us),
        if c.p95_within_3x_avg { "yes" } else { "NO" },
        c.cpu_pct,
        c.cpu_us_per_io,
        pct(c.iops_change_pct),
        pct(c.cpu_change_pct),
    )
}

/// The targets: encrypted cells keep >= 95% of baseline IOPS and add <= 5% CPU per I/O (VMware's
/// envelope for the same question is up to 20% CPU).
fn print_verdict(cells: &[Cell], to_stderr: bool) {
    let encrypted: Vec<&Cell> = cells.iter().filter(|c| c.iops_change_pct.is_some()).collect();
    if encrypted.is_empty() {
        return;
    }
    let iops_ok = encrypted.iter().filter(|c| c.iops_change_pct.unwrap_or(0.0) >= -5.0).count();
    let cpu_ok = encrypted.iter().filter(|c| c.cpu_change_pct.unwrap_or(0.0) <= 5.0).count();
    let cpu_study = encrypted.iter().filter(|c| c.cpu_change_pct.unwrap_or(0.0) <= 20.0).count();
    let p95 = cells.iter().filter(|c| c.p95_within_3x_avg).count();
    let n = encrypted.len();
    report(
        to_stderr,
        format_args!(
            "targets: IOPS >= 95% of baseline in {iops_ok}/{n} encrypted cells; CPU per I/O <= +5% in {cpu_ok}/{n} (<= +20%, VMware's envelope, in {cpu_study}/{n}); p95 <= 3x avg in {p95}/{} cells",
            cells.len()
        ),
    );
}

/// A line of the human report: on stdout, or on stderr when stdout carries the JSON.
fn report(to_stderr: bool, line: std::fmt::Arguments<'_>) {
    if to_stderr {
        eprintln!("{line}");
    } else {
        outln!("{line}");
    }
}

/// Writes a report file completely or not at all; an existing one only with --force.
pub(super) fn write_file(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    use std::io::Write;
    let file = crate::output::new_file(path, force, 0o644)?;
    file.file().write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(file.commit()?)
}
