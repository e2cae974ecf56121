//! The standard key provider against a real KMIP server (PyKMIP 0.11.0) and key persistence against a
//! real TPM 2.0 simulator (swtpm): every operation, every connection failure kept distinct, only
//! Active keys used, the cache's lifetime, and the persistence store's faults, each with nothing
//! written. Servers run on free loopback ports in their own process groups (`tests/support/`).

#[path = "support/servers.rs"]
mod servers;

use sectorcrypt::keys::kmip::{KeyState, KmipProvider, RevocationReason, wire_samples};
use sectorcrypt::keys::{KeyCache, KeyProvider, KeyStore};
use sectorcrypt::{Error, ErrorKind, ProviderFault, StoreFault};
use servers::{KmipServer, Swtpm, write_config};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One key server shared by the tests that do not stop it.
fn shared_server() -> &'static KmipServer {
    static SERVER: OnceLock<(tempfile::TempDir, KmipServer)> = OnceLock::new();
    &SERVER
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let server = KmipServer::start(dir.path());
            (dir, server)
        })
        .1
}

fn provider_fault(err: &Error) -> ProviderFault {
    match err {
        Error::KeyProvider { fault, .. } => *fault,
        other => panic!("not a provider error: {other:?}"),
    }
}

fn open(config: &Path) -> KmipProvider {
    KmipProvider::open(config).unwrap()
}

#[test]
fn requests_match_pykmips_encoder() {
    // PyKMIP builds the same requests with its own message classes; the bytes must be the same.
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kmip_requests.py"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "PyKMIP could not build the requests");
    let text = String::from_utf8(out.stdout).unwrap();
    let theirs: Vec<&str> = text.lines().collect();
    let ours = wire_samples();
    assert_eq!(theirs.len(), ours.len());
    for ((name, bytes), line) in ours.iter().zip(theirs) {
        assert_eq!(format!("{name} {}", hex::encode(bytes)), line, "PyKMIP encodes {name} differently");
    }
}

#[test]
fn create_locate_get_revoke_destroy_against_pykmip() {
    let server = shared_server();
    let dir = tempfile::tempdir().unwrap();
    let provider = open(&server.config(dir.path(), "kmip.toml", "alice", ""));
    let client = provider.client();

    let info = client.check().unwrap();
    assert_eq!(info.server, server.address());
    assert!(info.server_versions.contains(&(1, 2)), "{:?}", info.server_versions);
    assert!(info.vendor.unwrap_or_default().contains("PyKMIP"));

    // A named KEK is created once, then found by name; an unnamed one is new every time.
    let a = provider.create_kek(Some("lib-vm-1")).unwrap();
    assert_eq!(provider.create_kek(Some("lib-vm-1")).unwrap(), a);
    assert_eq!(client.locate("lib-vm-1").unwrap(), vec![a.key_id().to_owned()]);
    assert_ne!(provider.create_kek(None).unwrap(), provider.create_kek(None).unwrap());
    assert_eq!(a.to_string(), format!("kmip:kmip/{}", a.key_id()));
    assert_eq!(client.state(a.key_id()).unwrap(), KeyState::Active);
    let kek = provider.get_kek(&a).unwrap();
    let (dek, wrapped) = provider.new_wrapped_dek(sectorcrypt::KeySize::Aes256, Some("lib-vm-1")).unwrap();
    assert_eq!(provider.unwrap_dek(&wrapped).unwrap().hazmat_reveal(), dek.hazmat_reveal());
    drop(kek);

    // Another client may not use alice's key.
    let bob = open(&server.config(dir.path(), "bob.toml", "bob", ""));
    let err = bob.get_kek(&a).unwrap_err();
    assert_eq!(provider_fault(&err), ProviderFault::Denied, "{err}");
    assert!(!err.is_transient());

    // Revoked: refused, naming the state (PyKMIP's Get alone would still hand the key out).
    client.revoke(a.key_id(), RevocationReason::CessationOfOperation).unwrap();
    let err = provider.get_kek(&a).unwrap_err();
    assert_eq!(provider_fault(&err), ProviderFault::Revoked);
    assert!(err.to_string().contains("Deactivated"), "{err}");
    assert_eq!(err.kind(), ErrorKind::ProviderRefused);
    client.destroy(a.key_id()).unwrap();
    let err = provider.get_kek(&a).unwrap_err();
    assert_eq!(provider_fault(&err), ProviderFault::NotFound, "{err}");

    let b = provider.create_kek(None).unwrap();
    client.revoke(b.key_id(), RevocationReason::KeyCompromise).unwrap();
    let err = provider.get_kek(&b).unwrap_err();
    assert!(err.to_string().contains("Compromised"), "{err}");

    // A key reference of another provider is not asked for at all.
    let native = sectorcrypt::keys::KeyRef::new(sectorcrypt::keys::ProviderKind::Native, "abc", "x").unwrap();
    assert_eq!(provider_fault(&provider.get_kek(&native).unwrap_err()), ProviderFault::NotFound);
}

