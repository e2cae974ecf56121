//! `disk rekey --deep`: a new DEK with every unit re-encrypted, shown by `disk info` while it runs,
//! resumed by running it again after `kill -9` at random moments (50 of them), with reads, writes and a
//! shallow rekey working on the disk in between and the data intact at the end.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SECTORCRYPT: &str = env!("CARGO_BIN_EXE_sectorcrypt");

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env { dir: tempfile::tempdir().unwrap() };
        env.ok(&["keys", "native", "init", "--kdk", "kdk"]);
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SECTORCRYPT);
        cmd.current_dir(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .env("SECTORCRYPT_KEY_PROVIDER", "native:kdk")
            .env_remove("SECTORCRYPT_BACKEND");
        cmd
    }

    /// The CLI started with `args` and left running, its output discarded (to be killed).
    fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn info(&self, disk: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["disk", "info", disk, "--json"])).unwrap()
    }
}

fn export(env: &Env, disk: &str) -> Vec<u8> {
    let out = env.path("export.raw");
    let _ = std::fs::remove_file(&out);
    env.ok(&["disk", "export", disk, "--to", out.to_str().unwrap()]);
    std::fs::read(out).unwrap()
}

fn create_with_data(env: &Env, size: usize) -> Vec<u8> {
    env.ok(&["disk", "create", "vm.disk", "--size", &size.to_string(), "--key-id", "first"]);
    // Data in the first 7/8, the rest never written (it must stay unwritten: zeros, no space).
    let mut image = common::pattern(size, 5);
    image[size / 8 * 7..].fill(0);
    std::fs::write(env.path("image.raw"), &image[..size / 8 * 7]).unwrap();
    env.ok(&["disk", "import", "vm.disk", "--from", "image.raw"]);
    image
}

#[test]
fn a_deep_rekey_gives_a_new_key_and_keeps_the_data() {
    let env = Env::new();
    let image = create_with_data(&env, 8 << 20);
    let before = env.info("vm.disk");
    let out = env.ok(&["disk", "rekey", "vm.disk", "--deep", "--new-key-id", "second", "--chunk", "1M"]);
    assert!(out.contains("deep rekey finished"), "{out}");
    let after = env.info("vm.disk");
    assert_eq!(after["generation"], 2);
    assert!(after["key_ref"].as_str().unwrap().ends_with("/second"));
    assert_ne!(after["dek_verifier"], before["dek_verifier"]);
    assert!(after.get("reencryption").is_none());
    assert_eq!(after["format_version"], 1);
    assert!(export(&env, "vm.disk") == image);
    // Unwritten units stay unwritten (the disk takes no more space than before, give or take).
    assert!(after["allocated"].as_u64().unwrap() <= before["allocated"].as_u64().unwrap() + (64 << 10));
}

#[test]
fn kill_9_at_random_moments_then_rerun_resumes_and_loses_nothing() {
    let env = Env::new();
    let mut image = create_with_data(&env, 48 << 20);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut kills, mut in_progress_seen) = (0, 0);
    while kills < 50 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut child = env.spawn(&["disk", "rekey", "vm.disk", "--deep", "--chunk", "2M"]);
        std::thread::sleep(Duration::from_micros(2_000 + (seed >> 40) % 150_000));
        let killed = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        if killed {
            kills += 1;
        }
        // Between runs: info shows where it stands; reads work on the half-rekeyed disk.
        let info = env.info("vm.disk");
        if let Some(record) = info.get("reencryption") {
            in_progress_seen += 1;
            assert_eq!(info["format_version"], 2);
            assert!(record["position"].as_u64().unwrap() <= record["total"].as_u64().unwrap());
        }
        if kills % 10 == 0 {
            let part = env.path("part");
            let _ = std::fs::remove_file(&part);
            let offset = (seed >> 20) as usize % (40 << 20);
            let args = ["disk", "read", "vm.disk", "--offset", &offset.to_string(), "--length", "100000"];
            env.ok(&[&args[..], &["--to", part.to_str().unwrap()]].concat());
            assert!(std::fs::read(&part).unwrap() == image[offset..offset + 100_000], "kill {kills}");
            // Writes too, wherever the rekey stands.
            let patch = common::pattern(5000, seed);
            std::fs::write(env.path("patch"), &patch).unwrap();
            let at = (seed >> 8) as usize % (40 << 20);
            env.ok(&["disk", "write", "vm.disk", "--offset", &at.to_string(), "--from", "patch"]);
            image[at..at + patch.len()].copy_from_slice(&patch);
        }
    }
    assert!(in_progress_seen > 0, "no kill landed in the middle of a rekey");
    // Every other command works mid-rekey: a shallow rekey rewraps both keys.
    if env.info("vm.disk").get("reencryption").is_some() {
        env.ok(&["disk", "rekey", "vm.disk", "--shallow", "--new-key-id", "shallow-mid"]);
        let info = env.info("vm.disk");
        assert!(info["key_ref"].as_str().unwrap().ends_with("/shallow-mid"));
        assert!(info["reencryption"]["new_key_ref"].as_str().unwrap().ends_with("/shallow-mid"));
    }
    env.ok(&["disk", "rekey", "vm.disk", "--deep", "--chunk", "2M"]);
    assert!(env.info("vm.disk").get("reencryption").is_none());
    assert!(export(&env, "vm.disk") == image);
}

