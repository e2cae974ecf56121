//! The CLI under the standard key provider (`kmip:CONFIG`) with a real key server (PyKMIP) and a real
//! TPM (swtpm): every command that takes a key provider, and the end-to-end story of key persistence:
//! a disk keeps opening across a key server outage and a host reboot, refuses clearly without
//! persistence, and stops opening (its persisted copy gone) once its key is revoked.

#[path = "../../tests/support/servers.rs"]
mod servers;

use servers::{KmipServer, Swtpm};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the CLI in the directory with `SECTORCRYPT_KEY_PROVIDER=kmip:CONFIG`.
    fn run(&self, config: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sectorcrypt"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .env("SECTORCRYPT_KEY_PROVIDER", format!("kmip:{}", config.display()))
            .env_remove("TSS2_LOG");
        cmd.output().unwrap()
    }

    fn ok(&self, config: &Path, args: &[&str]) -> String {
        let out = self.run(config, args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail with one line on stderr naming `expected`; returns that line.
    fn refused(&self, config: &Path, args: &[&str], expected: &str) -> String {
        let out = self.run(config, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line expected, got:\n{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr:?} does not say {expected:?}");
        stderr
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).unwrap();
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

#[test]
fn every_command_that_takes_a_key_provider_works_with_kmip() {
    let env = Env::new();
    let server = KmipServer::start(&env.path("kms"));
    let config = server.config(env.dir.path(), "kmip.toml", "alice", "");

    let check = env.ok(&config, &["keys", "kmip", "check", config.to_str().unwrap()]);
    assert!(check.contains("KMIP 1.2") && check.contains("PyKMIP"), "{check}");

    // Disks: create, import, write, read, export, shallow rekey.
    let image = pattern(1 << 20, 3);
    env.write("image.raw", &image);
    env.ok(&config, &["disk", "create", "vm.disk", "--size", "1M", "--key-id", "cli-vm-1"]);
    env.ok(&config, &["disk", "import", "vm.disk", "--from", "image.raw"]);
    env.write("patch", &pattern(5000, 9));
    env.ok(&config, &["disk", "write", "vm.disk", "--offset", "4000", "--from", "patch"]);
    env.ok(&config, &["disk", "read", "vm.disk", "--offset", "4000", "--length", "5000", "--to", "part"]);
    assert_eq!(env.read("part"), env.read("patch"));
    let info = env.ok(&config, &["disk", "info", "vm.disk"]);
    assert!(info.contains("kmip:kmip/"), "{info}");
    env.ok(&config, &["disk", "rekey", "vm.disk", "--shallow", "--new-key-id", "cli-vm-2"]);
    env.ok(&config, &["disk", "export", "vm.disk", "--to", "out.raw"]);
    let mut want = image.clone();
    want[4000..9000].copy_from_slice(&env.read("patch"));
    assert_eq!(env.read("out.raw"), want);

    // Groups (datastore mode).
    let members = ["--member", "m0", "--member", "m1"];
    let group =
        |head: &[&str]| -> Vec<String> { head.iter().chain(&members).map(|s| s.to_string()).collect() };
    let run = |args: Vec<String>| env.ok(&config, &args.iter().map(String::as_str).collect::<Vec<_>>());
    run(group(&["group", "create", "--size-per-member", "1M", "--key-id", "cli-ds"]));
    run(group(&["group", "write", "--offset", "0", "--from", "patch"]));
    run(group(&["group", "read", "--offset", "0", "--length", "5000", "--to", "group-part"]));
    assert_eq!(env.read("group-part"), env.read("patch"));

    // Wrapped keys and raw encryption.
    env.ok(&config, &["keys", "new", "--key-id", "cli-raw", "--to", "raw.dek"]);
    env.ok(&config, &["keys", "check", "raw.dek"]);
    env.ok(&config, &["keys", "rewrap", "raw.dek", "--new-key-id", "cli-raw-2"]);
    env.ok(
        &config,
        &[
            "raw",
            "encrypt",
            "--wrapped-key",
            "raw.dek",
            "--data-unit",
            "4096",
            "--from",
            "image.raw",
            "--to",
            "image.xts",
        ],
    );
    env.ok(
        &config,
        &[
            "raw",
            "decrypt",
            "--wrapped-key",
            "raw.dek",
            "--data-unit",
            "4096",
            "--from",
            "image.xts",
            "--to",
            "image.back",
        ],
    );
    assert_eq!(env.read("image.back"), image);

    // A revoked KEK: refused in one line that names its state; nothing written.
    let key_id = info.split("kmip:kmip/").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let rekeyed = env.ok(&config, &["disk", "info", "vm.disk"]);
    let current = rekeyed.split("kmip:kmip/").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert_ne!(key_id, current);
    env.ok(&config, &["keys", "kmip", "revoke", config.to_str().unwrap(), "--key-id", &current]);
    let before = env.read("vm.disk");
    env.refused(&config, &["disk", "write", "vm.disk", "--offset", "0", "--from", "patch"], "Deactivated");
    assert_eq!(env.read("vm.disk"), before);
}

#[test]
fn persistence_carries_a_disk_across_a_key_server_outage_and_a_reboot() {
    let env = Env::new();
    let mut server = KmipServer::start(&env.path("kms"));
    let mut tpm = Swtpm::start(&env.path("tpm"));
    let store = env.path("keys.sealed");
    let persisted = server.config(env.dir.path(), "persisted.toml", "alice", &tpm.persistence(&store));
    let plain = server.config(env.dir.path(), "plain.toml", "alice", "");

    env.ok(&persisted, &["disk", "create", "vm.disk", "--size", "2M"]);
    let data = pattern(1 << 20, 7);
    env.write("data", &data);
    env.ok(&persisted, &["disk", "write", "vm.disk", "--offset", "65536", "--from", "data"]);
    let status = env.ok(&persisted, &["keys", "persistence", "status", persisted.to_str().unwrap()]);
    assert!(status.contains("1 key(s)") && status.contains("TPM unseals"), "{status}");

    // The key server goes down and the host reboots (a new process, a restarted TPM).
    server.stop();
    tpm.stop();
    tpm.restart();
    let out = env
        .run(&persisted, &["disk", "read", "vm.disk", "--offset", "65536", "--length", "1M", "--to", "back"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(env.read("back"), data);
    assert_eq!(stderr.matches("key persistence keeps").count(), 1, "said once: {stderr}");

    // Without persistence the disk does not open, and the error says why.
    let line = env.refused(
        &plain,
        &["disk", "read", "vm.disk", "--offset", "0", "--length", "4096", "--to", "nope"],
        "unreachable",
    );
    assert!(line.contains("persistence is off"), "{line}");
    assert!(!env.path("nope").exists());

    // The key is revoked while the host is away; the server comes back: the disk stops opening and
    // the persisted copy is gone.
    server.restart();
    let info = env.ok(&persisted, &["disk", "info", "vm.disk"]);
    let key_id = info.split("kmip:kmip/").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    env.ok(
        &plain,
        &[
            "keys",
            "kmip",
            "revoke",
            plain.to_str().unwrap(),
            "--key-id",
            &key_id,
            "--reason",
            "key-compromise",
        ],
    );
    server.stop();
    server.restart();
    env.refused(
        &persisted,
        &["disk", "read", "vm.disk", "--offset", "0", "--length", "4096", "--to", "nope"],
        "Compromised",
    );
    let status = env.ok(&persisted, &["keys", "persistence", "status", persisted.to_str().unwrap()]);
    assert!(status.contains("0 key(s)"), "{status}");
    server.stop();
    env.refused(
        &persisted,
        &["disk", "read", "vm.disk", "--offset", "0", "--length", "4096", "--to", "nope"],
        "keeps no copy",
    );

    // `clear` removes the store.
    let cleared = env.ok(&persisted, &["keys", "persistence", "clear", persisted.to_str().unwrap()]);
    assert!(cleared.contains("deleted") && !store.exists(), "{cleared}");
}

#[test]
fn concurrent_processes_persist_every_key() {
    let env = Env::new();
    let server = KmipServer::start(&env.path("kms"));
    let tpm = Swtpm::start(&env.path("tpm"));
    let config =
        server.config(env.dir.path(), "kmip.toml", "alice", &tpm.persistence(&env.path("keys.sealed")));
    let children: Vec<_> = (0..6)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_sectorcrypt"))
                .current_dir(env.dir.path())
                .args([
                    "keys",
                    "new",
                    "--to",
                    &format!("k{i}.dek"),
                    "--key-provider",
                    &format!("kmip:{}", config.display()),
                ])
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let status = env.ok(&config, &["keys", "persistence", "status", config.to_str().unwrap()]);
    assert!(status.contains("6 key(s)"), "{status}");
}

#[test]
fn kmip_configuration_faults_are_one_line_and_write_nothing() {
    let env = Env::new();
    let dead = format!("127.0.0.1:{}", servers::free_port_pair());
    let config = servers::write_config(env.dir.path(), "dead.toml", &[dead], "alice", 500, "");
    env.refused(&config, &["disk", "create", "vm.disk", "--size", "1M"], "unreachable");
    assert!(!env.path("vm.disk").exists());
    env.refused(&config, &["keys", "kmip", "check", config.to_str().unwrap()], "unreachable");
    env.refused(&config, &["keys", "persistence", "status", config.to_str().unwrap()], "persistence is off");
    let missing = env.path("missing.toml");
    env.refused(&missing, &["keys", "new", "--to", "k.dek"], "missing.toml");
    assert!(!env.path("k.dek").exists());
    // The configuration, the certificates and the key are inputs: no command writes over them.
    let before = std::fs::read(&config).unwrap();
    env.refused(&config, &["keys", "new", "--to", config.to_str().unwrap()], "");
    assert_eq!(std::fs::read(&config).unwrap(), before);
}
