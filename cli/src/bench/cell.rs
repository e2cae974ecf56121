//! One cell of the workload matrix: what `bench workload` measures, writes as JSON and CSV, and
//! what the chart draws. Its own module, so the chart and the engine do not import each other.

use serde::Serialize;

/// One cell of the matrix, as written to JSON and CSV.
#[derive(Serialize, serde::Deserialize, Clone, Debug)]
pub(crate) struct Cell {
    pub(crate) config: String,
    pub(crate) block_size: u64,
    pub(crate) read_pct: u32,
    pub(crate) threads: usize,
    pub(crate) queue_depth: usize,
    pub(crate) seconds: f64,
    pub(crate) ios: u64,
    pub(crate) iops: f64,
    pub(crate) mbps: f64,
    pub(crate) read_lat_avg_us: Option<f64>,
    pub(crate) read_lat_p95_us: Option<f64>,
    pub(crate) read_lat_p99_us: Option<f64>,
    pub(crate) write_lat_avg_us: Option<f64>,
    pub(crate) write_lat_p95_us: Option<f64>,
    pub(crate) write_lat_p99_us: Option<f64>,
    /// Every present direction has p95 <= 3 x its average.
    pub(crate) p95_within_3x_avg: bool,
    pub(crate) cpu_pct: f64,
    pub(crate) cpu_us_per_io: f64,
    /// Change of CPU per I/O from the baseline cell, in percent (absent for the baseline).
    pub(crate) cpu_change_pct: Option<f64>,
    /// Change of IOPS from the baseline cell, in percent (absent for the baseline).
    pub(crate) iops_change_pct: Option<f64>,
    pub(crate) seed: u64,
    pub(crate) io_engine: String,
    pub(crate) direct: bool,
}

impl Cell {
    pub(crate) fn config(&self) -> &str {
        &self.config
    }
    pub(crate) fn key(&self) -> (u64, u32, usize) {
        (self.block_size, self.read_pct, self.threads)
    }
    pub(crate) fn iops(&self) -> f64 {
        self.iops
    }
    /// Average latency over all requests of the cell, in microseconds.
    pub(crate) fn avg_latency_us(&self) -> f64 {
        let r = self.read_lat_avg_us.unwrap_or(0.0) * self.read_pct as f64;
        let w = self.write_lat_avg_us.unwrap_or(0.0) * (100 - self.read_pct) as f64;
        (r + w) / 100.0
    }
    pub(crate) fn cpu_change_pct(&self) -> Option<f64> {
        self.cpu_change_pct
    }
}

pub(crate) fn size_label(bs: u64) -> String {
    match bs {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}m", b >> 20),
        b if b >= 1024 && b % 1024 == 0 => format!("{}k", b >> 10),
        b => format!("{b}"),
    }
}

/// The cells as CSV, one header line and a line per cell.
pub(super) fn csv(cells: &[Cell]) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    let mut out = String::from(
        "config,block_size,read_pct,threads,queue_depth,seconds,ios,iops,mbps,read_lat_avg_us,read_lat_p95_us,read_lat_p99_us,write_lat_avg_us,write_lat_p95_us,write_lat_p99_us,p95_within_3x_avg,cpu_pct,cpu_us_per_io,cpu_change_pct,iops_change_pct,seed,io_engine,direct\n",
    );
    for c in cells {
        out += &format!(
            "{},{},{},{},{},{:.3},{},{:.1},{:.2},{},{},{},{},{},{},{},{:.2},{:.3},{},{},{},{},{}\n",
            c.config,
            c.block_size,
            c.read_pct,
            c.threads,
            c.queue_depth,
            c.seconds,
            c.ios,
            c.iops,
            c.mbps,
            opt(c.read_lat_avg_us),
            opt(c.read_lat_p95_us),
            opt(c.read_lat_p99_us),
            opt(c.write_lat_avg_us),
            opt(c.write_lat_p95_us),
            opt(c.write_lat_p99_us),
            c.p95_within_3x_avg,
            c.cpu_pct,
            c.cpu_us_per_io,
            opt(c.cpu_change_pct),
            opt(c.iops_change_pct),
            c.seed,
            c.io_engine,
            c.direct
        );
    }
    out
}
