//! The nbdkit filter (`filters/nbdkit/`) with real tools: nbdkit serves a sectorcrypt disk through the
//! filter on a Unix socket in a temporary directory (captive mode, `--run`, so nbdkit stops with the
//! client), and nbdcopy, qemu-img and qemu-io read and write it; the CLI checks what landed on disk.
//! Each nbdkit runs in its own process group and is killed with it if it outlives its time.
//!
//! Needs nbdkit, nbdkit-plugin-dev, libnbd-bin (nbdcopy) and qemu-utils: `.ci/deps` installs them.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SECTORCRYPT: &str = env!("CARGO_BIN_EXE_sectorcrypt");
const MIB: usize = 1 << 20;

/// Builds the filter once per test run (`make -C filters/nbdkit`, which builds the C ABI first).
fn filter() -> &'static Path {
    static FILTER: OnceLock<PathBuf> = OnceLock::new();
    FILTER.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters/nbdkit");
        let out = Command::new("make").arg("-C").arg(&dir).output().expect("make runs");
        assert!(
            out.status.success(),
            "make -C filters/nbdkit failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("nbdkit-sectorcrypt-filter.so")
    })
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?} cannot start: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A temporary directory with a KDK and a 64 MiB disk made by the CLI.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup { dir };
        run_ok(Command::new(SECTORCRYPT).args(["keys", "native", "init", "--kdk"]).arg(setup.path("kdk")));
        run_ok(
            Command::new(SECTORCRYPT)
                .args(["disk", "create", "--size", "64M", "--key-provider", &setup.provider()])
                .arg(setup.path("vm1.disk")),
        );
        setup
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn provider(&self) -> String {
        format!("native:{}", self.path("kdk").display())
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// nbdkit serving `disk` through the filter with `key-provider=provider`, running `run` (a shell
    /// command; `$uri` is the export) as its captive client, in the temporary directory.
    fn nbdkit(&self, disk: &str, provider: Option<&str>, run: &str) -> Output {
        self.nbdkit_with(&[], disk, provider, &[], run)
    }

    /// [`Setup::nbdkit`] with more options for nbdkit (`options`: `-v`, filters under ours) and more
    /// parameters (`extra`).
    fn nbdkit_with(
        &self,
        options: &[&str],
        disk: &str,
        provider: Option<&str>,
        extra: &[&str],
        run: &str,
    ) -> Output {
        let mut cmd = Command::new("nbdkit");
        cmd.args(["-U", "-", "--exit-with-parent"]).arg(format!("--filter={}", filter().display()));
        cmd.args(options).args(["file", disk]);
        if let Some(provider) = provider {
            cmd.arg(format!("key-provider={provider}"));
        }
        cmd.args(extra);
        cmd.args(["--run", run]).current_dir(self.dir.path()).stdin(Stdio::null()).process_group(0);
        captive(cmd, Duration::from_secs(120))
    }

    /// The disk's plaintext through the CLI.
    fn read_back(&self, offset: usize, len: usize) -> Vec<u8> {
        let out = self.path("readback.bin");
        let _ = std::fs::remove_file(&out);
        run_ok(
            Command::new(SECTORCRYPT)
                .args(["disk", "read", "--offset", &offset.to_string(), "--length", &len.to_string()])
                .args(["--key-provider", &self.provider(), "--to"])
                .arg(&out)
                .arg(self.path("vm1.disk")),
        );
        std::fs::read(out).unwrap()
    }
}

