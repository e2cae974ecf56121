//! `sectorcrypt bench cipher`: XTS throughput per backend, key size, data unit, direction and thread
//! count, next to the rows that bound it: the `aes` crate's AES-ECB rate on the same sizes (the AES
//! hardware ceiling, since XTS does ECB's work plus tweaks) and an in-place memory pass over the large
//! buffer (the memory ceiling). Every row of one run shares the machine's state, so compare rows of
//! one run, not figures across runs.

use super::timing::measure;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use anyhow::Result;
use sectorcrypt::{Backend, BackendChoice, DataUnits, Xts, XtsKey};
use serde::Serialize;
use std::hint::black_box;
use std::time::Duration;

/// What one run measures: the validated arguments of `bench cipher`.
pub(super) struct Config {
    /// One JSON array of rows instead of a table.
    pub(super) json: bool,
    /// Time per row.
    pub(super) per_row: Duration,
    pub(super) backends: Vec<Backend>,
    /// Bytes of the out-of-cache buffer (0: no such rows).
    pub(super) large: usize,
    /// Seconds for each run of the system's `openssl speed`, if it is to run.
    pub(super) system_openssl: Option<u32>,
}

/// One measurement.
#[derive(Serialize, Clone, Debug)]
struct Row {
    /// `xts` for the engine in place, `xts-to` for it from one buffer into another, `aes-ecb` for the
    /// ceiling, `memory` for the in-place memory pass.
    kind: &'static str,
    /// The backend, or the implementation that set the bound.
    backend: String,
    /// AES key size of each half (0 for the memory pass).
    key_bits: u32,
    /// Bytes per data unit (for ECB and memory rows: the buffer).
    data_unit: usize,
    /// Bytes per call.
    buffer: usize,
    /// `encrypt` or `decrypt` (`read-write` for memory).
    direction: &'static str,
    threads: usize,
    gbps: f64,
    /// Percent of the ECB ceiling for the same key size and direction (XTS rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pct_of_ceiling: Option<f64>,
    /// The backend whose kernel runs on a ceiling row's width.
    #[serde(skip)]
    backend_of_width: Option<&'static str>,
    /// Register width of an in-register ceiling row (`kind` `ceiling`).
    #[serde(skip_serializing_if = "Option::is_none")]
    register_bits: Option<u32>,
    /// The in-register ceiling of this row's instruction set, key size and direction (XTS rows of the
    /// x86 backends).
    #[serde(skip_serializing_if = "Option::is_none")]
    ceiling_gbps: Option<f64>,
    /// Percent of that ceiling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pct_of_own_ceiling: Option<f64>,
    /// This row's rate over the vendored OpenSSL's on the same layout (XTS rows; `--features openssl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    x_openssl: Option<f64>,
    /// This row's rate over the system's `openssl speed` on 4 KiB units (encrypt rows of 4 KiB units).
    #[serde(skip_serializing_if = "Option::is_none")]
    x_system_openssl: Option<f64>,
}

impl Row {
    /// A measurement, before the ratios are filled in.
    #[allow(clippy::too_many_arguments)]
    fn new(
        kind: &'static str,
        backend: String,
        key_bits: u32,
        data_unit: usize,
        buffer: usize,
        direction: &'static str,
        threads: usize,
        gbps: f64,
    ) -> Row {
        Row {
            kind,
            backend,
            key_bits,
            data_unit,
            buffer,
            direction,
            threads,
            gbps,
            pct_of_ceiling: None,
            backend_of_width: None,
            register_bits: None,
            ceiling_gbps: None,
            pct_of_own_ceiling: None,
            x_openssl: None,
            x_system_openssl: None,
        }
    }
}

const UNITS: [usize; 5] = [512, 4096, 16384, 65536, 131072];
/// In-cache bytes per call when many units go in one call.
const IN_CACHE: usize = 64 * 1024;
/// A buffer past L2 but within L3, for the thread-scaling rows.
const SHARED: usize = 4 << 20;