#[test]
fn connection_failures_are_distinct_and_bounded() {
    let server = shared_server();
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("127.0.0.1:{}", servers::free_port_pair());

    // Nothing listens: unreachable, transient.
    let config = write_config(dir.path(), "dead.toml", std::slice::from_ref(&dead), "alice", 3000, "");
    let err = open(&config).client().check().unwrap_err();
    assert_eq!(provider_fault(&err), ProviderFault::Unreachable, "{err}");
    assert!(err.is_transient());

    // Failover: the dead server first, the live one second.
    let config =
        write_config(dir.path(), "failover.toml", &[dead.clone(), server.address()], "alice", 3000, "");
    let info = open(&config).client().check().unwrap();
    assert_eq!((info.server, info.skipped.len()), (server.address(), 1));

    // A server that accepts and never answers: timed out, transient, after the timeout and not much more.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let config = write_config(dir.path(), "silent.toml", &[silent_addr], "alice", 400, "");
    let provider = open(&config);
    let start = Instant::now();
    let err = provider.client().check().unwrap_err();
    let took = start.elapsed();
    assert_eq!(provider_fault(&err), ProviderFault::TimedOut, "{err}");
    assert!(err.is_transient());
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "{took:?}");
    drop(silent);

    // The server's certificate from a CA we do not trust: permanent.
    let config = server.config(dir.path(), "other-ca.toml", "alice", "");
    let text = std::fs::read_to_string(&config).unwrap().replace("/ca.pem", "/other-ca.pem");
    std::fs::write(&config, text).unwrap();
    let err = open(&config).client().check().unwrap_err();
    assert_eq!(provider_fault(&err), ProviderFault::UntrustedServer, "{err}");
    assert!(!err.is_transient());

    // Our certificate from a CA the server does not trust: refused, permanent.
    let err = open(&server.config(dir.path(), "mallory.toml", "mallory", "")).client().check().unwrap_err();
    assert_eq!(provider_fault(&err), ProviderFault::Denied, "{err}");
    assert!(!err.is_transient());
}