#[test]
fn a_group_deep_rekey_survives_kills_and_leaves_every_member_in_step() {
    let env = Env::new();
    let members = ["--member", "m0", "--member", "m1", "--member", "m2"];
    let with =
        |head: &[&str]| -> Vec<String> { head.iter().chain(&members).map(|s| s.to_string()).collect() };
    let run = |args: Vec<String>| env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run(with(&["group", "create", "--size-per-member", "8M", "--key-id", "ds"]));
    let image = common::pattern(20 << 20, 3);
    std::fs::write(env.path("image.raw"), &image).unwrap();
    run(with(&["group", "import", "--from", "image.raw"]));
    let mut seed = 77u64;
    for _ in 0..10 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let args = with(&["group", "rekey", "--deep", "--chunk", "1M"]);
        let mut child = env.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_micros(2_000 + (seed >> 40) % 60_000));
        let _ = child.kill();
        let _ = child.wait();
    }
    run(with(&["group", "rekey", "--deep"]));
    let info: serde_json::Value = serde_json::from_str(&run(with(&["group", "info", "--json"]))).unwrap();
    let list = info["members"].as_array().unwrap();
    for member in list {
        assert!(member.get("reencryption").is_none(), "{member}");
        assert_eq!(member["key_ref"], list[0]["key_ref"]);
        assert_eq!(member["generation"], list[0]["generation"]);
    }
    assert!(list[0]["generation"].as_u64().unwrap() >= 2);
    let out = env.path("group.raw");
    run(with(&["group", "export", "--to", out.to_str().unwrap()]));
    assert!(std::fs::read(out).unwrap()[..image.len()] == image[..]);
}

#[test]
fn repair_mid_rekey_keeps_the_rekey_and_a_rerun_finishes_it() {
    let env = Env::new();
    let image = create_with_data(&env, 48 << 20);
    // Stop a rekey part-way (kill -9 until one is caught in the middle).
    let mut delay = 3_000u64;
    while env.info("vm.disk").get("reencryption").is_none() {
        let mut child = env.spawn(&["disk", "rekey", "vm.disk", "--deep", "--chunk", "1M"]);
        std::thread::sleep(Duration::from_micros(delay));
        let _ = child.kill();
        let _ = child.wait();
        delay = (delay * 3 / 2).min(200_000);
    }
    // Damage the header copy that is not current: repair rewrites it from the current one, and the
    // disk stays mid-rekey (format 2).
    let copies = env.info("vm.disk")["header_copies"].clone();
    let sequence = |slot: usize| copies[slot]["sequence"].as_u64().unwrap_or(0);
    let other = if sequence(0) > sequence(1) { 1 } else { 0 };
    let disk = env.path("vm.disk");
    let mut bytes = std::fs::read(&disk).unwrap();
    bytes[other * 65536 + 100] ^= 0xff;
    std::fs::write(&disk, &bytes).unwrap();
    assert!(env.info("vm.disk")["header_copies"][other]["problem"].as_str().unwrap().contains("damaged"));
    env.ok(&["disk", "repair", "vm.disk"]);
    let info = env.info("vm.disk");
    assert!(info["header_copies"][other]["problem"].is_null(), "{info}");
    assert_eq!(info["format_version"], 2);
    assert!(info.get("reencryption").is_some());
    let out = env.ok(&["disk", "rekey", "vm.disk", "--deep"]);
    assert!(out.contains("resumed"), "{out}");
    assert!(export(&env, "vm.disk") == image);
}
