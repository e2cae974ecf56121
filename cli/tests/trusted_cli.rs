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

/// One test's world: a key server; hosts manufactured by the test's TPM CA (and `foreign` more by a CA
/// of their own), booted into esxi 8.0; an authority that trusts the test's CA and knows that image,
/// exported from the first host. Nothing served yet.
struct Site {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    _kms: KmipServer,
    kmip: PathBuf,
    ca: PathBuf,
    auth: Authority,
    hosts: Vec<Host>,
    image: String,
}

impl Site {
    fn new(trusted: usize, foreign: usize) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let kms = KmipServer::start(&dir.join("kms"));
        let kmip = kms.config(&dir, "kmip.toml", "alice", "");
        let ca = dir.join("tpm-ca");
        let mut hosts = Vec::new();
        for i in 0..trusted + foreign {
            let issuer = if i < trusted { ca.clone() } else { dir.join("foreign-ca") };
            let mut host = Host::new(&dir, &format!("host{}", i + 1), &issuer);
            host.boot("esxi-8.0");
            hosts.push(host);
        }
        let auth = Authority::new(&dir, &kmip);
        ok(auth.admin(&["tpm-ca", "import", ca.join("issuercert.pem").to_str().unwrap()]), "tpm-ca import");
        let mut site = Site { _tmp: tmp, dir, _kms: kms, kmip, ca, auth, hosts, image: String::new() };
        let file = site.export(0, "8.0");
        site.image = site.import(&file);
        site
    }

    /// `host image-export` of what host `host` booted, as esxi `version`.
    fn export(&self, host: usize, version: &str) -> PathBuf {
        let file = self.dir.join(format!("{version}.json"));
        let tcti = self.hosts[host].tcti();
        let args = ["host", "image-export", "--tcti", &tcti, "--name", "esxi", "--version", version, "--to"];
        ok(bin().args(args).arg(&file).output().unwrap(), "image-export");
        file
    }

    /// `authority image import`: the new image's id.
    fn import(&self, file: &Path) -> String {
        let out = ok(self.auth.admin(&["image", "import", file.to_str().unwrap()]), "image import");
        out.split_whitespace().nth(3).unwrap().to_owned()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 10) as u8).collect()
}