#[test]
fn bad_configurations_are_refused_before_connecting() {
    let server = shared_server();
    let dir = tempfile::tempdir().unwrap();
    let config = server.config(dir.path(), "kmip.toml", "alice", "");
    let misconfigured = |path: &Path| provider_fault(&KmipProvider::open(path).unwrap_err());

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path().join("alice.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = KmipProvider::open(&config).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(dir.path().join("alice.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

    let text = std::fs::read_to_string(&config).unwrap();
    for (name, body) in [
        ("typo.toml", text.replace("timeout_ms", "timeout_msec")),
        ("no-servers.toml", text.replace(&format!("[\"{}\"]", server.address()), "[]")),
        ("no-port.toml", text.replace(&format!(":{}", server.port), "")),
        ("not-toml.toml", "[kmip\nservers =".to_owned()),
        (
            "bad-pcr.toml",
            format!("{text}[persistence]\nstore = \"s\"\ntcti = \"device:/dev/null\"\npcrs = [24]\n"),
        ),
    ] {
        std::fs::write(dir.path().join(name), body).unwrap();
        assert_eq!(misconfigured(&dir.path().join(name)), ProviderFault::Misconfigured, "{name}");
    }
    assert_eq!(misconfigured(&dir.path().join("missing.toml")), ProviderFault::NotFound);
    let no_key = text.replace("alice.key", "nobody.key");
    std::fs::write(dir.path().join("no-key.toml"), no_key).unwrap();
    assert_eq!(misconfigured(&dir.path().join("no-key.toml")), ProviderFault::NotFound);
}

#[test]
fn the_cache_lives_its_lifetime_and_drops_revoked_keys() {
    let server = shared_server();
    let dir = tempfile::tempdir().unwrap();
    let cache = KeyCache::with_lifetime(
        open(&server.config(dir.path(), "kmip.toml", "alice", "")),
        16,
        Duration::from_millis(300),
    );
    let key = cache.create_kek(None).unwrap();
    cache.get_kek(&key).unwrap();
    assert!(cache.contains(&key));
    cache.inner().client().revoke(key.key_id(), RevocationReason::Superseded).unwrap();
    // Within its lifetime the cached key still serves (no round trip), then the server is asked again.
    assert!(cache.get_kek(&key).is_ok());
    std::thread::sleep(Duration::from_millis(350));
    assert!(!cache.contains(&key));
    assert_eq!(provider_fault(&cache.get_kek(&key).unwrap_err()), ProviderFault::Revoked);
    assert_eq!(cache.len(), 0);
}

/// A key server and a TPM of their own, for the persistence tests that stop them.
struct Host {
    dir: tempfile::TempDir,
    server: KmipServer,
    tpm: Swtpm,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let server = KmipServer::start(&dir.path().join("kms"));
        let tpm = Swtpm::start(&dir.path().join("tpm"));
        Host { dir, server, tpm }
    }

    fn store(&self) -> std::path::PathBuf {
        self.dir.path().join("keys.sealed")
    }

    fn config(&self) -> std::path::PathBuf {
        let extra = self.tpm.persistence(&self.store());
        self.server.config(self.dir.path(), "kmip.toml", "alice", &extra)
    }
}

fn store_fault(err: &Error) -> Option<StoreFault> {
    match err {
        Error::KeyStore { fault, .. } => Some(*fault),
        _ => None,
    }
}

#[test]
fn persisted_keys_serve_while_the_server_is_down_and_only_then() {
    let mut host = Host::new();
    let provider = open(&host.config());
    let key = provider.create_kek(Some("persisted")).unwrap();
    let kek = provider.get_kek(&key).unwrap();
    assert!(provider.take_notices().is_empty());
    let store = provider.store().unwrap();
    assert_eq!(store.list().unwrap().unwrap().len(), 1);
    assert!(store.check().unwrap());

    // Fetched again: already kept, the store is not rewritten.
    let before = std::fs::read(host.store()).unwrap();
    provider.get_kek(&key).unwrap();
    assert_eq!(std::fs::read(host.store()).unwrap(), before);

    host.server.stop();
    let fresh = open(&host.config());
    let served = fresh.get_kek(&key).unwrap();
    assert_eq!(format!("{served:?}"), format!("{kek:?}"));
    let notices = fresh.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("key persistence"), "{notices:?}");

    // A key never fetched is not there: the error says the server is down and no copy is kept.
    let other = sectorcrypt::keys::KeyRef::new(sectorcrypt::keys::ProviderKind::Kmip, "kmip", "999").unwrap();
    let err = fresh.get_kek(&other).unwrap_err();
    assert!(err.is_transient() && err.to_string().contains("keeps no copy"), "{err}");

    // Without persistence: unreachable, and the error says persistence is off.
    let plain = open(&host.server.config(host.dir.path(), "plain.toml", "alice", ""));
    let err = plain.get_kek(&key).unwrap_err();
    assert!(err.to_string().contains("persistence is off"), "{err}");

    // The TPM down as well: the server error, with why the copy cannot be used.
    host.tpm.stop();
    let err = open(&host.config()).get_kek(&key).unwrap_err();
    assert!(err.is_transient() && err.to_string().contains("TPM cannot be reached"), "{err}");
}

