//! `sectorcrypt bench workload` on a tiny matrix: every output (table, JSON, CSV, chart) and the
//! refusal of bad arguments. Speed is not checked here: that is what the benchmark is for.

use std::process::{Command, Output};

fn workload(dir: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
        .args(["bench", "workload", "--block-sizes", "4k,12k", "--read-pct", "0,50", "--threads", "1"])
        .args(["--seconds", "0.05", "--size", "4M", "--dir", dir.to_str().unwrap()])
        .args(extra)
        .env_remove("SECTORCRYPT_BACKEND")
        .env_remove("SECTORCRYPT_IO")
        .output()
        .unwrap()
}

#[test]
fn tiny_matrix_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let (json, csv, chart) = (dir.path().join("w.json"), dir.path().join("w.csv"), dir.path().join("w.svg"));
    let out = workload(
        dir.path(),
        &["--seed", "7", "--json-file", json.to_str().unwrap(), "--csv", csv.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("seed 7"), "{stdout}");
    assert!(stdout.contains("targets:"), "{stdout}");

    let cells: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(cells.len(), 2 * 2 * 3);
    for cell in &cells {
        for field in [
            "config",
            "block_size",
            "read_pct",
            "threads",
            "iops",
            "mbps",
            "read_lat_avg_us",
            "read_lat_p95_us",
            "write_lat_avg_us",
            "write_lat_p95_us",
            "cpu_pct",
            "cpu_change_pct",
            "iops_change_pct",
        ] {
            assert!(cell.get(field).is_some(), "{field} missing in {cell}");
        }
        assert!(cell["iops"].as_f64().unwrap() > 0.0);
        let baseline = cell["config"] == "baseline";
        assert_eq!(cell["cpu_change_pct"].is_null(), baseline);
        assert_eq!(cell["read_lat_avg_us"].is_null(), cell["read_pct"] == 0);
    }
    let configs: Vec<&str> = cells.iter().map(|c| c["config"].as_str().unwrap()).collect();
    assert_eq!(&configs[..3], ["baseline", "vm", "datastore"]);
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(csv_text.starts_with("config,block_size,read_pct,threads,"));
    assert_eq!(csv_text.lines().count(), 1 + cells.len());
    // The benchmark's own files are gone afterwards.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "{left:?}");

    // --json: stdout carries the JSON alone, the table goes to stderr.
    // --threads 0 is one thread per core, as in `raw`: a second thread count next to the 1.
    let out = workload(dir.path(), &["--configs", "baseline,vm", "--json", "--threads", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cells: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cells.len(), 2 * 2 * 2 * 2);
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(cells.iter().any(|c| c["threads"] == cores));
    assert!(String::from_utf8_lossy(&out.stderr).contains("targets:"));
    // An existing report file is refused (and left as it is) unless --force.
    let out = workload(dir.path(), &["--configs", "vm", "--csv", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 1 + 2 * 2 * 3);

    let out = workload(dir.path(), &["--configs", "baseline,vm", "--chart", chart.to_str().unwrap()]);
    if std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let svg = std::fs::read_to_string(&chart).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("CPU per I/O"));
    }
}

#[test]
fn bad_arguments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (extra, needle) in [
        (&["--read-pct", "101"][..], "percentages"),
        (&["--queue-depth", "0"][..], "at least 1"),
        (&["--seconds", "0"][..], "positive"),
        (&["--block-sizes", "64M"][..], "larger than the disk"),
        (&["--chart", "x.gif"][..], ".svg or .png"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
            .args(["bench", "workload", "--quick", "--size", "4M", "--dir", dir.path().to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
    }
}