/// Runs `cmd` (its own process group) to the end, or kills the whole group after `limit`.
fn captive(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nbdkit runs (apt-get install nbdkit; .ci/deps installs it)");
    let group = child.id().to_string();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    let start = Instant::now();
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            let _ = Command::new("kill").args(["-KILL", &format!("-{group}")]).status();
            panic!("nbdkit ran past {limit:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap().unwrap()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nbdcopy_writes_what_the_cli_reads_and_reads_what_the_cli_wrote() {
    let setup = Setup::new();
    let image = common::pattern(64 * MIB, 1);
    setup.write_file("raw.img", &image);
    let out = setup.nbdkit("vm1.disk", Some(&setup.provider()), r#"nbdcopy raw.img "$uri""#);
    assert_ok(&out, "nbdcopy into the export");
    assert!(setup.read_back(0, 64 * MIB) == image, "the CLI reads other bytes than nbdcopy wrote");
    // The file holds ciphertext, not the image.
    let raw = std::fs::read(setup.path("vm1.disk")).unwrap();
    assert!(raw[MIB..2 * MIB] != image[..MIB]);

    // The other way: the CLI writes, nbdcopy reads.
    let patch = common::pattern(3 * MIB + 4321, 2);
    let patch_file = setup.write_file("patch.bin", &patch);
    run_ok(
        Command::new(SECTORCRYPT)
            .args(["disk", "write", "--offset", "777", "--key-provider", &setup.provider(), "--from"])
            .arg(&patch_file)
            .arg(setup.path("vm1.disk")),
    );
    let out = setup.nbdkit("vm1.disk", Some(&setup.provider()), r#"nbdcopy "$uri" out.img"#);
    assert_ok(&out, "nbdcopy out of the export");
    let mut expected = image;
    expected[777..777 + patch.len()].copy_from_slice(&patch);
    assert!(std::fs::read(setup.path("out.img")).unwrap() == expected, "nbdcopy read other bytes");
}

#[test]
fn qemu_img_converts_and_compares_against_the_export() {
    let setup = Setup::new();
    setup.write_file("raw.img", &common::pattern(64 * MIB, 3));
    let run = r#"qemu-img convert -n -f raw -O raw raw.img "$uri" && qemu-img compare -f raw -F raw raw.img "$uri""#;
    let out = setup.nbdkit("vm1.disk", Some(&setup.provider()), run);
    assert_ok(&out, "qemu-img convert + compare");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Images are identical"));
    // A changed byte is seen as a difference.
    let mut other = common::pattern(64 * MIB, 3);
    other[5 * MIB + 3] ^= 1;
    setup.write_file("other.img", &other);
    let out = setup.nbdkit(
        "vm1.disk",
        Some(&setup.provider()),
        r#"qemu-img compare -f raw -F raw other.img "$uri""#,
    );
    assert!(!out.status.success(), "qemu-img compare missed a changed byte");
}

/// Random unaligned reads, writes (some with FUA), zeroes and trims from qemu-io, against a model of
/// the disk.
#[test]
fn qemu_io_random_reads_and_writes_match_a_model() {
    let setup = Setup::new();
    let size = 64 * MIB;
    let mut model = vec![0u8; size];
    let mut state = 0x5eed_u64;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let mut commands = Vec::new();
    for i in 0..60 {
        let len = 1 + next(70_000);
        let offset = next(size - len);
        let pattern = (i * 37 + 1) as u8;
        let fua = if i % 5 == 0 { "-f " } else { "" };
        if i % 7 == 3 {
            // Zeroing and trimming both read back as zeros through the filter.
            let how = if i % 2 == 0 { "write -z" } else { "discard" };
            commands.push(format!("{how} {offset} {len}"));
            model[offset..offset + len].fill(0);
        } else {
            commands.push(format!("write {fua}-P {pattern} {offset} {len}"));
            model[offset..offset + len].fill(pattern);
        }
        if i % 10 == 9 {
            commands.push("flush".into());
        }
        // Read back a random range that overlaps this write, checking it against the model.
        let probe = offset.saturating_sub(next(5000));
        let probe_len = (len + next(10_000)).min(size - probe);
        if model[probe..probe + probe_len].iter().all(|&b| b == model[probe]) {
            commands.push(format!("read -P {} {probe} {probe_len}", model[probe]));
        }
    }
    let script = commands.iter().map(|c| format!("-c '{c}'")).collect::<Vec<_>>().join(" ");
    let out =
        setup.nbdkit("vm1.disk", Some(&setup.provider()), &format!(r#"qemu-io -f raw "$uri" {script}"#));
    assert_ok(&out, "qemu-io");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("failed"), "qemu-io saw other bytes than it wrote:\n{stdout}");
    assert!(setup.read_back(0, size) == model, "the disk holds other bytes than the model");
}

/// Two clients at once, each writing its own half with unaligned requests, then each reading the
/// other's half.
#[test]
fn two_clients_at_once() {
    let setup = Setup::new();
    let half = 32 * MIB;
    let (a, b) = (common::pattern(half, 4), common::pattern(half, 5));
    setup.write_file("a.img", &a);
    setup.write_file("b.img", &b);
    // nbdcopy with several connections and requests in flight, next to qemu-io writing in odd pieces.
    let run = format!(
        r#"nbdcopy --connections=2 --requests=8 a.img "$uri" & \
           qemu-io -f raw "$uri" -c 'write -P 7 {half} 1000001' -c 'write -P 9 {at} 3333' & wait && \
           qemu-io -f raw "$uri" -c 'read -P 7 {half} 1000001' -c 'read -P 9 {at} 3333' -c 'read -P 0 {after} 4096'"#,
        at = half + 1000001,
        after = half + 1000001 + 3333,
    );
    let out = setup.nbdkit("vm1.disk", Some(&setup.provider()), &run);
    assert_ok(&out, "two clients");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("failed"));
    assert!(setup.read_back(0, half) == a, "the first client's half differs");
    let mut second = vec![0u8; half];
    second[..1000001].fill(7);
    second[1000001..1000001 + 3333].fill(9);
    assert!(setup.read_back(half, half) == second, "the second client's half differs");
}

/// A client trying to write fails, nbdkit says why in one line (each time it refuses: at start, or
/// at each connection), and the disk file is unchanged.
fn assert_refused(setup: &Setup, disk: &str, provider: Option<&str>, cause: &str) {
    let before = std::fs::read(setup.path(disk)).unwrap();
    let out = setup.nbdkit(disk, provider, r#"nbdcopy raw.img "$uri""#);
    assert!(!out.status.success(), "nbdkit served {disk} with {provider:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("sectorcrypt:")).collect();
    assert!(!ours.is_empty(), "the filter said nothing:\n{stderr}");
    for line in ours {
        assert!(line.contains(cause), "{line:?} does not say {cause:?}");
    }
    assert!(std::fs::read(setup.path(disk)).unwrap() == before, "a refused start changed {disk}");
}

#[test]
fn refusals_name_the_cause_and_write_nothing() {
    let setup = Setup::new();
    setup.write_file("raw.img", &common::pattern(MIB, 6));
    run_ok(Command::new(SECTORCRYPT).args(["keys", "native", "init", "--kdk"]).arg(setup.path("other-kdk")));
    let other = format!("native:{}", setup.path("other-kdk").display());
    assert_refused(&setup, "vm1.disk", Some(&other), "another KDK");
    let missing = format!("native:{}", setup.path("no-such-kdk").display());
    assert_refused(&setup, "vm1.disk", Some(&missing), "cannot open the KDK");
    assert_refused(&setup, "vm1.disk", None, "key-provider=SPEC is required");
    setup.write_file("zeros.img", &vec![0u8; 4 * MIB]);
    assert_refused(&setup, "zeros.img", Some(&setup.provider()), "not a sectorcrypt disk");
    // Both header copies damaged (copy 0 at byte 0, copy 1 at 64 KiB).
    let mut disk = std::fs::read(setup.path("vm1.disk")).unwrap();
    for at in [100, 64 * 1024 + 100] {
        disk[at] ^= 0xff;
    }
    std::fs::write(setup.path("damaged.disk"), &disk).unwrap();
    assert_refused(&setup, "damaged.disk", Some(&setup.provider()), "damaged");
}

/// `deep-rekey=on`: the filter re-encrypts the disk to a new data key in the background while a client
/// keeps writing and reading it. Under the delay filter (each read of the file 100 ms, so the rekey
/// takes seconds), the client ends first and nbdkit stops the rekey on its way out: the disk is left in
/// the middle of it. The next nbdkit with `deep-rekey=on` resumes and finishes it, and every byte the
/// client wrote is there. Bad combinations of the parameters are refused, writing nothing.
#[test]
fn deep_rekey_on_runs_beside_a_client_stops_with_nbdkit_and_resumes() {
    let setup = Setup::new();
    let size = 64 * MIB;
    let mut model = common::pattern(size, 12);
    setup.write_file("fill.img", &model);
    run_ok(
        Command::new(SECTORCRYPT)
            .args([
                "disk",
                "write",
                "--offset",
                "0",
                "--from",
                "fill.img",
                "--key-provider",
                &setup.provider(),
            ])
            .arg("vm1.disk")
            .current_dir(setup.dir.path()),
    );
    let info = || -> serde_json::Value {
        let out =
            run_ok(Command::new(SECTORCRYPT).args(["disk", "info", "--json"]).arg(setup.path("vm1.disk")));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = info();
    let client = r#"qemu-io -f raw "$uri" -c 'write -P 7 1000 5000' -c 'read -P 7 1000 5000'                     -c 'write -P 9 40000000 70000' -c 'read -P 9 40000000 70000'"#;
    let out = setup.nbdkit_with(
        &["-v", "--filter=delay"],
        "vm1.disk",
        Some(&setup.provider()),
        &["deep-rekey=on", "new-key-id=after-rekey", "delay-read=100ms"],
        client,
    );
    assert_ok(&out, "a client beside a deep rekey");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("failed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    model[1000..6000].fill(7);
    model[40_000_000..40_070_000].fill(9);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("deep rekey stopped with nbdkit"), "{stderr}");
    let stopped = info();
    assert!(stopped["reencryption"].is_object(), "no rekey in progress: {stopped}");
    assert!(setup.read_back(0, size) == model, "the disk holds other bytes mid-rekey");
    // nbdkit -r serves the disk mid-rekey as it is, writing nothing.
    let image = std::fs::read(setup.path("vm1.disk")).unwrap();
    let out =
        setup.nbdkit_with(&["-r"], "vm1.disk", Some(&setup.provider()), &[], r#"nbdcopy "$uri" out.img"#);
    assert_ok(&out, "nbdkit -r mid-rekey");
    assert!(std::fs::read(setup.path("out.img")).unwrap() == model, "nbdkit -r serves other bytes mid-rekey");
    assert!(std::fs::read(setup.path("vm1.disk")).unwrap() == image, "nbdkit -r wrote to the disk");
    // Resumed (when the first client connects) and finished: the client waits until the header says so.
    let wait = format!(
        r#"qemu-io -f raw "$uri" -c 'read -P 7 1000 5000' >/dev/null || exit 1; for i in $(seq 300); do {SECTORCRYPT} disk info --json vm1.disk | grep -q '"generation":{}' && exit 0; sleep 0.1; done; exit 1"#,
        before["generation"].as_u64().unwrap() + 1
    );
    let out = setup.nbdkit_with(&["-v"], "vm1.disk", Some(&setup.provider()), &["deep-rekey=on"], &wait);
    assert_ok(&out, "a resumed deep rekey");
    assert!(String::from_utf8_lossy(&out.stderr).contains("deep rekey finished"));
    let after = info();
    assert!(after["reencryption"].is_null(), "{after}");
    assert_ne!(after["dek_verifier"], before["dek_verifier"]);
    assert!(after["key_ref"].as_str().unwrap().ends_with("/after-rekey"), "{after}");
    assert!(setup.read_back(0, size) == model, "the disk holds other bytes after the rekey");
    // Refused before anything is served or written.
    let image = std::fs::read(setup.path("vm1.disk")).unwrap();
    for (options, extra, cause) in [
        (&[][..], &["new-key-id=x"][..], "new-key-id=ID needs deep-rekey=on"),
        (&[], &["deep-rekey=maybe"], "deep-rekey=maybe: expected on or off"),
        (&["-r"], &["deep-rekey=on"], "deep-rekey=on needs a writable export"),
    ] {
        let run = r#"qemu-io -r -f raw "$uri" -c 'read 0 4096'"#;
        let out = setup.nbdkit_with(options, "vm1.disk", Some(&setup.provider()), extra, run);
        assert!(!out.status.success(), "{extra:?} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(cause),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(std::fs::read(setup.path("vm1.disk")).unwrap() == image);
}

/// `format=luks`: a LUKS1 image made by qemu-img and a LUKS2 image made by cryptsetup (4 KiB sectors),
/// written through the filter with nbdcopy and read back by `sectorcrypt luks export`, then read out
/// through the filter; a wrong passphrase refuses the connection and writes nothing.
#[test]
fn luks_volumes_through_the_filter() {
    let setup = Setup::new();
    let d = setup.dir.path();
    std::fs::write(d.join("passphrase"), "filter passphrase\n").unwrap();
    std::fs::write(d.join("secret"), "filter passphrase").unwrap();
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "luks", "--object", "secret,id=s0,file=secret"])
            .args(["-o", "key-secret=s0,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,iter-time=10"])
            .args(["luks1.img", "32M"])
            .current_dir(d),
    );
    std::fs::File::create(d.join("luks2.img")).unwrap().set_len(48 << 20).unwrap();
    run_ok(
        Command::new("cryptsetup")
            .args(["luksFormat", "--batch-mode", "--type", "luks2", "--sector-size", "4096"])
            .args([
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--key-file",
                "secret",
                "luks2.img",
            ])
            .current_dir(d),
    );
    let image = common::pattern(32 * MIB, 8);
    setup.write_file("raw.img", &image);
    for name in ["luks1.img", "luks2.img"] {
        let luks = |run: &str| {
            let mut cmd = Command::new("nbdkit");
            cmd.args(["-U", "-", "--exit-with-parent"])
                .arg(format!("--filter={}", filter().display()))
                .args(["file", name, "format=luks", "passphrase-file=passphrase", "--run", run])
                .current_dir(d)
                .stdin(Stdio::null())
                .process_group(0);
            captive(cmd, Duration::from_secs(120))
        };
        assert_ok(&luks(r#"nbdcopy raw.img "$uri""#), "nbdcopy into a LUKS export");
        let out = d.join(format!("{name}.export"));
        run_ok(
            Command::new(SECTORCRYPT)
                .args(["luks", "export", name, "--passphrase-file", "secret", "--to"])
                .arg(&out)
                .current_dir(d),
        );
        assert!(std::fs::read(&out).unwrap()[..32 * MIB] == image[..], "{name}: luks export differs");
        assert_ok(&luks(r#"nbdcopy "$uri" back.img"#), "nbdcopy out of a LUKS export");
        assert!(
            std::fs::read(d.join("back.img")).unwrap()[..32 * MIB] == image[..],
            "{name}: read back differs"
        );
        std::fs::remove_file(d.join("back.img")).unwrap();
    }
    std::fs::write(d.join("wrong"), "nope").unwrap();
    let before = std::fs::read(d.join("luks2.img")).unwrap();
    let mut cmd = Command::new("nbdkit");
    cmd.args(["-U", "-", "--exit-with-parent"])
        .arg(format!("--filter={}", filter().display()))
        .args([
            "file",
            "luks2.img",
            "format=luks",
            "passphrase-file=wrong",
            "--run",
            r#"nbdcopy raw.img "$uri""#,
        ])
        .current_dir(d)
        .stdin(Stdio::null())
        .process_group(0);
    let out = captive(cmd, Duration::from_secs(120));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no keyslot opens with this passphrase"));
    assert!(std::fs::read(d.join("luks2.img")).unwrap() == before, "a refused LUKS export changed the image");
}
