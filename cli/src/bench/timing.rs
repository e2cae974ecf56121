//! The timing loop every throughput row uses: `bench cipher` and its OpenSSL rows, so neither
//! imports the other.

use std::time::{Duration, Instant};

/// The time one sample of [`measure`] aims at.
const SLICE: Duration = Duration::from_millis(1);

/// Runs `f` (which processes `bytes` bytes) repeatedly for `total`, timed in slices of about a
/// millisecond, and returns the best slice's rate in GB/s. The machine is shared and other load comes
/// in bursts: short slices catch the undisturbed moments between them, where a few long slices each
/// catch some of the disturbance.
pub(crate) fn measure(total: Duration, bytes: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm caches, page in, spin up the pool
    let calibration = Instant::now();
    let mut calls_per_slice = 0u32;
    while calibration.elapsed() < SLICE || calls_per_slice == 0 {
        f();
        calls_per_slice += 1;
    }
    let begin = Instant::now();
    let mut best = 0.0f64;
    while begin.elapsed() < total || best == 0.0 {
        let start = Instant::now();
        for _ in 0..calls_per_slice {
            f();
        }
        let rate = (f64::from(calls_per_slice) * bytes as f64) / start.elapsed().as_secs_f64() / 1e9;
        best = best.max(rate);
    }
    best
}
