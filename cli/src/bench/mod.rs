//! `sectorcrypt bench ...`: the arguments, checked and turned into the runs the engines make.
//!
//! The engines are modules of their own: `cipher` (the cipher rows, their ceilings, OpenSSL's rows in
//! `openssl_rows`, the timing loop in `timing`), `workload` (the VM-vs-datastore matrix), `cell` (its
//! cells and their CSV) and `chart` (its chart). They take plain values, not argument structs.

mod cell;
mod chart;
mod cipher;
mod openssl_rows;
mod rekey;
mod timing;
mod workload;

use super::size::parse_size;
use super::{BackendArg, IoArg};
use anyhow::{Context, Result, bail};
use cell::Cell;
use sectorcrypt::disk::OpenOptions;
use sectorcrypt::{Backend, BackendChoice};
use std::path::PathBuf;
use std::time::Duration;
use workload::{Config, Plan, Workload};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum What {
    /// Cipher throughput in GB/s (10^9 bytes per second).
    Cipher(CipherArgs),
    /// The VM-vs-datastore encryption matrix: random I/O through the encrypted data path against an
    /// unencrypted baseline (IOPS, MB/s, latency avg/p95/p99, CPU), with optional JSON, CSV and chart.
    Workload(Box<WorkloadArgs>),
    /// Redraw the chart of a saved `bench workload --json` run.
    Chart(ChartArgs),
    /// Deep rekey speed against a plain copy of the same bytes, and its cost to foreground I/O.
    Rekey(rekey::RekeyArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct CipherArgs {
    /// Print one JSON array of rows instead of a table.
    #[arg(long)]
    json: bool,
    /// Seconds spent measuring each row (the best slice of about a millisecond is reported).
    #[arg(long, default_value_t = 0.2, value_name = "S")]
    seconds: f64,
    /// Only these backends (comma-separated; default: every one this CPU supports).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    backends: Vec<String>,
    /// Size of the out-of-cache buffer in MiB (0 leaves those rows out).
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    large_mib: usize,
    /// Also run the system's `openssl speed -evp aes-{128,256}-xts -bytes 4096` and add its rates.
    #[arg(long)]
    system_openssl: bool,
}

pub(crate) fn run(what: What) -> Result<()> {
    match what {
        What::Cipher(args) => cipher::run(&args.config()?),
        What::Workload(args) => workload::run(&args.workload()?),
        What::Chart(args) => redraw(args),
        What::Rekey(args) => rekey::run(&args),
    }
}

impl CipherArgs {
    /// The run these arguments ask for, every value checked.
    fn config(self) -> Result<cipher::Config> {
        let backends: Vec<Backend> = if self.backends.is_empty() {
            Backend::supported().collect()
        } else {
            self.backends
                .iter()
                .map(|name| Ok(name.parse::<BackendChoice>()?.resolve()?))
                .collect::<Result<_>>()?
        };
        if !(0.01..=60.0).contains(&self.seconds) {
            bail!("--seconds must be a number from 0.01 to 60, got {}", self.seconds);
        }
        let Some(large) = self.large_mib.checked_mul(1 << 20) else {
            bail!("--large-mib {} is too large", self.large_mib);
        };
        Ok(cipher::Config {
            json: self.json,
            per_row: Duration::from_secs_f64(self.seconds),
            backends,
            large,
            system_openssl: self.system_openssl.then(|| (self.seconds * 5.0).ceil() as u32),
        })
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct WorkloadArgs {
    /// Configurations (comma-separated): baseline, vm, datastore.
    #[arg(long, value_delimiter = ',', value_enum)]
    configs: Option<Vec<Config>>,
    /// Block sizes (comma-separated; suffixes K, M). Default 4k,16k,64k,128k (quick: 4k,64k).
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    block_sizes: Option<Vec<u64>>,
    /// Read shares in percent (comma-separated). Default 0,20,70 (quick: 0,70).
    #[arg(long, value_delimiter = ',')]
    read_pct: Option<Vec<u32>>,
    /// Threads doing the work, each issuing its requests and running the cipher on them
    /// (comma-separated; 0: one per core). Default 1,2 (quick: 1).
    #[arg(long, value_delimiter = ',')]
    threads: Option<Vec<usize>>,
    /// Requests per batch per thread.
    #[arg(long, default_value_t = 1, value_name = "N")]
    queue_depth: usize,
    /// Bytes of each configuration's disk (the group splits them over its members). Default 512M
    /// (quick: 64M).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Seconds measured per cell. Default 2 (quick: 0.4).
    #[arg(long, value_name = "S")]
    seconds: Option<f64>,
    /// Directory for the benchmark's files (default: the system's temporary directory). Use a tmpfs
    /// (e.g. /dev/shm) to take the device out of the picture.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// O_DIRECT on or off.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    direct: String,
    /// Members of the datastore-mode group.
    #[arg(long, default_value_t = 2, value_name = "N")]
    members: usize,
    /// Bytes per data unit of the encrypted disks.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    data_unit: usize,
    /// A small matrix that finishes in well under a minute (smoke runs).
    #[arg(long)]
    quick: bool,
    /// Seed of the offset generator (printed, so a run can be repeated).
    #[arg(long, default_value_t = 1619)]
    seed: u64,
    /// Print the cells as a JSON array on stdout (the table then goes to stderr).
    #[arg(long)]
    json: bool,
    /// Write the cells as a JSON array to this file.
    #[arg(long, value_name = "PATH")]
    json_file: Option<PathBuf>,
    /// Write the cells as CSV.
    #[arg(long, value_name = "PATH")]
    csv: Option<PathBuf>,
    /// Draw IOPS, latency and CPU change per cell (.svg or .png).
    #[arg(long, value_name = "PATH")]
    chart: Option<PathBuf>,
    /// Replace existing --json-file, --csv and --chart files (otherwise refused).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    backend: BackendArg,
    #[command(flatten)]
    io: IoArg,
}

impl WorkloadArgs {
    /// The run these arguments ask for, every value checked.
    fn workload(self) -> Result<Workload> {
        let quick = self.quick;
        let mut plan = Plan {
            configs: self.configs.clone().unwrap_or(vec![Config::Baseline, Config::Vm, Config::Datastore]),
            block_sizes: self.block_sizes.clone().unwrap_or(if quick {
                vec![4096, 65536]
            } else {
                vec![4096, 16384, 65536, 131072]
            }),
            read_pct: self.read_pct.clone().unwrap_or(if quick { vec![0, 70] } else { vec![0, 20, 70] }),
            threads: self.threads.clone().unwrap_or(if quick { vec![1] } else { vec![1, 2] }),
            size: self.size.unwrap_or(if quick { 64 << 20 } else { 512 << 20 }),
            seconds: self.seconds.unwrap_or(if quick { 0.4 } else { 2.0 }),
        };
        if plan.read_pct.iter().any(|&p| p > 100) {
            bail!("--read-pct values are percentages (0 to 100)");
        }
        // 0 threads means one per core, as everywhere `--threads` appears.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for threads in &mut plan.threads {
            if *threads == 0 {
                *threads = cores;
            }
        }
        if self.queue_depth == 0 {
            bail!("--queue-depth must be at least 1");
        }
        if !(plan.seconds > 0.0 && plan.seconds.is_finite()) {
            bail!("--seconds must be positive");
        }
        // Refused now rather than after minutes of measuring (writing refuses them again).
        for path in [&self.json_file, &self.csv, &self.chart].into_iter().flatten() {
            if !self.force && std::fs::symlink_metadata(path).is_ok() {
                bail!("{} already exists; refusing to overwrite it (--force replaces it)", path.display());
            }
        }
        if let Some(chart) = &self.chart {
            let extension = chart.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            if extension != "svg" && extension != "png" {
                bail!("--chart must end in .svg or .png");
            }
        }
        if self.members == 0 {
            bail!("--members must be at least 1");
        }
        let stripe = 1u64 << 20;
        let per_member = plan.size / self.members as u64 / stripe * stripe;
        if per_member == 0 {
            bail!("--size must give every member at least 1 MiB ({} members)", self.members);
        }
        for &bs in &plan.block_sizes {
            if bs == 0 || bs > per_member * self.members as u64 || bs > 64 << 20 {
                bail!("block size {bs} is zero or larger than the disk (or 64 MiB)");
            }
        }
        let options = OpenOptions {
            writable: true,
            backend: self.backend.choice()?,
            io: self.io.engine(),
            queue_depth: self.queue_depth,
            direct: self.direct == "on",
        };
        Ok(Workload {
            plan: Plan { size: per_member * self.members as u64, ..plan },
            queue_depth: self.queue_depth,
            dir: self.dir,
            members: self.members,
            data_unit: self.data_unit,
            seed: self.seed,
            options,
            json: self.json,
            json_file: self.json_file,
            csv: self.csv,
            chart: self.chart,
            force: self.force,
        })
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct ChartArgs {
    /// A JSON file written by `bench workload --json`.
    #[arg(long, value_name = "PATH")]
    from: PathBuf,
    /// The chart to draw (.svg or .png).
    #[arg(long, value_name = "PATH")]
    to: PathBuf,
    /// The subtitle (e.g. the machine the run was made on).
    #[arg(long, default_value = "")]
    title: String,
    /// Replace an existing chart file (otherwise refused).
    #[arg(long)]
    force: bool,
}

/// Redraws the chart of a saved run.
fn redraw(args: ChartArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.from)
        .with_context(|| format!("cannot read {}", args.from.display()))?;
    let cells: Vec<Cell> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the JSON of `bench workload --json`", args.from.display()))?;
    if cells.is_empty() {
        bail!("{} holds no cells", args.from.display());
    }
    workload::write_file(&args.to, &chart::render(&args.to, &cells, &args.title)?, args.force)?;
    outln!("chart: {}", args.to.display());
    Ok(())
}
