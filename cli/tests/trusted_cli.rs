//! The trusted key provider end to end: swtpm instances manufactured with EK certificates are the
//! hosts, PyKMIP is the key server behind the authority, and `sectorcrypt authority serve` runs on
//! loopback. The upgrade flow of vSphere Trust Authority's documents, then each refusal.
//!
//! A host "boots" a base image by starting its TPM afresh and extending PCRs 0-7 with that image's
//! measurements, as firmware and boot loader would.

#[path = "../../tests/support/servers.rs"]
mod servers;

use sectorcrypt::trusted::client::{AuthorityClient, CallError};
use sectorcrypt::trusted::host;
use sectorcrypt::trusted::protocol::{
    AttestChallenge, Enrol, Evidence, KeyChallenge, KeyOp, KeyReply, KeyRequest, RefusalCode, Token,
};
use servers::{Captive, KmipServer, Swtpm, free_port_pair, manufacture, pki, wait_for_port};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sectorcrypt"));
    cmd.stdin(Stdio::null()).env_remove("SECTORCRYPT_KEY_PROVIDER").env_remove("TSS2_LOG");
    cmd
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A command that must fail with one line on stderr saying `expected`.
fn refused(out: Output, expected: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "should fail: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected, got:\n{stderr}");
    assert!(stderr.contains(expected), "{stderr:?} does not say {expected:?}");
    stderr
}

/// A host: its TPM, and the base image it booted.
struct Host {
    name: String,
    tpm: Swtpm,
}

impl Host {
    fn new(dir: &Path, name: &str, ca: &Path) -> Host {
        let state = dir.join(name);
        manufacture(&state, ca);
        Host { name: name.into(), tpm: Swtpm::start(&state) }
    }

    fn tcti(&self) -> String {
        self.tpm.tcti()
    }

    /// Reboots into `image`: a fresh TPM start, then that image's measurements in PCRs 0-7.
    fn boot(&mut self, image: &str) {
        self.tpm.stop();
        self.tpm.restart();
        for pcr in 0..8 {
            let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!("{image} stage {pcr}")));
            let out = Command::new("tpm2_pcrextend")
                .arg(format!("{pcr}:sha256={digest}"))
                .env("TPM2TOOLS_TCTI", self.tcti())
                .output()
                .unwrap();
            assert!(out.status.success(), "tpm2_pcrextend: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// The authority's files, and its replicas (each `sectorcrypt authority serve`, all on one policy).
struct Authority {
    dir: PathBuf,
    replicas: Vec<(u16, Captive)>,
}

impl Authority {
    fn new(dir: &Path, kmip: &Path) -> Authority {
        let dir = dir.join("authority");
        std::fs::create_dir_all(&dir).unwrap();
        let auth = Authority { dir, replicas: Vec::new() };
        auth.write_config("auth.toml", 0, kmip, "");
        ok(
            bin().args(["authority", "init", "--config"]).arg(auth.config("auth.toml")).output().unwrap(),
            "init",
        );
        auth
    }

    fn config(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write_config(&self, name: &str, port: u16, kmip: &Path, extra: &str) -> PathBuf {
        let path = self.config(name);
        std::fs::write(
            &path,
            format!(
                "[authority]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\npolicy = \"policy\"\nkmip = \"{}\"\n{extra}",
                pki().join("server.pem").display(),
                pki().join("server.key").display(),
                kmip.display()
            ),
        )
        .unwrap();
        path
    }

    /// An admin command on the policy.
    fn admin(&self, args: &[&str]) -> Output {
        bin().args(["authority"]).args(args).arg("--config").arg(self.config("auth.toml")).output().unwrap()
    }

    /// Starts a replica with `extra` settings; returns its URL.
    fn start(&mut self, kmip: &Path, extra: &str) -> String {
        let port = free_port_pair();
        let name = format!("replica-{port}.toml");
        let config = self.write_config(&name, port, kmip, extra);
        let log = self.dir.join(format!("replica-{port}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sectorcrypt"));
        cmd.args(["authority", "serve", "--config"]).arg(&config);
        let process = Captive::start(&mut cmd, &log);
        wait_for_port(port, "the authority", &log);
        self.replicas.push((port, process));
        format!("https://127.0.0.1:{port}")
    }

    fn stop_all(&mut self) {
        for (_, mut process) in self.replicas.drain(..) {
            process.stop();
        }
    }
}

/// A host's `trusted:CONFIG` for these authority URLs, with key persistence in the host's TPM.
fn host_config(dir: &Path, host: &Host, urls: &[&str], persist: bool) -> PathBuf {
    let path = dir.join(format!("{}-{}.toml", host.name, if persist { "kept" } else { "plain" }));
    let list: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let persistence = if persist {
        host.tpm.persistence(&dir.join(format!("{}.sealed", host.name)))
    } else {
        String::new()
    };
    std::fs::write(
        &path,
        format!(
            "[trusted]\nauthorities = [{}]\nca = \"{}\"\ntcti = \"{}\"\nname = \"vta\"\ntimeout_ms = 5000\n{persistence}",
            list.join(", "),
            pki().join("ca.pem").display(),
            host.tcti()
        ),
    )
    .unwrap();
    path
}

/// Runs the CLI with `trusted:CONFIG` as its key provider, in `dir`.
fn with(dir: &Path, config: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .env("SECTORCRYPT_KEY_PROVIDER", format!("trusted:{}", config.display()))
        .args(args)
        .output()
        .unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 10) as u8).collect()
}

#[test]
fn the_upgrade_flow_of_the_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let kms = KmipServer::start(&dir.join("kms"));
    let kmip = kms.config(dir, "kmip.toml", "alice", "");
    let ca = dir.join("tpm-ca");
    let (mut h1, mut h2) = (Host::new(dir, "host1", &ca), Host::new(dir, "host2", &ca));
    h1.boot("esxi-8.0");
    h2.boot("esxi-8.0");

