//! `sectorcrypt demo`: the main job on an embedded default. It generates a sample, then runs this very
//! binary as `raw encrypt` and `raw decrypt` (the CLI path other tools drive), checks that the
//! ciphertext differs from the plaintext and that the round trip restores it, and prints the
//! throughput of each step, end to end through the file system.

use anyhow::{Context, Result, bail, ensure};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// XTS-AES-256 demo key (Key1 || Key2). Public, so it protects nothing: never use it for real data.
const DEMO_KEY: &str = concat!(
    "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
    "8a5f3c2e1d0b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1"
);

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Size of the generated sample in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    size_mib: usize,
    /// Bytes per data unit.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    data_unit: usize,
    /// Directory for the sample files (default: a new temporary directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    backend: super::BackendArg,
}

/// The largest sample: it is generated and compared in memory.
const MAX_SIZE_MIB: usize = 16 << 10;

pub(crate) fn run(args: Args) -> Result<()> {
    ensure!(
        (1..=MAX_SIZE_MIB).contains(&args.size_mib),
        "--size-mib must be from 1 to {MAX_SIZE_MIB} (the sample is held in memory)"
    );
    let backend = args.backend.choice()?.resolve()?;
    let temp = match &args.dir {
        Some(dir) => tempfile::Builder::new().prefix("sectorcrypt-demo-").tempdir_in(dir),
        None => tempfile::Builder::new().prefix("sectorcrypt-demo-").tempdir(),
    }
    .context("cannot create the demo directory")?;
    let plain = temp.path().join("sample.raw");
    let cipher = temp.path().join("sample.xts");
    let restored = temp.path().join("sample.restored");

    let len = args.size_mib << 20;
    let sample = sample(len);
    std::fs::write(&plain, &sample).with_context(|| format!("cannot write {}", plain.display()))?;
    outln!(
        "sectorcrypt demo: {} MiB sample, XTS-AES-256, {}-byte data units, backend {backend}, built-in demo key",
        args.size_mib,
        args.data_unit
    );

    let encrypt = cli_step("encrypt", &plain, &cipher, args.data_unit, backend.name())?;
    let ciphertext = std::fs::read(&cipher)?;
    ensure!(ciphertext.len() == len, "ciphertext has {} bytes, expected {len}", ciphertext.len());
    let unchanged = ciphertext.chunks(16).zip(sample.chunks(16)).filter(|(c, p)| c == p).count();
    ensure!(unchanged == 0, "{unchanged} ciphertext blocks equal their plaintext");
    drop(ciphertext);

    let decrypt = cli_step("decrypt", &cipher, &restored, args.data_unit, backend.name())?;
    if std::fs::read(&restored)? != sample {
        bail!("the decrypted file differs from the sample");
    }
    let rate = |secs: f64| len as f64 / secs / 1e9;
    let cipher_secs = cipher_only(&sample, args.data_unit, backend)?;
    outln!(
        "  cipher speed (in memory, all cores):   {:>6.2} GB/s  encrypt {:.3} s",
        rate(cipher_secs),
        cipher_secs
    );
    outln!(
        "  file speed (raw encrypt, end to end):  {:>6.2} GB/s  {:.3} s: start, read, encrypt, write, fsync",
        rate(encrypt),
        encrypt
    );
    outln!("  file speed (raw decrypt, end to end):  {:>6.2} GB/s  {:.3} s", rate(decrypt), decrypt);
    outln!("  round trip ok: ciphertext shares no 16-byte block with the sample, decryption restores it");
    outln!("  per backend and data unit: `sectorcrypt bench cipher`");
    Ok(())
}

/// Seconds to encrypt `sample` in memory with the demo key, on every core.
fn cipher_only(sample: &[u8], data_unit: usize, backend: sectorcrypt::Backend) -> Result<f64> {
    let key = sectorcrypt::XtsKey::from_hex(DEMO_KEY)?;
    let xts = sectorcrypt::Xts::new(&key, sectorcrypt::BackendChoice::Named(backend))?;
    let units = sectorcrypt::DataUnits::new(data_unit)?;
    let mut buf = sample.to_vec();
    let start = Instant::now();
    xts.encrypt_units_parallel(&mut buf, units)?;
    Ok(start.elapsed().as_secs_f64())
}

/// Runs `sectorcrypt raw DIRECTION` as a child process; returns its wall time in seconds.
fn cli_step(direction: &str, input: &Path, output: &Path, data_unit: usize, backend: &str) -> Result<f64> {
    let exe = std::env::current_exe().context("cannot find the sectorcrypt binary")?;
    let start = Instant::now();
    let status = Command::new(exe)
        .args([
            "raw",
            direction,
            "--key",
            DEMO_KEY,
            "--data-unit",
            &data_unit.to_string(),
            "--backend",
            backend,
        ])
        .arg("--from")
        .arg(input)
        .arg("--to")
        .arg(output)
        .status()
        .context("cannot run sectorcrypt raw")?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(status.success(), "sectorcrypt raw {direction} failed ({status})");
    Ok(secs)
}

/// A sample that looks like a disk: runs of zeros (where XTS must still hide the pattern) among
/// pseudo-random sectors.
fn sample(len: usize) -> Vec<u8> {
    let mut state = 0x243f_6a88_85a3_08d3u64;
    let mut data = vec![0u8; len];
    for (i, sector) in data.chunks_mut(4096).enumerate() {
        if i % 4 == 3 {
            continue;
        }
        for word in sector.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
    }
    data
}
