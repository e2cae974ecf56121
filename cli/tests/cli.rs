//! The `sectorcrypt` binary: round trips, interop with the library, and every bad input giving a
//! one-line error, a non-zero exit and no output file.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KEY256: &str = concat!(
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
);

fn sectorcrypt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
        .args(args)
        .env_remove("SECTORCRYPT_BACKEND")
        .output()
        .unwrap()
}

fn raw(direction: &str, key: &str, unit: &str, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["raw", direction, "--key", key, "--data-unit", unit];
    args.extend(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    args.extend(extra);
    sectorcrypt(&args)
}

fn setup(len: usize) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.raw");
    std::fs::write(&input, common::pattern(len, 9)).unwrap();
    let output = dir.path().join("out.xts");
    (dir, input, output)
}

#[test]
fn raw_round_trip_matches_library_on_every_backend() {
    let (dir, input, output) = setup(3 * 4096 + 100);
    let plain = std::fs::read(&input).unwrap();
    let key = sectorcrypt::XtsKey::from_hex(KEY256).unwrap();
    let units = sectorcrypt::DataUnits::new(4096).unwrap().starting_at(7).with_step(8).unwrap();
    let mut expected = plain.clone();
    let xts = sectorcrypt::Xts::new(&key, sectorcrypt::BackendChoice::Named(sectorcrypt::Backend::Portable))
        .unwrap();
    xts.encrypt_units(&mut expected, units).unwrap();
    for backend in ["auto", "portable", "aesni", "vaes256", "vaes512"] {
        if backend != "auto" && !sectorcrypt::Backend::from_name(backend).unwrap().is_supported() {
            continue;
        }
        // --force: each backend replaces the previous one's output.
        let extra =
            ["--first-unit", "7", "--tweak-step", "8", "--backend", backend, "--threads", "2", "--force"];
        let out = raw("encrypt", KEY256, "4096", &input, &output, &extra);
        assert!(out.status.success(), "{backend}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&output).unwrap(), expected, "{backend}");
        let back = dir.path().join("back.raw");
        let out = raw("decrypt", KEY256, "4096", &output, &back, &extra);
        assert!(out.status.success(), "{backend}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&back).unwrap(), plain, "{backend}");
    }
}

#[test]
fn backends_lists_auto() {
    let out = sectorcrypt(&["backends", "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Where VAES-256 and VAES-512 both run, each process times the two and keeps the faster, so the
    // CLI's choice may differ from this process's when they are close; elsewhere `auto` is the widest.
    let auto = json["auto"].as_str().unwrap();
    if sectorcrypt::Backend::Vaes512.is_supported() && sectorcrypt::Backend::Vaes256.is_supported() {
        assert!(["vaes256", "vaes512"].contains(&auto), "{auto}");
    } else {
        assert_eq!(auto, sectorcrypt::Backend::fastest().name());
    }
    assert_eq!(json["backends"].as_array().unwrap().len(), 4);
}

/// Runs `args` (a raw call) and checks: failure, exactly one line on stderr containing `needle`, and
/// that neither the output nor any temporary file appeared.
fn assert_refused(dir: &Path, out: Output, output: &Path, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted; stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains(needle), "{stderr:?} does not mention {needle:?}");
    assert!(!output.exists(), "output file created");
    let stray: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".sectorcrypt-"))
        .collect();
    assert!(stray.is_empty(), "temporary files left: {stray:?}");
}

#[test]
fn bad_inputs_are_refused_without_output() {
    let (dir, input, output) = setup(4096);
    let d = dir.path();
    let equal = "ab".repeat(64);
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec![], &KEY256[..63], "not hexadecimal"), // odd number of hex digits
        (vec![], "zz", "not hexadecimal"),          // not hex
        (vec![], &KEY256[..96], "got 48 bytes"),    // wrong key length
        (vec![], &equal, "equal"),                  // Key1 == Key2
        (vec!["--backend", "avx9000"], KEY256, "unknown backend"), // unknown backend
        (vec!["--first-unit", "18446744073709551615"], KEY256, "2^64-1"), // 4096 bytes = 8 units of 512
        (vec!["--tweak-step", "0"], KEY256, "tweak step"),
    ];
    for (extra, key, needle) in cases {
        let out = raw("encrypt", key, "512", &input, &output, &extra);
        assert_refused(d, out, &output, needle);
    }
    // Data-unit sizes that are not a power of two in 512..=131072.
    for unit in ["500", "256", "262144"] {
        assert_refused(d, raw("encrypt", KEY256, unit, &input, &output, &[]), &output, "data-unit size");
    }
    // Input shorter than one block, and a last unit shorter than one block.
    for len in [0usize, 15, 512 + 15] {
        std::fs::write(&input, common::pattern(len, 1)).unwrap();
        assert_refused(d, raw("encrypt", KEY256, "512", &input, &output, &[]), &output, "16 bytes");
    }
    // Unreadable input.
    let missing = d.join("missing.raw");
    assert_refused(d, raw("encrypt", KEY256, "512", &missing, &output, &[]), &output, "cannot read");
}

