//! `sectorcrypt disk ...` and `sectorcrypt group ...`: the sessions from the README, and every fault
//! refused with one line on stderr, exit 1 and every file byte-identical afterwards.

#[path = "../../tests/common/mod.rs"]
mod common;

use sectorcrypt::disk::{EncryptedDisk, OpenOptions};
use sectorcrypt::keys::NativeProvider;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;

const MIB: usize = 1 << 20;

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

    fn run(&self, args: &[&str], provider: Option<&str>) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sectorcrypt"));
        cmd.current_dir(self.dir.path()).args(args).stdin(std::process::Stdio::null());
        for var in ["SECTORCRYPT_BACKEND", "SECTORCRYPT_PASSPHRASE", "SECTORCRYPT_IO"] {
            cmd.env_remove(var);
        }
        match provider {
            Some(spec) => cmd.env("SECTORCRYPT_KEY_PROVIDER", spec),
            None => cmd.env_remove("SECTORCRYPT_KEY_PROVIDER"),
        };
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, Some("native:kdk"));
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Every file in the directory and its bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect()
    }

    /// A command that must fail: exit 1, one line on stderr mentioning `needle`, no file changed.
    fn refused_with(&self, args: &[&str], provider: Option<&str>, needle: &str) {
        let before = self.snapshot();
        let out = self.run(args, provider);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} accepted: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: not one line: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr:?} does not mention {needle:?}");
        assert!(self.snapshot() == before, "{args:?} changed a file");
    }

    fn refused(&self, args: &[&str], needle: &str) {
        self.refused_with(args, Some("native:kdk"), needle);
    }

    fn write_file(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).unwrap();
    }

    fn corrupt(&self, name: &str, at: u64) {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(self.path(name)).unwrap();
        file.write_all_at(b"\xde\xad\xbe\xef", at).unwrap();
    }
}

fn members<'a>(names: &[&'a str]) -> Vec<&'a str> {
    names.iter().flat_map(|n| ["--member", n]).collect()
}

fn args<'a>(head: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter().chain(tail).copied().collect()
}

#[test]
fn vm_session() {
    let env = Env::new();
    env.ok(&["disk", "create", "vm.disk", "--size", "8M", "--key-id", "vm-1"]);
    let info = env.json(&["disk", "info", "vm.disk", "--json"]);
    assert_eq!(info["mode"], "vm");
    assert_eq!(info["cipher"], "xts-aes-256");
    assert_eq!(info["data_unit"], 4096);
    assert_eq!(info["data_size"], 8 * MIB);
    assert_eq!(info["generation"], 1);
    assert!(info["key_ref"].as_str().unwrap().ends_with("/vm-1"));
    assert_eq!(info["header_copies"][0]["state"], "ok");
    assert_eq!(info["header_copies"][1]["state"], "ok");

    let image = common::pattern(5 * MIB + 123, 11);
    env.write_file("image.raw", &image);
    env.ok(&["disk", "import", "vm.disk", "--from", "image.raw"]);
    let patch = common::pattern(10_000, 12);
    env.write_file("patch", &patch);
    env.ok(&["disk", "write", "vm.disk", "--offset", "777", "--from", "patch"]);
    env.ok(&["disk", "read", "vm.disk", "--offset", "700", "--length", "20000", "--to", "part"]);
    let mut expected = image.clone();
    expected.resize(8 * MIB, 0);
    let fresh = std::fs::read(env.path("part")).unwrap();
    expected[777..10_777].copy_from_slice(&patch);
    assert!(fresh == expected[700..20_700]);
    env.ok(&["disk", "export", "vm.disk", "--to", "out.raw"]);
    let out = std::fs::read(env.path("out.raw")).unwrap();
    assert_eq!(out.len(), 8 * MIB);
    assert!(out[..5 * MIB + 123] == expected[..5 * MIB + 123]);

    // Both I/O engines and no O_DIRECT give the same bytes.
    for extra in [["--io", "sync"], ["--io", "uring"], ["--no-direct", "--io=auto"]] {
        env.ok(&args(
            &["disk", "read", "vm.disk", "--offset", "700", "--length", "20000", "--to", "again", "--force"],
            &extra,
        ));
        assert!(std::fs::read(env.path("again")).unwrap() == fresh);
    }

    // Shallow rekey: new KEK reference, generation 2, data untouched and readable.
    let data_before = std::fs::read(env.path("vm.disk")).unwrap()[MIB..].to_vec();
    env.ok(&["disk", "rekey", "vm.disk", "--shallow", "--new-key-id", "vm-2"]);
    let info2 = env.json(&["disk", "info", "vm.disk", "--json"]);
    assert!(info2["key_ref"].as_str().unwrap().ends_with("/vm-2"));
    assert_eq!(info2["generation"], 2);
    assert_eq!(info2["dek_verifier"], info["dek_verifier"]);
    assert!(std::fs::read(env.path("vm.disk")).unwrap()[MIB..] == data_before[..]);
    env.ok(&["disk", "export", "vm.disk", "--to", "out2.raw"]);
    assert!(std::fs::read(env.path("out2.raw")).unwrap() == out);
}