#[test]
fn the_upgrade_flow_of_the_documents() {
    let mut site = Site::new(2, 0);
    let dir_buf = site.dir.clone();
    let dir: &Path = &dir_buf;
    let old_id = site.image.clone();
    let url = site.auth.start(&site.kmip, "");
    let (c1, c2) =
        (host_config(dir, &site.hosts[0], &[&url], true), host_config(dir, &site.hosts[1], &[&url], false));

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
    site.hosts[0].boot("esxi-8.0u1");
    let line =
        refused(with(dir, &c1, &["disk", "export", "h1.disk", "--to", "h1.after"]), "not in the policy");
    assert!(line.contains("base image"), "{line}");
    assert!(!dir.join("h1.after").exists());

    // The new image, exported from the upgraded host, imported: host1 reads its disk again.
    let new_id = site.import(&site.export(0, "8.0u1"));
    assert!(line.contains(&new_id), "the refusal named {line}, the import {new_id}");
    ok(with(dir, &c1, &["disk", "export", "h1.disk", "--to", "h1.after"]), "export after import");
    assert!(std::fs::read(dir.join("h1.after")).unwrap() == image);
    let list = ok(site.auth.admin(&["image", "list"]), "list");
    assert!(list.contains("8.0u1") && list.contains(&old_id), "{list}");

    // host2, still on the old image, keeps working until the old image is removed, then fails.
    ok(with(dir, &c2, &["disk", "export", "h2.disk", "--to", "h2.out"]), "host2 before removal");
    let r2 = Raw::new(&[&url], &site.hosts[1]);
    let token = r2.attest(0);
    r2.key(0, &token.token, KeyOp::Create { name: None }).unwrap();
    ok(site.auth.admin(&["image", "remove", &old_id]), "remove");
    refused(with(dir, &c2, &["disk", "export", "h2.disk", "--to", "h2.after"]), "not in the policy");
    // At once, even for a token already out.
    assert_eq!(code(r2.key(0, &token.token, KeyOp::Create { name: None })), RefusalCode::UnknownImage);
    assert!(!dir.join("h2.after").exists());
    refused(site.auth.admin(&["image", "remove", &old_id]), "no base image");

    // The authority down: host1's persisted key still serves, with a notice; host2 keeps none.
    site.auth.stop_all();
    let out = with(dir, &c1, &["disk", "export", "h1.disk", "--to", "h1.offline"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("key persistence") && stderr.contains("no attestation authority answers"),
        "{stderr}"
    );
    assert!(std::fs::read(dir.join("h1.offline")).unwrap() == image);
    site.hosts[1].boot("esxi-8.0u1");
    refused(
        with(dir, &c2, &["disk", "export", "h2.disk", "--to", "h2.offline"]),
        "no attestation authority answers",
    );
}

/// The protocol driven step by step, as a host would, to replay and tamper with it.
struct Raw {
    client: AuthorityClient,
    tcti: String,
    ak: host::AttestationKey,
}

impl Raw {
    fn new(urls: &[&str], host: &Host) -> Raw {
        let ca = std::fs::read(pki().join("ca.pem")).unwrap();
        let client =
            AuthorityClient::new(urls.iter().map(|u| u.to_string()).collect(), &ca, Duration::from_secs(5))
                .unwrap();
        Raw { client, tcti: host.tcti(), ak: host::create_ak(&host.tcti()).unwrap() }
    }

    fn enrol(&self, certificate: bool) -> Enrol {
        let identity = host::identity(&self.tcti).unwrap();
        let ek_certificate = if certificate { identity.ek_certificate } else { Vec::new() };
        Enrol { ek_public: identity.ek_public, ek_certificate, ak_public: self.ak.public.clone() }
    }

    fn evidence(&self, challenge: &str, nonce: &[u8], pcrs: &[u8]) -> Evidence {
        let quote = host::quote(&self.tcti, &self.ak, nonce, pcrs).unwrap();
        Evidence {
            challenge: challenge.into(),
            ak_public: self.ak.public.clone(),
            attest: quote.attest,
            signature: quote.signature,
            pcr_values: quote.pcrs.iter().map(|(_, v)| hex::encode(v)).collect(),
        }
    }

    /// The first step and the evidence answering it (not sent).
    fn answer(&self, replica: usize) -> Evidence {
        let challenge: AttestChallenge =
            self.client.post(replica, "/v1/attest/challenge", &self.enrol(true)).unwrap();
        let nonce =
            host::activate(&self.tcti, &self.ak, &challenge.id_object, &challenge.encrypted_secret).unwrap();
        self.evidence(&challenge.challenge, &nonce, &challenge.pcrs)
    }

    fn attest(&self, replica: usize) -> Token {
        self.client.post(replica, "/v1/attest", &self.answer(replica)).unwrap()
    }

    /// A key request with `token`, quoted by this host over a fresh nonce from `replica`.
    fn key_request(&self, replica: usize, token: &str, op: KeyOp) -> KeyRequest {
        let challenge: KeyChallenge =
            self.client.post(replica, "/v1/keys/challenge", &serde_json::json!({})).unwrap();
        let evidence = self.evidence(&challenge.challenge, &challenge.nonce, &challenge.pcrs);
        KeyRequest { token: token.into(), evidence, key: op }
    }

    fn key(&self, replica: usize, token: &str, op: KeyOp) -> Result<KeyReply, CallError> {
        let request = self.key_request(replica, token, op);
        self.client.post(replica, "/v1/keys", &request)
    }
}

/// The refusal's code (and its message, which must be one line).
fn code<T: std::fmt::Debug>(result: Result<T, CallError>) -> RefusalCode {
    match result {
        Err(CallError::Refused(refusal)) => {
            assert!(!refusal.message.contains('\n') && !refusal.message.is_empty(), "{refusal:?}");
            refusal.code
        }
        other => panic!("a refusal was expected, got {other:?}"),
    }
}

/// A token's header and claims, JSON, and its signature.
fn parts(token: &str) -> (serde_json::Value, serde_json::Value, String) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut it = token.split('.');
    let header = serde_json::from_slice(&b64.decode(it.next().unwrap()).unwrap()).unwrap();
    let claims = serde_json::from_slice(&b64.decode(it.next().unwrap()).unwrap()).unwrap();
    (header, claims, it.next().unwrap().to_owned())
}