    let mut auth = Authority::new(dir, &kmip);
    ok(auth.admin(&["tpm-ca", "import", ca.join("issuercert.pem").to_str().unwrap()]), "tpm-ca import");
    // The image, exported from a test host running it, imported before any host needs it.
    ok(
        bin()
            .args([
                "host",
                "image-export",
                "--tcti",
                &h1.tcti(),
                "--name",
                "esxi",
                "--version",
                "8.0",
                "--to",
            ])
            .arg(dir.join("8.0.json"))
            .output()
            .unwrap(),
        "export",
    );
    let imported = ok(auth.admin(&["image", "import", dir.join("8.0.json").to_str().unwrap()]), "import");
    let old_id = imported.split_whitespace().nth(3).unwrap().to_owned();
    let url = auth.start(&kmip, "");
    let (c1, c2) = (host_config(dir, &h1, &[&url], true), host_config(dir, &h2, &[&url], false));

    // An allowlisted host attests, creates an encrypted disk, writes, reads.
    let image = pattern(1 << 20, 7);
    std::fs::write(dir.join("image.raw"), &image).unwrap();
    let attested = ok(with(dir, &c1, &["host", "attest"]), "attest");
    assert!(attested.contains("esxi 8.0") && attested.contains(&old_id), "{attested}");
    ok(with(dir, &c1, &["disk", "create", "h1.disk", "--size", "1M"]), "create");
    ok(with(dir, &c1, &["disk", "import", "h1.disk", "--from", "image.raw"]), "import");
    ok(with(dir, &c1, &["disk", "export", "h1.disk", "--to", "h1.out"]), "export");
    assert!(std::fs::read(dir.join("h1.out")).unwrap() == image);
    ok(with(dir, &c2, &["disk", "create", "h2.disk", "--size", "1M"]), "create on host2");
    ok(with(dir, &c2, &["disk", "import", "h2.disk", "--from", "image.raw"]), "import on host2");

    // host1 is upgraded: it attests no more, naming the image the authority does not know, and its
    // disk does not open (its persisted key is not used for a refusal), writing nothing.
    h1.boot("esxi-8.0u1");
    let line =
        refused(with(dir, &c1, &["disk", "export", "h1.disk", "--to", "h1.after"]), "not in the policy");
    assert!(line.contains("base image"), "{line}");
    assert!(!dir.join("h1.after").exists());

    // The new image, exported from the upgraded host, imported: host1 reads its disk again.
    ok(
        bin()
            .args([
                "host",
                "image-export",
                "--tcti",
                &h1.tcti(),
                "--name",
                "esxi",
                "--version",
                "8.0u1",
                "--to",
            ])
            .arg(dir.join("8.0u1.json"))
            .output()
            .unwrap(),
        "export 8.0u1",
    );
    let new_id =
        ok(auth.admin(&["image", "import", dir.join("8.0u1.json").to_str().unwrap()]), "import 8.0u1");
    assert!(
        line.contains(new_id.split_whitespace().nth(3).unwrap()),
        "the refusal named {line}, the import {new_id}"
    );
    ok(with(dir, &c1, &["disk", "export", "h1.disk", "--to", "h1.after"]), "export after import");
    assert!(std::fs::read(dir.join("h1.after")).unwrap() == image);
    let list = ok(auth.admin(&["image", "list"]), "list");
    assert!(list.contains("8.0u1") && list.contains(&old_id), "{list}");

    // host2, still on the old image, keeps working until the old image is removed, then fails.
    ok(with(dir, &c2, &["disk", "export", "h2.disk", "--to", "h2.out"]), "host2 before removal");
    ok(auth.admin(&["image", "remove", &old_id]), "remove");
    refused(with(dir, &c2, &["disk", "export", "h2.disk", "--to", "h2.after"]), "not in the policy");
    assert!(!dir.join("h2.after").exists());
    refused(auth.admin(&["image", "remove", &old_id]), "no base image");

    // The authority down: host1's persisted key still serves, with a notice; host2 keeps none.
    auth.stop_all();
    let out = with(dir, &c1, &["disk", "export", "h1.disk", "--to", "h1.offline"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("key persistence") && stderr.contains("no attestation authority answers"),
        "{stderr}"
    );
    assert!(std::fs::read(dir.join("h1.offline")).unwrap() == image);
    h2.boot("esxi-8.0u1");
    refused(
        with(dir, &c2, &["disk", "export", "h2.disk", "--to", "h2.offline"]),
        "no attestation authority answers",
    );
}