#[test]
fn damaged_stores_are_refused_and_never_rewritten() {
    let mut host = Host::new();
    let provider = open(&host.config());
    let key = provider.create_kek(None).unwrap();
    provider.get_kek(&key).unwrap();
    let good = std::fs::read(host.store()).unwrap();
    let flipped = {
        let mut bytes = good.clone();
        let last = bytes.len() - 20;
        bytes[last] ^= 1;
        bytes
    };
    for (what, bytes) in [("altered", flipped), ("truncated", good[..good.len() - 7].to_vec())] {
        std::fs::write(host.store(), &bytes).unwrap();
        // Server up: the key comes from the server; the store is left as it is, with a notice.
        let provider = open(&host.config());
        provider.get_kek(&key).unwrap_or_else(|e| panic!("{what}: {e}"));
        let new_key = provider.create_kek(None).unwrap();
        provider.get_kek(&new_key).unwrap();
        assert!(!provider.take_notices().is_empty(), "{what}");
        assert_eq!(std::fs::read(host.store()).unwrap(), bytes, "{what}: the store was rewritten");
        let err = provider.store().unwrap().recall(&key).unwrap_err();
        assert_eq!(store_fault(&err), Some(StoreFault::Corrupt), "{what}: {err}");
    }
    host.server.stop();
    let err = open(&host.config()).get_kek(&key).unwrap_err();
    assert!(err.to_string().contains("not a valid key store"), "{err}");
}

#[test]
fn a_store_from_another_tpm_is_refused_and_the_server_still_serves() {
    let mut host = Host::new();
    let provider = open(&host.config());
    let key = provider.create_kek(None).unwrap();
    provider.get_kek(&key).unwrap();
    let sealed = std::fs::read(host.store()).unwrap();

    // A new TPM (another host, or this one after a TPM clear): the store does not unseal.
    host.tpm.stop();
    let other_dir = host.dir.path().join("other-tpm");
    let other = Swtpm::start(&other_dir);
    let config =
        host.server.config(host.dir.path(), "other.toml", "alice", &other.persistence(&host.store()));
    let provider = open(&config);
    let err = provider.store().unwrap().check().unwrap_err();
    assert_eq!(store_fault(&err), Some(StoreFault::WrongTpm), "{err}");
    assert_eq!(err.kind(), ErrorKind::KeyRejected);
    // The server is reachable: it serves, and the store is left for `keys persistence clear`.
    provider.get_kek(&key).unwrap();
    assert_eq!(std::fs::read(host.store()).unwrap(), sealed);
    host.server.stop();
    let err = open(&config).get_kek(&key).unwrap_err();
    assert!(err.to_string().contains("another TPM"), "{err}");
    assert!(KeyStore::new(open(&config).client().config().persistence.as_ref().unwrap()).clear().unwrap());
    assert!(!host.store().exists());
}

#[test]
fn a_revoked_key_is_purged_from_the_store_once_the_server_answers() {
    let mut host = Host::new();
    let provider = open(&host.config());
    let key = provider.create_kek(None).unwrap();
    let keep = provider.create_kek(None).unwrap();
    provider.get_kek(&key).unwrap();
    provider.get_kek(&keep).unwrap();
    host.server.stop();
    assert!(open(&host.config()).get_kek(&key).is_ok());

    // Revoked while this host was away (the store is older than the revocation).
    host.server.restart();
    provider.client().revoke(key.key_id(), RevocationReason::KeyCompromise).unwrap();
    let err = open(&host.config()).get_kek(&key).unwrap_err();
    assert_eq!(provider_fault(&err), ProviderFault::Revoked);
    let kept: Vec<_> =
        provider.store().unwrap().list().unwrap().unwrap().into_iter().map(|k| k.key_ref).collect();
    assert_eq!(kept, vec![keep.clone()]);
    host.server.stop();
    assert!(open(&host.config()).get_kek(&key).unwrap_err().to_string().contains("keeps no copy"));
    assert!(open(&host.config()).get_kek(&keep).is_ok());
}

