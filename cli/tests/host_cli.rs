//! `sectorcrypt host image-export` against swtpm: the description holds the PCR values tpm2-tools
//! reads, follows the host through a PCR extend (a different image), parses back under the format's
//! rules, and every refusal is one line with nothing written.
//!
//! Needs swtpm and tpm2-tools (`.ci/deps`).

#[path = "../../tests/support/servers.rs"]
mod servers;

use sectorcrypt::trusted::image::BaseImage;
use servers::Swtpm;
use std::process::{Command, Output};

const SECTORCRYPT: &str = env!("CARGO_BIN_EXE_sectorcrypt");

fn export(tpm: &str, dir: &std::path::Path, to: &str, extra: &[&str]) -> Output {
    Command::new(SECTORCRYPT)
        .args(["host", "image-export", "--tcti", tpm, "--name", "hv-8.0", "--version", "8.0.3-1"])
        .args(["--to", to])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn pcrread(tpm: &Swtpm, dir: &std::path::Path, pcrs: &str) -> Vec<String> {
    let out = Command::new("tpm2_pcrread")
        .args([&format!("sha256:{pcrs}"), "-o", "pcrs.bin"])
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .current_dir(dir)
        .output()
        .expect("tpm2_pcrread runs (apt-get install tpm2-tools)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(dir.join("pcrs.bin")).unwrap().chunks(32).map(hex::encode).collect()
}

fn one_line_error(out: &Output, cause: &str) {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(cause), "{stderr:?} does not say {cause:?}");
}

#[test]
fn a_host_exports_the_pcr_values_its_tpm_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut tpm = Swtpm::start(&d.join("tpm"));
    let extend = |pcr: u8, byte: &str| {
        let out = Command::new("tpm2_pcrextend")
            .arg(format!("{pcr}:sha256={}", byte.repeat(32)))
            .env("TPM2TOOLS_TCTI", tpm.tcti())
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    extend(0, "11");
    extend(7, "77");
    std::fs::write(d.join("eventlog.bin"), b"\x00\x01binary event log").unwrap();

    let out = export(&tpm.tcti(), d, "old.json", &["--event-log", "eventlog.bin"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("exported base image hv-8.0 8.0.3-1 (8 PCRs, event log)")
    );
    let old = BaseImage::from_json(&std::fs::read(d.join("old.json")).unwrap()).unwrap();
    let values: Vec<String> = old.pcrs.iter().map(|p| p.sha256.clone()).collect();
    assert_eq!(values, pcrread(&tpm, d, "0,1,2,3,4,5,6,7"));
    assert_eq!(old.pcrs.iter().map(|p| p.index).collect::<Vec<_>>(), (0..8).collect::<Vec<u8>>());
    assert_eq!(old.event_log.as_deref(), Some(hex::encode(b"\x00\x01binary event log").as_str()));

    // An upgraded host boots into other measurements: its description differs where the PCRs do.
    extend(7, "78");
    let out = export(&tpm.tcti(), d, "new.json", &["--pcrs", "0,7,16"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let new = BaseImage::from_json(&std::fs::read(d.join("new.json")).unwrap()).unwrap();
    assert_eq!(new.pcrs.iter().map(|p| p.index).collect::<Vec<_>>(), [0, 7, 16]);
    assert_eq!(new.pcrs[0], old.pcrs[0]);
    assert_ne!(new.pcrs[1].sha256, old.pcrs[7].sha256);
    assert_eq!(new.event_log, None);

    // Refusals: one line, nothing written, an existing file left alone.
    let before = std::fs::read(d.join("old.json")).unwrap();
    one_line_error(&export(&tpm.tcti(), d, "old.json", &[]), "already exists");
    assert_eq!(std::fs::read(d.join("old.json")).unwrap(), before);
    one_line_error(&export(&tpm.tcti(), d, "x.json", &["--pcrs", "7,0"]), "ascending");
    one_line_error(&export(&tpm.tcti(), d, "x.json", &["--pcrs", "24"]), "0 to 23");
    let unnamed = Command::new(SECTORCRYPT)
        .args([
            "host",
            "image-export",
            "--tcti",
            &tpm.tcti(),
            "--name",
            "",
            "--version",
            "1",
            "--to",
            "x.json",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    one_line_error(&unnamed, "name must be 1 to 128");
    one_line_error(
        &export(&tpm.tcti(), d, "x.json", &["--event-log", "missing.bin"]),
        "cannot read the event log",
    );
    one_line_error(&export("bogus:tcti", d, "x.json", &[]), "TPM");
    tpm.stop();
    one_line_error(&export(&tpm.tcti(), d, "x.json", &[]), "nothing answers");
    assert!(!d.join("x.json").exists());
    // --force replaces.
    tpm.restart();
    let out = export(&tpm.tcti(), d, "old.json", &["--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The format's rules, read back: another format, an unknown field, values that are not hex.
    let text = String::from_utf8(before).unwrap();
    for (from, to) in [
        ("sectorcrypt-base-image", "other"),
        ("\"bank\"", "\"extra\": 1, \"bank\""),
        ("\"version\": 1", "\"version\": 2"),
    ] {
        assert!(BaseImage::from_json(text.replacen(from, to, 1).as_bytes()).is_err(), "{from} -> {to}");
    }
    let first_value = &old.pcrs[0].sha256;
    assert!(BaseImage::from_json(text.replacen(first_value.as_str(), "zz", 1).as_bytes()).is_err());
}