/// Bytes starting on a page boundary, as the data path's staging slots do (see `disk::uring`). A large
/// `Vec` from the allocator starts 16 bytes past a page, so every 64-byte load and store of a vector
/// kernel straddles two cache lines: rows measured 0-5% slower so, OpenSSL's as much as ours.
struct PageAligned {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl PageAligned {
    fn new(len: usize, fill: u8) -> Self {
        let storage = vec![fill; len + 4096];
        let start = storage.as_ptr().align_offset(4096);
        Self { storage, start, len }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// Measures every row of `config` and prints them.
pub(super) fn run(config: &Config) -> Result<()> {
    let (backends, per_row) = (&config.backends, config.per_row);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    let mut shared = PageAligned::new(SHARED.max(IN_CACHE), 0x5a);
    let buf = shared.bytes();
    let mut source = PageAligned::new(IN_CACHE.max(UNITS[UNITS.len() - 1]), 0xa5);
    let source = source.bytes();

    for key_bits in [128u32, 256] {
        let key = XtsKey::from_bytes(&demo_key(key_bits))?;
        for direction in ["encrypt", "decrypt"] {
            rows.push(ecb_ceiling(key_bits, direction, buf, per_row));
            in_register_ceilings(&mut rows, key_bits, direction, per_row);
            for &backend in backends {
                let xts = Xts::new(&key, BackendChoice::Named(backend))?;
                let xts_row =
                    |data_unit: usize, buffer: usize, threads: usize, buf: &mut [u8]| -> Result<Row> {
                        let units = DataUnits::new(data_unit)?;
                        let gbps = run_xts(&xts, direction, &mut buf[..buffer], units, threads, per_row)?;
                        Ok(Row::new(
                            "xts",
                            backend.name().into(),
                            key_bits,
                            data_unit,
                            buffer,
                            direction,
                            threads,
                            gbps,
                        ))
                    };
                // One unit per call: shows the per-call overhead (tweak encryption, dispatch).
                for unit in [512, 4096] {
                    rows.push(xts_row(unit, unit, 1, buf)?);
                }
                // Many units per call, in cache: in place, then from a source buffer into another.
                for unit in UNITS {
                    rows.push(xts_row(unit, IN_CACHE.max(unit), 1, buf)?);
                }
                for unit in UNITS {
                    let buffer = IN_CACHE.max(unit);
                    let gbps =
                        run_xts_to(&xts, direction, &source[..buffer], &mut buf[..buffer], unit, per_row)?;
                    let backend = backend.name().into();
                    rows.push(Row::new("xts-to", backend, key_bits, unit, buffer, direction, 1, gbps));
                }
                // Thread scaling on a buffer shared out to the pool.
                for threads in dedup([1, cores]) {
                    rows.push(xts_row(4096, SHARED, threads, buf)?);
                }
            }
            #[cfg(feature = "openssl")]
            openssl_rows(&mut rows, key_bits, direction, buf, per_row)?;
        }
    }
    if let Some(seconds) = config.system_openssl {
        for key_bits in [128, 256] {
            let (version, gbps) = super::openssl_rows::system_speed(key_bits, seconds)?;
            rows.push(Row::new("openssl-speed", version, key_bits, 4096, 4096, "encrypt", 1, gbps));
        }
    }
    if config.large > 0 {
        large_rows(&mut rows, backends, config.large, cores, per_row)?;
    }
    add_ceiling_percentages(&mut rows);
    if config.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
    }
    Ok(())
}

/// Rows over a buffer far larger than cache: the memory pass and XTS-AES-256 on 4 KiB units.
fn large_rows(
    rows: &mut Vec<Row>,
    backends: &[Backend],
    size: usize,
    cores: usize,
    per_row: Duration,
) -> Result<()> {
    let mut big = PageAligned::new(size, 0x33);
    let big = big.bytes();
    let gbps = measure(per_row.max(Duration::from_millis(500)), size, || memory_pass(big));
    rows.push(Row::new("memory", "in-place-xor".into(), 0, size, size, "read-write", 1, gbps));
    let key = XtsKey::from_bytes(&demo_key(256))?;
    let units = DataUnits::new(4096)?;
    for &backend in backends {
        let xts = Xts::new(&key, BackendChoice::Named(backend))?;
        for direction in ["encrypt", "decrypt"] {
            for threads in dedup([1, cores]) {
                let gbps =
                    run_xts(&xts, direction, big, units, threads, per_row.max(Duration::from_millis(500)))?;
                rows.push(Row::new("xts", backend.name().into(), 256, 4096, size, direction, threads, gbps));
            }
        }
    }
    Ok(())
}

/// The vendored OpenSSL on the layouts of the single-thread XTS rows.
#[cfg(feature = "openssl")]
fn openssl_rows(
    rows: &mut Vec<Row>,
    key_bits: u32,
    direction: &'static str,
    buf: &mut [u8],
    per_row: Duration,
) -> Result<()> {
    let key = demo_key(key_bits);
    let backend = super::openssl_rows::vendored_version();
    let layouts = [(512, 512), (4096, 4096)].into_iter().chain(UNITS.map(|unit| (unit, IN_CACHE.max(unit))));
    for (data_unit, buffer) in layouts {
        let gbps = super::openssl_rows::vendored_gbps(
            &key,
            direction == "decrypt",
            &mut buf[..buffer],
            data_unit,
            per_row,
        )?;
        rows.push(Row::new("openssl", backend.clone(), key_bits, data_unit, buffer, direction, 1, gbps));
    }
    Ok(())
}

/// XTS over `buf` again and again: on the calling thread when `threads` is 1 (a pool would add a
/// cross-thread hand-off to every call), else through the parallel API on a pool of `threads`.
fn run_xts(
    xts: &Xts,
    direction: &str,
    buf: &mut [u8],
    units: DataUnits,
    threads: usize,
    time: Duration,
) -> Result<f64> {
    let decrypt = direction == "decrypt";
    let len = buf.len();
    let call = |buf: &mut [u8]| {
        let result = match (threads, decrypt) {
            (1, false) => xts.encrypt_units(buf, units),
            (1, true) => xts.decrypt_units(buf, units),
            (_, false) => xts.encrypt_units_parallel(buf, units),
            (_, true) => xts.decrypt_units_parallel(buf, units),
        };
        result.expect("the bench's layouts are valid");
    };
    if threads == 1 {
        return Ok(measure(time, len, || call(buf)));
    }
    let pool = crate::pool(threads)?;
    Ok(pool.install(|| measure(time, len, || call(buf))))
}

/// XTS from `src` into `dst` again and again on the calling thread (the out-of-place kernels).
fn run_xts_to(
    xts: &Xts,
    direction: &str,
    src: &[u8],
    dst: &mut [u8],
    data_unit: usize,
    time: Duration,
) -> Result<f64> {
    let units = DataUnits::new(data_unit)?;
    let decrypt = direction == "decrypt";
    Ok(measure(time, src.len(), || {
        let result = if decrypt {
            xts.decrypt_units_to(src, dst, units)
        } else {
            xts.encrypt_units_to(src, dst, units)
        };
        result.expect("the bench's layouts are valid");
        black_box(&mut *dst);
    }))
}

/// Reads and writes every byte once, as XTS in place does, at the speed the memory allows.
fn memory_pass(buf: &mut [u8]) {
    // The compiler vectorises this to full-width loads and stores.
    for byte in buf.iter_mut() {
        *byte ^= 0x5c;
    }
    black_box(buf);
}

/// The in-register AES ceiling of each register width this CPU has (`sectorcrypt_simd::ceiling`):
/// independent AESENC (AESDEC) chains, keys in registers, no memory traffic, as GB/s of a cipher of
/// `key_bits` doing nothing but its rounds.
fn in_register_ceilings(rows: &mut Vec<Row>, key_bits: u32, direction: &'static str, per_row: Duration) {
    use sectorcrypt_simd::ceiling::{self, Width};
    const ITERATIONS: u64 = 4096;
    let rounds = if key_bits == 128 { 10 } else { 14 };
    for width in Width::ALL.into_iter().filter(|w| w.backend().is_supported()) {
        let decrypt = direction == "decrypt";
        // `measure` counts bytes per call: here block rounds, 16 bytes each, so its GB/s divided by
        // the rounds per block is the cipher's ceiling.
        let rate = measure(per_row / 5, width.block_rounds(ITERATIONS) as usize * 16, || {
            ceiling::run(width, decrypt, ITERATIONS);
        });
        let gbps = rate / f64::from(rounds);
        let name = format!("{}-{}", if decrypt { "aesdec" } else { "aesenc" }, width.bits());
        let mut row = Row::new("ceiling", name, key_bits, 0, 0, direction, 1, gbps);
        row.register_bits = Some(width.bits());
        row.backend_of_width = Some(width.backend().name());
        rows.push(row);
    }
}

/// The best ECB rate of the `aes` crate over in-cache buffers of the data-unit sizes: the most AES
/// blocks per second this core's AES units deliver, per key size and direction.
fn ecb_ceiling(key_bits: u32, direction: &'static str, buf: &mut [u8], per_row: Duration) -> Row {
    let key = demo_key(key_bits);
    let half = &key[..key.len() / 2];
    let mut best = (0.0, 0);
    for size in UNITS {
        let blocks = aes::Block::slice_as_chunks_mut(&mut buf[..size]).0;
        let gbps = match key_bits {
            128 => {
                ecb_rate(&aes::Aes128::new_from_slice(half).expect("16 bytes"), direction, blocks, per_row)
            }
            _ => ecb_rate(&aes::Aes256::new_from_slice(half).expect("32 bytes"), direction, blocks, per_row),
        };
        if gbps > best.0 {
            best = (gbps, size);
        }
    }
    Row::new("aes-ecb", "aes-crate-ecb".into(), key_bits, best.1, best.1, direction, 1, best.0)
}

fn ecb_rate<C: BlockCipherEncrypt + BlockCipherDecrypt<BlockSize = aes::cipher::consts::U16>>(
    cipher: &C,
    direction: &str,
    blocks: &mut [aes::Block],
    per_row: Duration,
) -> f64 {
    let bytes = blocks.len() * 16;
    measure(per_row / 5, bytes, || {
        if direction == "encrypt" {
            cipher.encrypt_blocks(blocks)
        } else {
            cipher.decrypt_blocks(blocks)
        }
        black_box(&mut *blocks);
    })
}

/// Fills in the XTS rows' percentage of the ECB ceiling and their ratios to OpenSSL.
fn add_ceiling_percentages(rows: &mut [Row]) {
    let is_xts = |row: &Row| row.kind == "xts" || row.kind == "xts-to";
    let others: Vec<Row> = rows.iter().filter(|r| !is_xts(r)).cloned().collect();
    let find = |kind: &str, row: &Row, same_layout: bool| {
        others.iter().find(|o| {
            o.kind == kind
                && o.key_bits == row.key_bits
                && o.direction == row.direction
                && (!same_layout
                    || (o.data_unit == row.data_unit && o.buffer == row.buffer && o.threads == row.threads))
        })
    };
    for row in rows.iter_mut().filter(|r| is_xts(r)) {
        row.pct_of_ceiling = find("aes-ecb", row, false).map(|c| 100.0 * row.gbps / c.gbps);
        let own = others.iter().find(|o| {
            o.kind == "ceiling"
                && o.backend_of_width == Some(row.backend.as_str())
                && o.key_bits == row.key_bits
                && o.direction == row.direction
        });
        row.ceiling_gbps = own.map(|c| c.gbps);
        row.pct_of_own_ceiling = own.map(|c| 100.0 * row.gbps / c.gbps);
        row.x_openssl = find("openssl", row, true).map(|o| row.gbps / o.gbps);
        if row.data_unit == 4096 && row.threads == 1 {
            row.x_system_openssl = find("openssl-speed", row, false).map(|o| row.gbps / o.gbps);
        }
    }
}

fn print_table(rows: &[Row]) {
    outln!(
        "{:<13} {:<14} {:>4} {:>7} {:>10} {:<8} {:>3} {:>8} {:>9} {:>6} {:>7} {:>7}",
        "kind",
        "backend",
        "key",
        "unit",
        "buffer",
        "dir",
        "thr",
        "GB/s",
        "% ceiling",
        "% own",
        "x ossl",
        "x sys"
    );
    let ratio = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:.2}"));
    for r in rows {
        let pct = r.pct_of_ceiling.map_or(String::new(), |p| format!("{p:.0}%"));
        let own = r.pct_of_own_ceiling.map_or(String::new(), |p| format!("{p:.0}%"));
        let backend: String = r.backend.chars().take(14).collect();
        outln!(
            "{:<13} {:<14} {:>4} {:>7} {:>10} {:<8} {:>3} {:>8.2} {:>9} {:>6} {:>7} {:>7}",
            r.kind,
            backend,
            r.key_bits,
            r.data_unit,
            r.buffer,
            r.direction,
            r.threads,
            r.gbps,
            pct,
            own,
            ratio(r.x_openssl),
            ratio(r.x_system_openssl)
        );
    }
    for name in rows
        .iter()
        .filter(|r| r.kind.starts_with("openssl"))
        .map(|r| &r.backend)
        .collect::<std::collections::BTreeSet<_>>()
    {
        outln!("openssl: {name}");
    }
}

fn dedup(threads: [usize; 2]) -> Vec<usize> {
    if threads[0] == threads[1] { vec![threads[0]] } else { threads.to_vec() }
}

/// A fixed key with distinct halves; the bench measures speed, so the key's value does not matter.
pub(crate) fn demo_key(key_bits: u32) -> Vec<u8> {
    (0..key_bits as usize / 4).map(|i| (i as u8).wrapping_mul(151).wrapping_add(7)).collect()
}