#[test]
fn concurrent_writers_lose_no_key() {
    let host = Host::new();
    let config = host.config();
    let provider = open(&config);
    let keys: Vec<_> = (0..6).map(|_| provider.create_kek(None).unwrap()).collect();
    // Each thread has a provider of its own, as separate processes would: the store's lock is a
    // `flock` on an open file of its own.
    std::thread::scope(|scope| {
        for key in &keys {
            let config = &config;
            scope.spawn(move || open(config).get_kek(key).unwrap());
        }
    });
    let mut kept: Vec<String> = provider
        .store()
        .unwrap()
        .list()
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|k| k.key_ref.to_string())
        .collect();
    let mut want: Vec<String> = keys.iter().map(ToString::to_string).collect();
    kept.sort();
    want.sort();
    assert_eq!(kept, want);
}

#[test]
fn a_store_sealed_to_pcrs_stops_unsealing_when_they_change() {
    let mut host = Host::new();
    let extra = format!("{}pcrs = [16, 23]\n", host.tpm.persistence(&host.store()));
    let config = host.server.config(host.dir.path(), "pcrs.toml", "alice", &extra);
    let provider = open(&config);
    let key = provider.create_kek(None).unwrap();
    provider.get_kek(&key).unwrap();
    assert!(provider.store().unwrap().check().unwrap());
    // Another configuration of the same store must name the same PCRs.
    let err = open(&host.config()).store().unwrap().list().unwrap_err();
    assert_eq!(store_fault(&err), Some(StoreFault::Misconfigured), "{err}");

    // PCR 16 (the debug PCR) changes, as a measured component would at the next boot.
    let out = Command::new("tpm2_pcrextend")
        .arg(format!("16:sha256={}", "ab".repeat(32)))
        .env("TPM2TOOLS_TCTI", host.tpm.tcti())
        .env("TSS2_LOG", "all+NONE")
        .output()
        .unwrap();
    assert!(out.status.success(), "tpm2_pcrextend: {}", String::from_utf8_lossy(&out.stderr));
    let err = provider.store().unwrap().check().unwrap_err();
    assert_eq!(store_fault(&err), Some(StoreFault::PcrMismatch), "{err}");
    host.server.stop();
    let err = open(&config).get_kek(&key).unwrap_err();
    assert!(err.to_string().contains("PCRs"), "{err}");
}

#[test]
fn a_store_does_not_unseal_after_the_tpm_is_cleared() {
    let mut host = Host::new();
    let provider = open(&host.config());
    let key = provider.create_kek(None).unwrap();
    provider.get_kek(&key).unwrap();
    let sealed = std::fs::read(host.store()).unwrap();
    // TPM2_Clear with platform authorization, as a firmware "clear TPM" does: new owner seed.
    let out = Command::new("tpm2_clear")
        .args(["-c", "p"])
        .env("TPM2TOOLS_TCTI", host.tpm.tcti())
        .env("TSS2_LOG", "all+NONE")
        .output()
        .unwrap();
    assert!(out.status.success(), "tpm2_clear: {}", String::from_utf8_lossy(&out.stderr));
    let err = provider.store().unwrap().check().unwrap_err();
    assert_eq!(store_fault(&err), Some(StoreFault::WrongTpm), "{err}");
    // The server answers: it serves, and the store stays as it was until `keys persistence clear`.
    open(&host.config()).get_kek(&key).unwrap();
    assert_eq!(std::fs::read(host.store()).unwrap(), sealed);
    host.server.stop();
    assert!(open(&host.config()).get_kek(&key).unwrap_err().to_string().contains("TPM was cleared"));
}
