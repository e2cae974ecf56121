//! Byte counts as people type them and read them.
//!
//! `parse_size` takes digits with an optional fraction and suffix: `K`, `M`, `G`, `T`, `P` and
//! `KiB`..`PiB` are powers of 1024 (as in qemu-img and cryptsetup); `KB`, `MB`, `GB`, `TB`, `PB` are
//! powers of 1000 (so `10GB` is 10^10 bytes, as a drive's label means it). `1.5G` is 1610612736; a
//! fraction that does not come to whole bytes, a negative or a count past 2^64-1 is refused.

/// Parses a byte count (see the module doc).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a byte count (e.g. 4096, 64M, 1.5G, 10GB)");
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: u128 = match suffix.trim() {
        "" | "B" | "b" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "P" | "PiB" => 1 << 50,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "PB" => 1_000_000_000_000_000,
        other => {
            return Err(format!(
                "unknown size suffix {other:?} in {text:?} (K, M, G, T, P: powers of 1024; KB, MB, GB, TB, PB: powers of 1000)"
            ));
        }
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || fraction.len() > 18 {
        return Err(bad());
    }
    let digits = |s: &str| if s.is_empty() { Some(0u128) } else { s.parse::<u128>().ok() };
    let (Some(whole), Some(frac)) = (digits(whole), digits(fraction)) else { return Err(bad()) };
    let scale = 10u128.pow(fraction.len() as u32);
    let too_large = || format!("{text:?} is too large (more than 2^64-1 bytes)");
    let bytes = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    let part = frac * multiplier;
    if !part.is_multiple_of(scale) {
        return Err(format!("{text:?} is not a whole number of bytes"));
    }
    let total = bytes.checked_add(part / scale).ok_or_else(too_large)?;
    u64::try_from(total).map_err(|_| too_large())
}

/// `1610612736` as `1.5 GiB`: three significant figures in the largest binary unit that fits.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} bytes");
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::{human, parse_size};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert!(parse_size("0.3K").is_err());
        assert!(parse_size("16E").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1..5G").is_err());
        assert!(parse_size(".").is_err());
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("16384P").is_err());
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(64 << 20), "64 MiB");
    }
}
