//! `sectorcrypt keys ...` and `raw --wrapped-key`: the happy paths, and every bad input refused with
//! one line on stderr, a non-zero exit and the directory exactly as it was.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sectorcrypt"));
    cmd.current_dir(dir).args(args);
    for var in ["SECTORCRYPT_BACKEND", "SECTORCRYPT_KEY_PROVIDER", "SECTORCRYPT_PASSPHRASE"] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).stdin(std::process::Stdio::null()).output().unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = run_in(dir, args, &[]);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Every file in `dir` with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            (p.clone(), (std::fs::read(&p).unwrap(), mode))
        })
        .collect()
}

/// Runs a command that must fail: exit 1, one line on stderr mentioning `needle`, nothing changed.
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)], needle: &str) {
    let before = snapshot(dir);
    let out = run_in(dir, args, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?} accepted: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: not one line: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr:?} does not mention {needle:?}");
    assert_eq!(snapshot(dir), before, "{args:?} changed the directory");
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["keys", "native", "init", "--kdk", "kdk"]);
    std::fs::write(dir.path().join("pass"), "correct horse battery\n").unwrap();
    dir
}

#[test]
fn native_kdk_life_cycle() {
    let dir = setup();
    let d = dir.path();
    assert_eq!(std::fs::metadata(d.join("kdk")).unwrap().permissions().mode() & 0o777, 0o600);
    let out = ok(d, &["keys", "new", "--key-provider", "native:kdk", "--key-id", "vm-1", "--out", "dek"]);
    assert!(out.contains("/vm-1"), "{out}");
    let info: serde_json::Value = serde_json::from_str(&ok(d, &["keys", "info", "dek", "--json"])).unwrap();
    assert_eq!(info["cipher"], "xts-aes-256");
    assert_eq!(info["key_id"], "vm-1");
    assert_eq!(info["provider_kind"], "native");

    ok(d, &["keys", "native", "backup", "--kdk", "kdk", "--to", "kdk.backup", "--passphrase-file", "pass"]);
    ok(
        d,
        &["keys", "native", "restore", "--from", "kdk.backup", "--kdk", "kdk2", "--passphrase-file", "pass"],
    );
    assert_eq!(std::fs::read(d.join("kdk")).unwrap(), std::fs::read(d.join("kdk2")).unwrap());
    // The restored KDK opens keys made with the original; the provider may also come from the environment.
    let out = run_in(d, &["keys", "check", "dek"], &[("SECTORCRYPT_KEY_PROVIDER", "native:kdk2")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Shallow rekey of the blob: a new KEK reference, the same DEK (same verifier).
    ok(d, &["keys", "rewrap", "dek", "--key-provider", "native:kdk", "--new-key-id", "vm-1-r2"]);
    let after: serde_json::Value = serde_json::from_str(&ok(d, &["keys", "info", "dek", "--json"])).unwrap();
    assert_eq!(after["key_id"], "vm-1-r2");
    assert_eq!(after["verifier"], info["verifier"]);
    ok(d, &["keys", "check", "dek", "--key-provider", "native:kdk"]);
    // Rewrapping under the KEK in use would change nothing: refused, the blob untouched.
    refused(
        d,
        &["keys", "rewrap", "dek", "--key-provider", "native:kdk", "--new-key-id", "vm-1-r2"],
        &[],
        "already wrapped under",
    );

    // A 128-bit DEK.
    ok(d, &["keys", "new", "--key-provider", "native:kdk", "--cipher", "aes-128", "--out", "dek128"]);
    let info: serde_json::Value =
        serde_json::from_str(&ok(d, &["keys", "info", "dek128", "--json"])).unwrap();
    assert_eq!(info["cipher"], "xts-aes-128");
}

#[test]
fn raw_with_a_wrapped_key_round_trips() {
    let dir = setup();
    let d = dir.path();
    ok(d, &["keys", "new", "--key-provider", "native:kdk", "--out", "dek"]);
    let plain = common::pattern(5 * 4096 + 48, 4);
    std::fs::write(d.join("plain"), &plain).unwrap();
    let common_args = ["--wrapped-key", "dek", "--key-provider", "native:kdk", "--data-unit", "4096"];
    let mut args = vec!["raw", "encrypt", "--input", "plain", "--output", "cipher"];
    args.extend(common_args);
    ok(d, &args);
    let cipher = std::fs::read(d.join("cipher")).unwrap();
    assert_eq!(cipher.len(), plain.len());
    assert_ne!(&cipher[..4096], &plain[..4096]);
    let mut args = vec!["raw", "decrypt", "--input", "cipher", "--output", "back"];
    args.extend(common_args);
    ok(d, &args);
    assert_eq!(std::fs::read(d.join("back")).unwrap(), plain);

    // The wrong KDK: opaque refusal, no output.
    ok(d, &["keys", "native", "init", "--kdk", "other"]);
    let mut args = vec!["raw", "decrypt", "--input", "cipher", "--output", "never", "--data-unit", "4096"];
    args.extend(["--wrapped-key", "dek", "--key-provider", "native:other"]);
    refused(d, &args, &[], "was made from another KDK");
    let mut args = vec!["raw", "decrypt", "--input", "cipher", "--output", "never", "--data-unit", "4096"];
    args.extend(["--wrapped-key", "dek"]);
    refused(d, &args, &[], "--wrapped-key needs --key-provider");
}

#[test]
fn bad_key_inputs_are_refused_and_change_nothing() {
    let dir = setup();
    let d = dir.path();
    ok(d, &["keys", "new", "--key-provider", "native:kdk", "--out", "dek"]);
    ok(d, &["keys", "native", "backup", "--kdk", "kdk", "--to", "kdk.backup", "--passphrase-file", "pass"]);
    let blob = std::fs::read(d.join("dek")).unwrap();
    let write = |name: &str, bytes: &[u8], mode: u32| {
        std::fs::write(d.join(name), bytes).unwrap();
        std::fs::set_permissions(d.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("kdk.short", &[7; 31], 0o600);
    write("kdk.open", &[7; 32], 0o644);
    write("wrong-pass", b"incorrect horse battery\n", 0o600);
    write("dek.truncated", &blob[..blob.len() - 1], 0o644);
    let mut future = blob.clone();
    future[4] = 2;
    write("dek.future", &future, 0o644);
    let mut altered = blob.clone();
    let last = altered.len() - 20;
    altered[last] ^= 1;
    write("dek.altered", &altered, 0o644);

    refused(d, &["keys", "native", "init", "--kdk", "kdk"], &[], "refusing to overwrite");
    refused(d, &check("dek", "native:missing"), &[], "cannot open the KDK file");
    refused(d, &check("dek", "native:kdk.short"), &[], "exactly 32 bytes, this one has 31");
    refused(d, &check("dek", "native:kdk.open"), &[], "mode 0644");
    refused(d, &check("dek", "vault:nowhere"), &[], "unknown key provider");
    // kmip: is a provider now; its configuration file must exist.
    refused(d, &check("dek", "kmip:nowhere"), &[], "the configuration file nowhere");
    refused(d, &check("dek.truncated", "native:kdk"), &[], "truncated");
    refused(d, &check("dek.future", "native:kdk"), &[], "format version 2 is newer");
    refused(
        d,
        &check("dek.altered", "native:kdk"),
        &[],
        "wrong key-encryption key, or the wrapped key was altered",
    );
    refused(d, &check("kdk.backup", "native:kdk"), &[], "wrapped-key magic");
    // A missing option is a usage error: one line and exit status 1, like every other error.
    let out = run_in(d, &["keys", "check", "dek"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--key-provider <SPEC>"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    refused(d, &["keys", "rewrap", "dek.altered", "--key-provider", "native:kdk"], &[], "was altered");
    refused(
        d,
        &["keys", "new", "--key-provider", "native:kdk", "--out", "dek"],
        &[],
        "refusing to overwrite",
    );
    refused(
        d,
        &["keys", "new", "--key-provider", "native:kdk", "--key-id", "a/b", "--out", "x"],
        &[],
        "invalid key id",
    );

    refused(d, &restore("wrong-pass", "new-kdk"), &[], "wrong passphrase");
    refused(d, &restore("pass", "kdk"), &[], "refusing to overwrite");
    refused(d, &restore("missing-pass", "new-kdk"), &[], "cannot read the passphrase file");
    let restore_env = ["keys", "native", "restore", "--from", "kdk.backup", "--kdk", "new-kdk"];
    refused(d, &restore_env, &[("SECTORCRYPT_PASSPHRASE", "nope nope nope")], "wrong passphrase");
    refused(d, &restore_env, &[], "no passphrase");
    let backup = ["keys", "native", "backup", "--kdk", "kdk", "--to", "b2"];
    refused(d, &backup, &[("SECTORCRYPT_PASSPHRASE", "short")], "at least 8 characters");
    refused(
        d,
        &["keys", "native", "backup", "--kdk", "kdk", "--to", "kdk.backup"],
        &[],
        "refusing to overwrite",
    );
}

fn check(blob: &'static str, provider: &'static str) -> Vec<&'static str> {
    vec!["keys", "check", blob, "--key-provider", provider]
}

fn restore(passphrase_file: &'static str, kdk: &'static str) -> Vec<&'static str> {
    vec![
        "keys",
        "native",
        "restore",
        "--from",
        "kdk.backup",
        "--kdk",
        kdk,
        "--passphrase-file",
        passphrase_file,
    ]
}
