//! The C implementations `bench cipher` compares against, measured in the same run:
//!
//! * OpenSSL 3.5+ through the `openssl` crate built from source (`--features openssl`, which turns on
//!   the crate's `vendored` build), on the same buffers and layouts as the XTS rows. The key schedule
//!   runs once per row; per data unit only the tweak is reset (`EVP_CipherInit_ex` with the IV alone),
//!   as a disk driver would.
//! * The system's `openssl speed -evp aes-{128,256}-xts -bytes 4096` (`--system-openssl`), as the
//!   machine's administrators would measure it.

use anyhow::{Context, Result, bail};
#[cfg(feature = "openssl")]
use std::time::Duration;

/// GB/s of XTS through the vendored OpenSSL, `data_unit` bytes per EVP update, in place.
#[cfg(feature = "openssl")]
pub(crate) fn vendored_gbps(
    key: &[u8],
    decrypt: bool,
    buf: &mut [u8],
    data_unit: usize,
    time: Duration,
) -> Result<f64> {
    use openssl::cipher::Cipher;
    use openssl::cipher_ctx::CipherCtx;
    let cipher = if key.len() == 32 { Cipher::aes_128_xts() } else { Cipher::aes_256_xts() };
    let mut ctx = CipherCtx::new()?;
    let zero = [0u8; 16];
    if decrypt {
        ctx.decrypt_init(Some(cipher), Some(key), Some(&zero))?;
    } else {
        ctx.encrypt_init(Some(cipher), Some(key), Some(&zero))?;
    }
    let len = buf.len();
    let mut failure = None;
    let gbps = super::timing::measure(time, len, || {
        for (number, unit) in buf.chunks_mut(data_unit).enumerate() {
            let mut tweak = [0u8; 16];
            tweak[..8].copy_from_slice(&(number as u64).to_le_bytes());
            let reset = if decrypt {
                ctx.decrypt_init(None, None, Some(&tweak))
            } else {
                ctx.encrypt_init(None, None, Some(&tweak))
            };
            let unit_len = unit.len();
            if let Err(err) = reset.and_then(|()| ctx.cipher_update_inplace(unit, unit_len)) {
                failure.get_or_insert(err);
            }
        }
        std::hint::black_box(&mut *buf);
    });
    match failure {
        Some(err) => Err(err.into()),
        None => Ok(gbps),
    }
}

/// The vendored OpenSSL's version, e.g. "OpenSSL 3.5.4 30 Sep 2025".
#[cfg(feature = "openssl")]
pub(crate) fn vendored_version() -> String {
    openssl::version::version().to_string()
}

/// Runs the system's `openssl speed` on 4 KiB XTS for `seconds` and returns its version and GB/s.
pub(crate) fn system_speed(key_bits: u32, seconds: u32) -> Result<(String, f64)> {
    let algorithm = format!("aes-{key_bits}-xts");
    let out = std::process::Command::new("openssl")
        .args([
            "speed",
            "-elapsed",
            "-seconds",
            &seconds.max(1).to_string(),
            "-bytes",
            "4096",
            "-evp",
            &algorithm,
        ])
        .output()
        .context("cannot run `openssl speed` (is the openssl command installed?)")?;
    if !out.status.success() {
        bail!("`openssl speed -evp {algorithm}` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    // The last line reads e.g. "AES-256-XTS    7320571.22k": thousands of bytes per second.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rate = stdout
        .lines()
        .rev()
        .find_map(|line| line.split_whitespace().last()?.strip_suffix('k')?.parse::<f64>().ok())
        .with_context(|| format!("cannot read the rate in `openssl speed` output: {stdout}"))?;
    let version = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "openssl".into());
    Ok((version, rate * 1e3 / 1e9))
}
