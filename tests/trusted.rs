//! The quote verifier of the trusted provider (`src/trusted/quote.rs`) against real quotes: swtpm is
//! the host's TPM, tpm2-tools make an endorsement key, an attestation key under it and quotes, and
//! each verdict of ours is checked against `tpm2_checkquote`'s on the same files. Where the two differ
//! on purpose (a key that is not a restricted signing key, which `tpm2_checkquote` does not look at),
//! the test says so.
//!
//! Needs swtpm and tpm2-tools: `.ci/deps` installs them. No resource manager runs: every transient
//! object is flushed after each tool.

#[path = "support/servers.rs"]
mod servers;

use sectorcrypt::trusted::AttestError;
use sectorcrypt::trusted::quote::{ak_name, verify_quote};
use servers::Swtpm;
use std::process::Command;

struct Host {
    tpm: Swtpm,
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let tpm = Swtpm::start(&dir.path().join("tpm"));
        let host = Host { tpm, dir };
        host.tool(&["tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]);
        for ak in ["ak", "ak2"] {
            let (context, name) = (format!("{ak}.ctx"), format!("{ak}.name"));
            let ecc = ["-G", "ecc", "-g", "sha256", "-s", "ecdsa"];
            let args = [&["tpm2_createak", "-C", "ek.ctx", "-c", &context, "-n", &name][..], &ecc].concat();
            host.tool(&args);
        }
        for ak in ["ak", "ak2"] {
            host.tool(&[
                "tpm2_readpublic",
                "-c",
                &format!("{ak}.ctx"),
                "-f",
                "tpmt",
                "-o",
                &format!("{ak}.tpmt"),
            ]);
            host.tool(&[
                "tpm2_readpublic",
                "-c",
                &format!("{ak}.ctx"),
                "-f",
                "pem",
                "-o",
                &format!("{ak}.pem"),
            ]);
        }
        host
    }

    /// Runs a tpm2-tools command in the host's directory against its TPM, then flushes every transient
    /// object (no resource manager does it).
    fn tool(&self, args: &[&str]) {
        for command in [args, &["tpm2_flushcontext", "-t"]] {
            let out = Command::new(command[0])
                .args(&command[1..])
                .env("TPM2TOOLS_TCTI", self.tpm.tcti())
                .current_dir(self.dir.path())
                .output()
                .unwrap_or_else(|e| panic!("{} cannot start (apt-get install tpm2-tools): {e}", command[0]));
            assert!(out.status.success(), "{command:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    /// A quote over SHA-256 PCRs 0, 1 and 16 answering `nonce` (hex), as `quote.msg` and `quote.sig`
    /// (and `quote.pcrs` for `tpm2_checkquote`), with the PCR values read right after it.
    fn quote(&self, nonce: &str) -> Vec<(u8, [u8; 32])> {
        self.tool(
            &["tpm2_quote", "-c", "ak.ctx", "-l", "sha256:0,1,16", "-q", nonce, "-g", "sha256"]
                .into_iter()
                .chain(["-m", "quote.msg", "-s", "quote.sig", "-o", "quote.pcrs"])
                .collect::<Vec<_>>(),
        );
        self.pcrs()
    }

    fn pcrs(&self) -> Vec<(u8, [u8; 32])> {
        self.tool(&["tpm2_pcrread", "sha256:0,1,16", "-o", "pcrs.bin"]);
        let values = self.read("pcrs.bin");
        [0u8, 1, 16]
            .into_iter()
            .zip(values.chunks_exact(32))
            .map(|(i, v)| (i, v.try_into().unwrap()))
            .collect()
    }

    /// `tpm2_checkquote`'s verdict on the files as they are, with `ak` (its PEM) and `nonce`.
    fn checkquote(&self, ak: &str, nonce: &str) -> bool {
        Command::new("tpm2_checkquote")
            .args(["-u", &format!("{ak}.pem"), "-m", "quote.msg", "-s", "quote.sig", "-f", "quote.pcrs"])
            .args(["-g", "sha256", "-q", nonce])
            .current_dir(self.dir.path())
            .output()
            .unwrap()
            .status
            .success()
    }

    fn ours(&self, ak: &str, nonce: &str, pcrs: &[(u8, [u8; 32])]) -> Result<(), AttestError> {
        let nonce = hex::decode(nonce).unwrap();
        verify_quote(
            &self.read(&format!("{ak}.tpmt")),
            &self.read("quote.msg"),
            &self.read("quote.sig"),
            &nonce,
            pcrs,
        )
        .map(drop)
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.dir.path().join(name), bytes).unwrap();
    }
}

fn tampered(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    bytes[at] ^= 1;
    bytes
}

#[test]
fn quotes_are_judged_as_tpm2_checkquote_judges_them() {
    let host = Host::new();
    host.tool(&["tpm2_pcrextend", &format!("16:sha256={}", "ab".repeat(32))]);
    let nonce = "5eed0001cafe0002";
    let pcrs = host.quote(nonce);

    // A good quote.
    assert!(host.checkquote("ak", nonce));
    assert_eq!(host.ours("ak", nonce, &pcrs), Ok(()));
    let info = verify_quote(
        &host.read("ak.tpmt"),
        &host.read("quote.msg"),
        &host.read("quote.sig"),
        &hex::decode(nonce).unwrap(),
        &pcrs,
    )
    .unwrap();
    assert!(info.reset_count < 10 && info.qualified_signer.len() == 34);
    // The AK's name as the TPM computes it (tpm2_createak wrote it).
    assert_eq!(ak_name(&host.read("ak.tpmt")).unwrap(), host.read("ak.name"));

    // Another challenge: a stale or replayed quote.
    assert!(!host.checkquote("ak", "5eed0001cafe0003"));
    assert_eq!(host.ours("ak", "5eed0001cafe0003", &pcrs), Err(AttestError::NonceMismatch));

    // Another key: a quote presented with someone else's AK.
    assert!(!host.checkquote("ak2", nonce));
    assert_eq!(host.ours("ak2", nonce, &pcrs), Err(AttestError::BadSignature));

    // PCR values that are not the quoted ones (the host extended PCR 16 since, or lies about it).
    host.tool(&["tpm2_pcrextend", &format!("16:sha256={}", "cd".repeat(32))]);
    assert_eq!(host.ours("ak", nonce, &host.pcrs()), Err(AttestError::PcrDigestMismatch));
    let mut fewer = pcrs.clone();
    fewer.pop();
    assert_eq!(host.ours("ak", nonce, &fewer), Err(AttestError::SelectionMismatch));

    // Every byte of the attestation and of the signature's scalars altered in turn: both refuse.
    let (message, signature) = (host.read("quote.msg"), host.read("quote.sig"));
    for at in [0, 5, 10, message.len() / 2, message.len() - 1] {
        host.write("quote.msg", &tampered(&message, at));
        assert!(!host.checkquote("ak", nonce), "tpm2_checkquote took a quote altered at byte {at}");
        assert!(host.ours("ak", nonce, &pcrs).is_err(), "we took a quote altered at byte {at}");
    }
    host.write("quote.msg", &message);
    for at in [8, signature.len() - 1] {
        host.write("quote.sig", &tampered(&signature, at));
        assert!(!host.checkquote("ak", nonce));
        assert_eq!(host.ours("ak", nonce, &pcrs), Err(AttestError::BadSignature));
    }
    host.write("quote.sig", &signature);
    assert_eq!(host.ours("ak", nonce, &pcrs), Ok(()));
}

/// A signing key that is not restricted can sign anything, a made-up `TPMS_ATTEST` included, so it
/// proves nothing about the TPM's state: refused before its signature is looked at. (`tpm2_checkquote`
/// does not check the key's attributes, and would take such a forgery.)
#[test]
fn an_unrestricted_signing_key_is_refused_as_an_attestation_key() {
    let host = Host::new();
    host.tool(&["tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", "primary.ctx"]);
    host.tool(
        &["tpm2_create", "-C", "primary.ctx", "-G", "ecc256:ecdsa-sha256", "-u", "key.pub", "-r", "key.priv"]
            .into_iter()
            .chain(["-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign"])
            .collect::<Vec<_>>(),
    );
    host.tool(&["tpm2_load", "-C", "primary.ctx", "-u", "key.pub", "-r", "key.priv", "-c", "key.ctx"]);
    host.tool(&["tpm2_readpublic", "-c", "key.ctx", "-f", "tpmt", "-o", "key.tpmt"]);
    let nonce = "0102";
    let pcrs = host.quote(nonce);
    let err = verify_quote(
        &host.read("key.tpmt"),
        &host.read("quote.msg"),
        &host.read("quote.sig"),
        &[1, 2],
        &pcrs,
    )
    .unwrap_err();
    assert!(matches!(err, AttestError::UnsupportedKey { .. }), "{err}");
    assert!(err.to_string().contains("restricted signing key"), "{err}");
    assert!(matches!(ak_name(&host.read("key.tpmt")), Err(AttestError::UnsupportedKey { .. })));
}

/// Bad input of every size gives an error, never a panic.
#[test]
fn truncated_structures_are_errors() {
    let host = Host::new();
    let pcrs = host.quote("aa");
    let (public, message, signature) = (host.read("ak.tpmt"), host.read("quote.msg"), host.read("quote.sig"));
    for cut in 0..public.len() {
        assert!(verify_quote(&public[..cut], &message, &signature, &[0xaa], &pcrs).is_err());
    }
    for cut in 0..message.len() {
        assert!(verify_quote(&public, &message[..cut], &signature, &[0xaa], &pcrs).is_err());
    }
    for cut in 0..signature.len() {
        assert!(verify_quote(&public, &message, &signature[..cut], &[0xaa], &pcrs).is_err());
    }
}

impl Host {
    /// An ECC endorsement key (`ekc`) and an attestation key under it (`akc`), with its public area
    /// and name.
    fn ecc_keys(&self) {
        self.tool(&["tpm2_createek", "-G", "ecc", "-c", "ekc.ctx", "-u", "ekc.pub"]);
        let ecc = ["-G", "ecc", "-g", "sha256", "-s", "ecdsa"];
        self.tool(
            &[&["tpm2_createak", "-C", "ekc.ctx", "-c", "akc.ctx", "-n", "akc.name"][..], &ecc].concat(),
        );
        self.tool(&["tpm2_readpublic", "-c", "akc.ctx", "-f", "tpmt", "-o", "akc.tpmt"]);
    }

    /// ActivateCredential of `credential` (tpm2-tools' file) with the AK `ak` under the EK `ek` (their
    /// context files' stems): the secret, or `None` when the TPM refuses. The EK's policy session is
    /// flushed either way.
    fn activate(&self, ak: &str, ek: &str, credential: &[u8]) -> Option<Vec<u8>> {
        self.write("cred.bin", credential);
        let _ = std::fs::remove_file(self.dir.path().join("recovered"));
        self.tool(&["tpm2_startauthsession", "--policy-session", "-S", "session.ctx"]);
        self.tool(&["tpm2_policysecret", "-S", "session.ctx", "-c", "e"]);
        let ok = Command::new("tpm2_activatecredential")
            .args([
                "-c",
                &format!("{ak}.ctx"),
                "-C",
                &format!("{ek}.ctx"),
                "-i",
                "cred.bin",
                "-o",
                "recovered",
            ])
            .args(["-P", "session:session.ctx"])
            .env("TPM2TOOLS_TCTI", self.tpm.tcti())
            .current_dir(self.dir.path())
            .output()
            .unwrap()
            .status
            .success();
        // The session may be gone with the command (it was not kept alive) or still be there.
        let _ = Command::new("tpm2_flushcontext")
            .arg("session.ctx")
            .env("TPM2TOOLS_TCTI", self.tpm.tcti())
            .current_dir(self.dir.path())
            .output();
        self.tool(&["tpm2_flushcontext", "-s"]);
        ok.then(|| self.read("recovered"))
    }
}

/// A credential made here (MakeCredential in software) is recovered by the TPM of the EK it was made
/// for, ECC P-256 or RSA 2048, into the AK whose name it names, and by nothing else: not for another
/// AK's name, not altered.
#[test]
fn a_credential_is_activated_only_by_the_ek_and_ak_it_names() {
    use sectorcrypt::trusted::credential::make_credential;
    let host = Host::new();
    host.ecc_keys();
    let name = ak_name(&host.read("akc.tpmt")).unwrap();
    assert_eq!(name, host.read("akc.name"));
    let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let credential = make_credential(&host.read("ekc.pub"), &name, &secret).unwrap();
    assert_eq!(host.activate("akc", "ekc", &credential.to_tpm2_tools()), Some(secret.clone()));
    // Two credentials for the same secret differ (a fresh ephemeral key each time).
    let again = make_credential(&host.read("ekc.pub"), &name, &secret).unwrap();
    assert_ne!(again, credential);
    assert_eq!(host.activate("akc", "ekc", &again.to_tpm2_tools()), Some(secret.clone()));

    // Made for another AK's name: the TPM refuses to release it into this one.
    let other = make_credential(&host.read("ekc.pub"), &host.read("ak2.name"), &secret).unwrap();
    assert_eq!(host.activate("akc", "ekc", &other.to_tpm2_tools()), None);
    // Any altered byte of the sealed secret or of the ephemeral point: refused.
    let file = credential.to_tpm2_tools();
    for at in [12, 20, 8 + credential.id_object.len() - 1, file.len() - 1] {
        let mut altered = file.clone();
        altered[at] ^= 1;
        assert_eq!(
            host.activate("akc", "ekc", &altered),
            None,
            "an altered credential (byte {at}) was activated"
        );
    }
    // The RSA EK (seed sent by RSA-OAEP): released into `ak`, which lives under it, and not into `ak2`.
    let rsa_name = host.read("ak.name");
    let credential = make_credential(&host.read("ek.pub"), &rsa_name, &secret).unwrap();
    assert_eq!(host.activate("ak", "ek", &credential.to_tpm2_tools()), Some(secret.clone()));
    let other = make_credential(&host.read("ek.pub"), &host.read("ak2.name"), &secret).unwrap();
    assert_eq!(host.activate("ak", "ek", &other.to_tpm2_tools()), None);
    let mut altered = credential.to_tpm2_tools();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert_eq!(host.activate("ak", "ek", &altered), None);
    // Bad secrets are refused before anything is made.
    assert!(make_credential(&host.read("ekc.pub"), &name, &[]).is_err());
    assert!(make_credential(&host.read("ekc.pub"), &name, &[0; 33]).is_err());
    // The AK's own public area is no EK.
    assert!(make_credential(&host.read("akc.tpmt"), &name, &secret).is_err());
}