#[test]
fn datastore_session() {
    let env = Env::new();
    let m = members(&["m0", "m1", "m2"]);
    env.ok(&args(&["group", "create", "--size-per-member", "4M", "--stripe", "256K"], &m));
    let info = env.json(&args(&["group", "info", "--json"], &m));
    let list = info["members"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let group_uuid = &list[0]["group"]["uuid"];
    for (i, member) in list.iter().enumerate() {
        assert_eq!(member["mode"], "datastore");
        assert_eq!(&member["group"]["uuid"], group_uuid);
        assert_eq!(member["group"]["member_index"], i);
        assert_eq!(member["key_ref"], list[0]["key_ref"]);
    }
    let image = common::pattern(12 * MIB, 21);
    env.write_file("image.raw", &image);
    env.ok(&args(&["group", "import", "--from", "image.raw"], &m));
    // Members in another order.
    let shuffled = members(&["m2", "m0", "m1"]);
    env.ok(&args(&["group", "export", "--to", "out.raw"], &shuffled));
    assert!(std::fs::read(env.path("out.raw")).unwrap() == image);
    env.ok(&args(&["group", "read", "--offset", "1000000", "--length", "300000", "--to", "part"], &m));
    assert!(std::fs::read(env.path("part")).unwrap() == image[1_000_000..1_300_000]);

    env.ok(&args(&["group", "rekey", "--shallow", "--new-key-id", "ds-2"], &m));
    let info = env.json(&args(&["group", "info", "--json"], &m));
    for member in info["members"].as_array().unwrap() {
        assert!(member["key_ref"].as_str().unwrap().ends_with("/ds-2"));
        assert_eq!(member["generation"], 2);
    }
    env.ok(&args(&["group", "export", "--to", "out2.raw"], &m));
    assert!(std::fs::read(env.path("out2.raw")).unwrap() == image);
}

#[test]
fn data_at_rest_is_ciphertext_and_decrypts_with_raw() {
    let env = Env::new();
    env.ok(&["disk", "create", "vm.disk", "--size", "2M", "--data-unit", "512"]);
    let marker = b"KNOWN-PLAINTEXT-MARKER-0123456789";
    let plain: Vec<u8> = marker.iter().copied().cycle().take(2 * MIB).collect();
    env.write_file("plain", &plain);
    env.ok(&["disk", "write", "vm.disk", "--offset", "0", "--from", "plain"]);
    let disk = std::fs::read(env.path("vm.disk")).unwrap();
    assert!(!disk.windows(marker.len()).any(|w| w == marker), "plaintext found at rest");

    // Interop: the data area decrypts with `raw decrypt` and the dumped DEK (unit numbers from 0).
    env.refused(&["disk", "dump-key", "vm.disk"], "--i-know-what-i-am-doing");
    let key = env.ok(&["disk", "dump-key", "vm.disk", "--i-know-what-i-am-doing"]);
    env.write_file("area", &disk[MIB..]);
    let key = key.trim();
    env.ok(&["raw", "decrypt", "--key", key, "--data-unit", "512", "--input", "area", "--output", "back"]);
    assert!(std::fs::read(env.path("back")).unwrap() == plain);
}

#[test]
fn header_damage_is_survived_reported_and_repaired() {
    let env = Env::new();
    env.ok(&["disk", "create", "vm.disk", "--size", "1M", "--key-id", "vm-1"]);
    env.write_file("data", &common::pattern(MIB, 3));
    env.ok(&["disk", "write", "vm.disk", "--offset", "0", "--from", "data"]);

    // Primary copy damaged: opens from the other copy; info says which; repair rewrites it.
    env.corrupt("vm.disk", 200);
    let info = env.json(&["disk", "info", "vm.disk", "--json"]);
    assert_eq!(info["header_copies"][0]["state"], "damaged");
    assert_eq!(info["header_copies"][1]["state"], "ok");
    env.ok(&["disk", "read", "vm.disk", "--offset", "0", "--length", "1M", "--to", "back"]);
    assert!(std::fs::read(env.path("back")).unwrap() == common::pattern(MIB, 3));
    let out = env.ok(&["disk", "repair", "vm.disk"]);
    assert!(out.contains("rewrote header copy 0"), "{out}");
    let info = env.json(&["disk", "info", "vm.disk", "--json"]);
    assert_eq!(info["header_copies"][0]["state"], "ok");
    assert!(env.ok(&["disk", "repair", "vm.disk"]).contains("nothing to repair"));

    // The second copy damaged, then both.
    env.corrupt("vm.disk", 64 * 1024 + 300);
    assert_eq!(env.json(&["disk", "info", "vm.disk", "--json"])["header_copies"][1]["state"], "damaged");
    env.corrupt("vm.disk", 300);
    for cmd in [
        vec!["disk", "info", "vm.disk"],
        vec!["disk", "read", "vm.disk", "--offset", "0", "--length", "10", "--to", "x"],
        vec!["disk", "repair", "vm.disk"],
    ] {
        env.refused(&cmd, "both header copies are damaged");
    }
    env.write_file("junk", &[0u8; 2 * MIB]);
    env.refused(&["disk", "info", "junk"], "not a sectorcrypt disk");
}

#[test]
fn faults_are_refused_and_change_nothing() {
    let env = Env::new();
    env.ok(&["disk", "create", "vm.disk", "--size", "1M", "--key-id", "vm-1"]);
    env.write_file("small", &[5u8; 1000]);
    env.write_file("big", &vec![5u8; 2 * MIB]);
    env.ok(&["keys", "native", "init", "--kdk", "other"]);

    // Wrong or unavailable KEK.
    let read = ["disk", "read", "vm.disk", "--offset", "0", "--length", "10", "--to", "x"];
    env.refused_with(&read, Some("native:other"), "was made from another KDK");
    env.refused_with(&read, Some("native:missing"), "cannot open the KDK file");
    // Offsets beyond the end, and an image larger than the disk.
    env.refused(
        &["disk", "read", "vm.disk", "--offset", "1048570", "--length", "10", "--to", "x"],
        "past the end",
    );
    env.refused(&["disk", "write", "vm.disk", "--offset", "1048000", "--from", "small"], "past the end");
    env.refused(&["disk", "import", "vm.disk", "--from", "big"], "larger than the disk");
    // Create over an existing file, bad sizes.
    env.refused(&["disk", "create", "vm.disk", "--size", "1M"], "already exists");
    env.refused(&["disk", "create", "new.disk", "--size", "1000"], "multiple of the data unit");
    env.refused(&["disk", "create", "new.disk", "--size", "1M", "--data-unit", "1000"], "data-unit size");
    let m = members(&["g0", "g1"]);
    env.refused(&args(&["group", "create", "--size-per-member", "1M", "--stripe", "3K"], &m), "stripe");
    // Hazmat and unimplemented things need to be asked for explicitly.
    // A shallow rekey is the default kind; rekeying to the key id in use would change nothing.
    env.refused(&["disk", "rekey", "vm.disk", "--new-key-id", "vm-1"], "already wrapped under native:");
    // A second writer.
    let provider = NativeProvider::open(env.path("kdk")).unwrap();
    let options = OpenOptions { writable: true, ..OpenOptions::default() };
    let held = EncryptedDisk::open(&env.path("vm.disk"), &provider, options).unwrap();
    env.refused(
        &["disk", "write", "vm.disk", "--offset", "0", "--from", "small"],
        "open for writing by another process",
    );
    env.refused(&["disk", "rekey", "vm.disk", "--shallow"], "open for writing by another process");
    drop(held);
    // A truncated disk file.
    let full = std::fs::read(env.path("vm.disk")).unwrap();
    env.write_file("cut.disk", &full[..full.len() - 4096]);
    env.refused(&["disk", "read", "cut.disk", "--offset", "0", "--length", "10", "--to", "x"], "truncated");
    // A datastore member given to `disk`, and the other way round.
    env.ok(&args(&["group", "create", "--size-per-member", "1M"], &m));
    env.refused(
        &["disk", "read", "g0", "--offset", "0", "--length", "10", "--to", "x"],
        "datastore-mode disk",
    );
    env.refused(&args(&["group", "export", "--to", "x"], &members(&["vm.disk"])), "vm-mode disk");
}

#[test]
fn group_membership_faults() {
    let env = Env::new();
    let m = members(&["a0", "a1", "a2"]);
    env.ok(&args(&["group", "create", "--size-per-member", "1M"], &m));
    env.ok(&args(&["group", "create", "--size-per-member", "1M"], &members(&["b0", "b1", "b2"])));
    let export = |names: &[&'static str]| args(&["group", "export", "--to", "x"], &members(names));
    env.refused(&export(&["a0", "a2"]), "missing");
    env.refused(&export(&["a0", "a1"]), "the group has 3 members, 2 given");
    env.refused(&export(&["a0", "a1", "b2"]), "belongs to group");
    env.refused(&export(&["a0", "a1", "a1"]), "given twice");

    // An interrupted rekey (one member still at the old generation): refused until `group repair`.
    let a1_before = std::fs::read(env.path("a1")).unwrap();
    env.ok(&args(&["group", "rekey", "--shallow", "--new-key-id", "next"], &m));
    std::fs::write(env.path("a1"), &a1_before).unwrap();
    env.refused(&export(&["a0", "a1", "a2"]), "run `group repair`");
    let out = env.ok(&args(&["group", "repair"], &m));
    assert!(out.contains("key generation 1 -> 2"), "{out}");
    env.ok(&export(&["a0", "a1", "a2"]));
    let info = env.json(&args(&["group", "info", "--json"], &m));
    assert!(
        info["members"].as_array().unwrap().iter().all(|m| m["key_ref"].as_str().unwrap().ends_with("/next"))
    );
}

#[test]
fn disk_files_are_untouched_by_reads() {
    let env = Env::new();
    env.ok(&["disk", "create", "vm.disk", "--size", "1M", "--key-id", "vm-1"]);
    let before = std::fs::read(env.path("vm.disk")).unwrap();
    env.ok(&["disk", "export", "vm.disk", "--to", "x"]);
    env.ok(&["disk", "info", "vm.disk"]);
    assert!(std::fs::read(env.path("vm.disk")).unwrap() == before);
}

/// Runs a command with `stdin` bytes fed to it; returns its output.
fn run_with_stdin(env: &Env, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
        .current_dir(env.dir.path())
        .args(args)
        .env("SECTORCRYPT_KEY_PROVIDER", "native:kdk")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Waits at most `seconds` for a child; kills it and fails the test if it hangs.
fn finishes_within(mut child: std::process::Child, seconds: u64, what: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn outputs_never_replace_inputs_devices_or_existing_files() {
    let env = Env::new();
    env.ok(&["disk", "create", "vm.disk", "--size", "1M"]);
    env.write_file("data", &common::pattern(MIB, 5));
    env.ok(&["disk", "import", "vm.disk", "--from", "data"]);
    // The disk itself, the KDK, a hard link to the disk, a symlink to the KDK: refused, even with --force.
    std::fs::hard_link(env.path("vm.disk"), env.path("vm.link")).unwrap();
    std::os::unix::fs::symlink("kdk", env.path("kdk.link")).unwrap();
    for to in ["vm.disk", "kdk", "vm.link", "kdk.link"] {
        env.refused(&["disk", "export", "vm.disk", "--to", to, "--force"], "an input of this command");
    }
    fn read(to: &str) -> [&str; 9] {
        ["disk", "read", "vm.disk", "--offset", "0", "--length", "4096", "--to", to]
    }
    env.refused(&read("kdk"), "an input of this command");
    // An existing regular file: refused without --force, replaced whole with it.
    env.write_file("old", b"keep me");
    env.refused(&read("old"), "already exists");
    env.ok(&[&read("old")[..], &["--force"]].concat());
    assert!(std::fs::read(env.path("old")).unwrap() == common::pattern(MIB, 5)[..4096]);
    // Plaintext output is for its owner only.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(env.path("old")).unwrap().permissions().mode() & 0o777, 0o600);
    // A character device is written through and stays a device.
    env.ok(&read("/dev/null"));
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // `-` is standard output; the report goes to stderr so stdout holds only the data.
    let out = env.run(&["disk", "export", "vm.disk", "--to", "-"], Some("native:kdk"));
    assert!(out.status.success());
    assert!(out.stdout == common::pattern(MIB, 5));
    // A FIFO is written through, not replaced.
    let fifo = env.path("pipe");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
    let reader = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::read(fifo).unwrap()
    });
    env.ok(&read("pipe"));
    assert!(reader.join().unwrap() == common::pattern(MIB, 5)[..4096]);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // No temporary file is left anywhere.
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".sectorcrypt"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn standard_input_streams_in() {
    let env = Env::new();
    env.ok(&["disk", "create", "vm.disk", "--size", "1M"]);
    let data = common::pattern(300_000, 8);
    let out = run_with_stdin(&env, &["disk", "import", "vm.disk", "--from", "-"], &data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run_with_stdin(&env, &["disk", "write", "vm.disk", "--offset", "5", "--from", "-"], b"hello");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.run(
        &["disk", "read", "vm.disk", "--offset", "0", "--length", "300000", "--to", "-"],
        Some("native:kdk"),
    );
    let mut expected = data.clone();
    expected[5..10].copy_from_slice(b"hello");
    assert!(out.stdout == expected);
    // A stream longer than the disk stops with an error.
    let out =
        run_with_stdin(&env, &["disk", "write", "vm.disk", "--offset", "1048000", "--from", "-"], &[1; 1000]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn fifos_and_endless_files_are_refused_without_hanging() {
    let env = Env::new();
    let fifo = env.path("fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
    let spawn = |args: &[&str], provider: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
            .current_dir(env.dir.path())
            .args(args)
            .env("SECTORCRYPT_KEY_PROVIDER", provider)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    for (args, provider) in [
        (&["disk", "info", "fifo"][..], "native:kdk"),
        (&["keys", "new", "--to", "blob"][..], "native:fifo"),
        (&["keys", "info", "fifo"][..], "native:kdk"),
        (&["keys", "info", "/dev/zero"][..], "native:kdk"),
        (
            &[
                "keys",
                "native",
                "restore",
                "--from",
                "/dev/zero",
                "--kdk",
                "k2",
                "--passphrase-file",
                "/dev/zero",
            ][..],
            "native:kdk",
        ),
        (
            &["keys", "native", "backup", "--kdk", "kdk", "--to", "b", "--passphrase-file", "/dev/zero"][..],
            "native:kdk",
        ),
    ] {
        let status = finishes_within(spawn(args, provider), 20, &format!("{args:?}"));
        assert_eq!(status.code(), Some(1), "{args:?}");
    }
}

#[test]
fn sizes_and_numbers_that_would_overflow_or_panic_are_refused() {
    let env = Env::new();
    let members = members(&["a", "b", "c", "d"]);
    env.refused(&args(&["group", "create", "--size-per-member", "4194304T"], &members), "too large");
    env.refused(&["demo", "--size-mib", "18446744073709551615"], "--size-mib");
    env.refused(&["bench", "cipher", "--seconds", "nan"], "--seconds");
    env.refused(&["disk", "create", "x.disk", "--size", "16385P"], "too large");
    env.ok(&["disk", "create", "half.disk", "--size", "1.5M"]);
    assert_eq!(env.json(&["disk", "info", "half.disk", "--json"])["data_size"], 3 * MIB / 2);
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let env = Env::new();
    env.ok(&["group", "create", "--size-per-member", "1M", "--member", "g0", "--member", "g1"]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
        .current_dir(env.dir.path())
        .args(["group", "info", "--member", "g0", "--member", "g1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(101), "panicked");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    // Members are given as a disk is, or with --member, or both.
    let positional = env.json(&["group", "info", "g0", "--member", "g1", "--json"]);
    assert_eq!(positional["group"]["members_given"], 2);
    // `group info` on a VM-mode disk is refused, as `group read` is.
    env.ok(&["disk", "create", "vm.disk", "--size", "1M"]);
    env.refused(&["group", "info", "--member", "vm.disk"], "use `sectorcrypt disk info`");
}

#[test]
fn a_damaged_primary_header_warns_once_and_names_repair() {
    let env = Env::new();
    env.ok(&["disk", "create", "vm.disk", "--size", "1M"]);
    env.corrupt("vm.disk", 100);
    let out = env.run(
        &["disk", "read", "vm.disk", "--offset", "0", "--length", "10", "--to", "-"],
        Some("native:kdk"),
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().filter(|l| l.contains("warning")).count(), 1, "{stderr}");
    assert!(stderr.contains("header copy 0") && stderr.contains("repair"), "{stderr}");
}

#[test]
fn unwritten_and_discarded_units_read_as_zeros_and_free_space() {
    let env = Env::new();
    env.ok(&["disk", "create", "vm.disk", "--size", "8M"]);
    let info = env.json(&["disk", "info", "vm.disk", "--json"]);
    let empty = info["allocated"].as_u64().unwrap();
    assert!(empty < MIB as u64 + 256 * 1024, "created sparse: {empty} bytes allocated");
    let read_all = || {
        env.run(
            &["disk", "read", "vm.disk", "--offset", "0", "--length", "8M", "--to", "-"],
            Some("native:kdk"),
        )
        .stdout
    };
    assert!(read_all().iter().all(|&b| b == 0), "a new disk reads as zeros");
    // Zeros written are encrypted (not mistaken for unwritten units) and read back as zeros.
    env.write_file("zeros", &vec![0; MIB]);
    env.ok(&["disk", "write", "vm.disk", "--offset", "0", "--from", "zeros"]);
    let at_rest = std::fs::read(env.path("vm.disk")).unwrap();
    assert!(at_rest[MIB..2 * MIB].chunks(4096).all(|u| u.iter().any(|&b| b != 0)));
    env.write_file("data", &common::pattern(4 * MIB, 9));
    env.ok(&["disk", "write", "vm.disk", "--offset", "1M", "--from", "data"]);
    let full = env.json(&["disk", "info", "vm.disk", "--json"])["allocated"].as_u64().unwrap();
    assert!(full >= empty + 5 * MIB as u64);
    // Discard 1M+100 .. 3M+100: whole units inside are freed, the partial ends become zeros.
    env.ok(&["disk", "discard", "vm.disk", "--offset", "1048676", "--length", "2M"]);
    let after = env.json(&["disk", "info", "vm.disk", "--json"])["allocated"].as_u64().unwrap();
    assert!(after <= full - 2 * MIB as u64 + 8192, "{after} vs {full}");
    let mut expected = vec![0u8; 8 * MIB];
    expected[MIB..5 * MIB].copy_from_slice(&common::pattern(4 * MIB, 9));
    expected[MIB + 100..3 * MIB + 100].fill(0);
    assert!(read_all() == expected);
}

#[test]
fn killed_commands_leave_no_plaintext_and_no_core_dump_limit_is_open() {
    let env = Env::new();
    env.write_file("big", &common::pattern(64 * MIB, 4));
    let key = "00112233445566778899aabbccddeeff0f1e2d3c4b5a69788796a5b4c3d2e1f0";
    for delay_ms in [5, 40, 120] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
            .current_dir(env.dir.path())
            .args(["raw", "decrypt", "--key", key, "--data-unit", "4096", "--from", "big", "--to", "plain"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let names: Vec<String> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "big" && n != "kdk" && n != "plain")
            .collect();
        assert!(names.is_empty(), "left behind after kill -9 at {delay_ms} ms: {names:?}");
        let _ = std::fs::remove_file(env.path("plain"));
    }
    // A running command has core dumps off: its limit is zero.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
        .current_dir(env.dir.path())
        .args(["raw", "encrypt", "--key", key, "--data-unit", "4096", "--from", "-", "--to", "out"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let limits_path = format!("/proc/{}/limits", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut core_line = String::new();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let limits = std::fs::read_to_string(&limits_path).unwrap_or_default();
        core_line =
            limits.lines().find(|l| l.starts_with("Max core file size")).unwrap_or_default().to_owned();
        if core_line.split_whitespace().nth(4) == Some("0") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let fields: Vec<&str> = core_line.split_whitespace().collect();
    assert_eq!(fields.get(4..6), Some(&["0", "0"][..]), "{core_line}");
}

#[test]
fn a_block_device_output_needs_confirmation() {
    let env = Env::new();
    env.ok(&["disk", "create", "vm.disk", "--size", "1M"]);
    // A block device node of our own (loop device 7:250, which nothing attaches here), so nothing
    // real can be written even if the refusal failed.
    let node = env.path("blockdev");
    let made = rustix::fs::mknodat(
        rustix::fs::CWD,
        &node,
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(7, 250),
    );
    if made.is_err() {
        return; // not root: no device node can be made
    }
    env.refused(&["disk", "export", "vm.disk", "--to", "blockdev"], "add --batch");
}