fn join(header: &serde_json::Value, claims: &serde_json::Value, signature: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.{signature}", b64.encode(header.to_string()), b64.encode(claims.to_string()))
}

#[test]
fn every_refusal_is_one_clear_line_and_gets_nothing() {
    let mut site = Site::new(2, 1);
    let dir_buf = site.dir.clone();
    let dir: &Path = &dir_buf;
    let issuer = site.ca.join("issuercert.pem");
    refused(site.auth.admin(&["tpm-ca", "import", issuer.to_str().unwrap()]), "trusted already");
    refused(
        site.auth.admin(&["tpm-ca", "import", pki().join("server.pem").to_str().unwrap()]),
        "not a CA certificate",
    );
    refused(
        site.auth.admin(&["image", "import", dir.join("8.0.json").to_str().unwrap()]),
        "imported already",
    );
    let a = site.auth.start(&site.kmip, "");
    // A second replica on the same policy, with short-lived tokens and challenges.
    let b = site.auth.start(&site.kmip, "token_seconds = 2\nchallenge_seconds = 1\n");

    // An EK certified by a foreign CA: refused, until the admin lists that EK.
    let c3 = host_config(dir, &site.hosts[2], &[&a], false);
    refused(with(dir, &c3, &["host", "attest"]), "not signed by a trusted TPM CA");
    refused(with(dir, &c3, &["disk", "create", "h3.disk", "--size", "1M"]), "not signed by a trusted TPM CA");
    assert!(!dir.join("h3.disk").exists());
    ok(site.auth.admin(&["ek", "import", "--from-host", "--tcti", &site.hosts[2].tcti()]), "ek import");
    refused(
        site.auth.admin(&["ek", "import", "--from-host", "--tcti", &site.hosts[2].tcti()]),
        "trusted already",
    );
    ok(with(dir, &c3, &["host", "attest"]), "attest once listed");
    // An EK without a certificate and not listed.
    let r1 = Raw::new(&[&a, &b], &site.hosts[0]);
    let bare: Result<AttestChallenge, _> = r1.client.post(0, "/v1/attest/challenge", &r1.enrol(false));
    assert_eq!(code(bare), RefusalCode::UntrustedEk);

    // Nonces: an answer is accepted once, at the replica that asked, while fresh.
    let evidence = r1.answer(0);
    let token: Token = r1.client.post(0, "/v1/attest", &evidence).unwrap();
    assert_eq!(code(r1.client.post::<_, Token>(0, "/v1/attest", &evidence)), RefusalCode::UnknownChallenge);
    let elsewhere = r1.answer(0);
    assert_eq!(code(r1.client.post::<_, Token>(1, "/v1/attest", &elsewhere)), RefusalCode::UnknownChallenge);
    let stale = r1.answer(1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(code(r1.client.post::<_, Token>(1, "/v1/attest", &stale)), RefusalCode::StaleChallenge);
    // A quote over another nonce than the one sealed to the TPM.
    let challenge: AttestChallenge = r1.client.post(0, "/v1/attest/challenge", &r1.enrol(true)).unwrap();
    let wrong = r1.evidence(&challenge.challenge, &[7; 32], &challenge.pcrs);
    assert_eq!(code(r1.client.post::<_, Token>(0, "/v1/attest", &wrong)), RefusalCode::BadQuote);

    // Keys: a token from one replica is honoured by the other; a key request is answered once.
    let created = r1.key(1, &token.token, KeyOp::Create { name: Some("vm-1".into()) }).unwrap();
    let again = r1.key(0, &token.token, KeyOp::Get { id: created.id.clone() }).unwrap();
    assert_eq!(again.key, created.key);
    let request = r1.key_request(0, &token.token, KeyOp::Get { id: created.id.clone() });
    r1.client.post::<_, KeyReply>(0, "/v1/keys", &request).unwrap();
    assert_eq!(code(r1.client.post::<_, KeyReply>(0, "/v1/keys", &request)), RefusalCode::UnknownChallenge);
    assert_eq!(
        code(r1.key(0, &token.token, KeyOp::Get { id: "no-such-key".into() })),
        RefusalCode::KeyNotFound
    );

    // A token from another host: useless without that host's TPM.
    let r2 = Raw::new(&[&a], &site.hosts[1]);
    let token2 = r2.attest(0);
    assert_eq!(code(r1.key(0, &token2.token, KeyOp::Get { id: created.id.clone() })), RefusalCode::OtherHost);
    // ... even presenting the other host's AK, since the quote must verify under it.
    let mut stolen = r1.key_request(0, &token2.token, KeyOp::Get { id: created.id.clone() });
    stolen.evidence.ak_public = r2.ak.public.clone();
    assert_eq!(code(r1.client.post::<_, KeyReply>(0, "/v1/keys", &stolen)), RefusalCode::BadQuote);

    // Forged, altered and expired tokens; `alg` pinned to ES256.
    let get = || KeyOp::Get { id: created.id.clone() };
    let (header, claims, signature) = parts(&token.token);
    let mut longer = claims.clone();
    longer["exp"] = serde_json::json!(claims["exp"].as_u64().unwrap() + 86_400);
    assert_eq!(code(r1.key(0, &join(&header, &longer, &signature), get())), RefusalCode::BadToken);
    let mut other_ak = claims.clone();
    other_ak["ak"] = serde_json::json!(parts(&token2.token).1["ak"]);
    assert_eq!(code(r1.key(0, &join(&header, &other_ak, &signature), get())), RefusalCode::BadToken);
    let none = serde_json::json!({"alg": "none", "typ": "JWT"});
    assert_eq!(code(r1.key(0, &join(&none, &claims, ""), get())), RefusalCode::BadToken);
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"guessed"),
    )
    .unwrap();
    assert_eq!(code(r1.key(0, &hs256, get())), RefusalCode::BadToken);
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let mut forged_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    forged_header.kid = header["kid"].as_str().map(str::to_owned);
    let forged = jsonwebtoken::encode(
        &forged_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
    .unwrap();
    assert_eq!(code(r1.key(0, &forged, get())), RefusalCode::BadToken);
    assert_eq!(code(r1.key(0, "not a token", get())), RefusalCode::BadToken);
    let short = r1.attest(1);
    assert_eq!(short.expires_in, 2);
    std::thread::sleep(Duration::from_millis(3100));
    assert_eq!(code(r1.key(0, &short.token, get())), RefusalCode::ExpiredToken);

    // Failover: a dead authority first in the list, then a live one.
    let dead = format!("https://127.0.0.1:{}", free_port_pair());
    let failover = host_config(dir, &site.hosts[0], &[&dead, &a], false);
    ok(with(dir, &failover, &["host", "attest"]), "failover");
    // An authority whose certificate the host's CA did not sign.
    let untrusted = dir.join("untrusted.toml");
    let text = std::fs::read_to_string(&failover).unwrap().replace(
        &pki().join("ca.pem").display().to_string(),
        &pki().join("other-ca.pem").display().to_string(),
    );
    std::fs::write(&untrusted, text).unwrap();
    refused(with(dir, &untrusted, &["host", "attest"]), "certificate");
    // A request that is not the protocol's.
    let garbage: Result<Token, _> = r1.client.post(0, "/v1/attest", &serde_json::json!({"challenge": 1}));
    assert_eq!(code(garbage), RefusalCode::BadRequest);
    site.auth.stop_all();
}