#[test]
fn refused_run_leaves_existing_output_untouched() {
    let (_dir, input, output) = setup(4096);
    std::fs::write(&output, b"precious").unwrap();
    let out = raw("encrypt", &"ab".repeat(64), "512", &input, &output, &[]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&output).unwrap(), b"precious");
}

#[test]
fn unsupported_backend_env_is_refused() {
    let (_dir, input, output) = setup(4096);
    let out = Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
        .args(["raw", "encrypt", "--key", KEY256, "--data-unit", "512"])
        .args(["--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()])
        .env("SECTORCRYPT_BACKEND", "nonsense")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown backend"));
    assert!(!output.exists());
}

/// `--key-file PATH` and `--key-file -` give the same ciphertext as `--key`, streaming `-` in and
/// out; the new names `--from`/`--to` and the old `--input`/`--output` mean the same.
#[test]
fn key_file_and_streams_match_the_key_flag() {
    let (dir, input, output) = setup(2 * 4096 + 48);
    let out = raw("encrypt", KEY256, "4096", &input, &output, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = std::fs::read(&output).unwrap();
    let key_file = dir.path().join("key.hex");
    std::fs::write(&key_file, format!("{KEY256}\n")).unwrap();
    let from_file = dir.path().join("from-file.xts");
    let out = sectorcrypt(&[
        "raw",
        "encrypt",
        "--key-file",
        key_file.to_str().unwrap(),
        "--data-unit",
        "4096",
        "--from",
        input.to_str().unwrap(),
        "--to",
        from_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read(&from_file).unwrap(), expected);
    // The key on stdin, the data from a file and out on stdout.
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
        .args(["raw", "encrypt", "--key-file", "-", "--data-unit", "4096", "--to", "-", "--from"])
        .arg(&input)
        .env_remove("SECTORCRYPT_BACKEND")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(KEY256.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, expected);
}

/// `bench cipher --json` has an in-register ceiling row for every register width this CPU runs, and
/// every x86 backend's XTS row carries its own width's ceiling and its percentage of it.
#[test]
fn bench_cipher_reports_each_instruction_sets_ceiling() {
    let out = sectorcrypt(&[
        "bench",
        "cipher",
        "--json",
        "--seconds",
        "0.01",
        "--large-mib",
        "0",
        "--backends",
        "aesni",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let ceilings: Vec<_> = rows.iter().filter(|r| r["kind"] == "ceiling").collect();
    // AES-NI at least (the test asked for it), for both key sizes and directions.
    assert!(ceilings.iter().filter(|r| r["register_bits"] == 128).count() == 4, "{ceilings:?}");
    for row in rows.iter().filter(|r| r["kind"] == "xts") {
        let own = row["ceiling_gbps"].as_f64().expect("an x86 row has its ceiling");
        let pct = row["pct_of_own_ceiling"].as_f64().unwrap();
        assert!(own > 0.0 && (pct - 100.0 * row["gbps"].as_f64().unwrap() / own).abs() < 1e-6);
    }
}