/// A TPM clear keeps the endorsement seed, so the host still attests; the owner seed changes, so the
/// persisted store no longer unseals: the host re-enrols it with `keys persistence clear`.
#[test]
fn a_cleared_tpm_attests_again_and_re_enrols_its_store() {
    let mut site = Site::new(1, 0);
    let dir_buf = site.dir.clone();
    let dir: &Path = &dir_buf;
    let url = site.auth.start(&site.kmip, "");
    let config = host_config(dir, &site.hosts[0], &[&url], true);
    let spec = format!("trusted:{}", config.display());
    ok(with(dir, &config, &["disk", "create", "h1.disk", "--size", "1M"]), "create");
    ok(bin().args(["keys", "persistence", "status", &spec]).output().unwrap(), "status");

    let out = Command::new("tpm2_clear")
        .args(["-c", "p"])
        .env("TPM2TOOLS_TCTI", site.hosts[0].tcti())
        .output()
        .unwrap();
    assert!(out.status.success(), "tpm2_clear: {}", String::from_utf8_lossy(&out.stderr));
    ok(with(dir, &config, &["host", "attest"]), "attest after a clear");
    // The disk still opens (the authority releases its key), with a notice that the store needs
    // re-enrolling, and how.
    let out = with(dir, &config, &["disk", "export", "h1.disk", "--to", "out1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("keys persistence clear"), "{stderr}");
    refused(bin().args(["keys", "persistence", "status", &spec]).output().unwrap(), "");
    ok(bin().args(["keys", "persistence", "clear", &spec]).output().unwrap(), "clear");
    let out = with(dir, &config, &["disk", "export", "h1.disk", "--to", "out2"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = ok(bin().args(["keys", "persistence", "status", &spec]).output().unwrap(), "status");
    assert!(status.contains("1 key(s)") && status.contains("unseals"), "{status}");
    site.auth.stop_all();
}

/// The admin commands and `serve` refuse bad input with one line, changing nothing in the policy.
#[test]
fn admin_commands_refuse_bad_input_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let auth = Authority::new(dir, &dir.join("no-kmip.toml"));
    let policy = auth.dir.join("policy");
    let listing = || {
        let mut names: Vec<String> = walk(&policy);
        names.sort();
        names
    };
    let before = listing();
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, b"{ not json").unwrap();
    refused(auth.admin(&["image", "import", garbage.to_str().unwrap()]), "garbage");
    refused(auth.admin(&["image", "import", dir.join("missing.json").to_str().unwrap()]), "cannot read");
    // An image of PCRs 0-3 for an authority that quotes 0-7.
    let zero = "0".repeat(64);
    let pcrs: Vec<String> = (0..4).map(|i| format!("{{\"index\": {i}, \"sha256\": \"{zero}\"}}")).collect();
    let partial = dir.join("partial.json");
    std::fs::write(
        &partial,
        format!(
            "{{\"format\": \"sectorcrypt-base-image\", \"version\": 1, \"name\": \"x\", \"image_version\": \"1\", \"bank\": \"sha256\", \"pcrs\": [{}], \"event_log\": null}}",
            pcrs.join(", ")
        ),
    )
    .unwrap();
    refused(auth.admin(&["image", "import", partial.to_str().unwrap()]), "attests PCRs 0-7");
    refused(auth.admin(&["image", "remove", "0123"]), "no base image");
    refused(auth.admin(&["image", "remove", "../token"]), "no base image");
    refused(auth.admin(&["tpm-ca", "import", garbage.to_str().unwrap()]), "no certificate");
    refused(auth.admin(&["ek", "import", garbage.to_str().unwrap()]), "not an endorsement key");
    refused(auth.admin(&["ek", "import"]), "");
    refused(
        auth.admin(&["ek", "import", "--from-host", "--tcti", "swtpm:host=127.0.0.1,port=1"]),
        "nothing answers",
    );
    assert_eq!(listing(), before, "a refused command changed the policy");
    let list = ok(auth.admin(&["image", "list", "--json"]), "list");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&list).unwrap(), serde_json::json!([]));

    // serve: a configuration that does not parse, a missing token key, a missing KMIP configuration.
    let bad = auth.config("bad.toml");
    std::fs::write(&bad, "[authority]\nlisten = 1\n").unwrap();
    refused(bin().args(["authority", "serve", "--config"]).arg(&bad).output().unwrap(), "bad.toml");
    let serve =
        || bin().args(["authority", "serve", "--config"]).arg(auth.config("auth.toml")).output().unwrap();
    refused(serve(), "no-kmip.toml");
    std::fs::remove_file(policy.join("token.key")).unwrap();
    refused(serve(), "authority init");
}

/// Every file under `dir`, relative.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}
