//! Real servers for the KMIP and key persistence tests: PyKMIP's key server and swtpm, each started on
//! free loopback ports in its own process group (through `tests/support/captive.sh`, which kills the
//! group when the test process ends) and stopped by the test. The PKI comes from
//! `tests/support/kmip-pki.sh`. `.ci/deps` installs pykmip, swtpm and openssl.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest any test server may live.
const SERVER_LIMIT_SECONDS: &str = "900";

fn support(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("tests/support").is_dir())
        .unwrap()
        .join("tests/support")
        .join(name)
}

/// The test PKI, made once per test process.
pub fn pki() -> &'static Path {
    static PKI: OnceLock<tempfile::TempDir> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("bash").arg(support("kmip-pki.sh")).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "kmip-pki.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
    .path()
}

/// A loopback port nothing listens on (with the next one free too, for swtpm's control port).
pub fn free_port_pair() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// A process group running one server.
pub struct Captive {
    child: Child,
}

impl Captive {
    pub fn start(command: &mut Command, log: &Path) -> Captive {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new("bash")
            .arg(support("captive.sh"))
            .arg(std::process::id().to_string())
            .arg(SERVER_LIMIT_SECONDS)
            .arg(command.get_program())
            .args(command.get_args())
            .envs(command.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("bash runs");
        Captive { child }
    }

    fn kill(&mut self, signal: &str) {
        let _ = Command::new("kill").args(["-s", signal, "--"]).arg(format!("-{}", self.child.id())).status();
    }

    pub fn stop(&mut self) {
        self.kill("TERM");
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill("KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Captive {
    fn drop(&mut self) {
        self.kill("KILL");
        let _ = self.child.wait();
    }
}

pub fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// PyKMIP's server, with its database in `state` (kept across a restart).
pub struct KmipServer {
    pub port: u16,
    state: PathBuf,
    process: Option<Captive>,
}

impl KmipServer {
    /// Starts a server on a free port with its state in `state` (a directory).
    pub fn start(state: &Path) -> KmipServer {
        let mut server = KmipServer { port: free_port_pair(), state: state.to_owned(), process: None };
        server.restart();
        server
    }

    /// Starts the server again on its port (after [`KmipServer::stop`]), with the same database.
    pub fn restart(&mut self) {
        assert!(self.process.is_none());
        let pki = pki();
        std::fs::create_dir_all(self.state.join("policies")).unwrap();
        let conf = self.state.join("server.conf");
        std::fs::write(
            &conf,
            format!(
                "[server]\nhostname=127.0.0.1\nport={}\ncertificate_path={pki}/server.pem\nkey_path={pki}/server.key\n\
                 ca_path={pki}/ca.pem\nauth_suite=TLS1.2\npolicy_path={}\nenable_tls_client_auth=True\n\
                 logging_level=INFO\ndatabase_path={}\n",
                self.port,
                self.state.join("policies").display(),
                self.state.join("pykmip.db").display(),
                pki = pki.display(),
            ),
        )
        .unwrap();
        let log = self.state.join("server.out");
        // The module, not the `pykmip-server` script: pip may put scripts where PATH does not look.
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "kmip.services.server.server", "-f"])
            .arg(&conf)
            .arg("-l")
            .arg(self.state.join("server.log"))
            .env("PYTHONWARNINGS", "ignore");
        self.process = Some(Captive::start(&mut cmd, &log));
        wait_for_port(self.port, "pykmip-server", &log);
    }

    /// Stops the server (as a crash would: its database keeps what it committed).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill("KILL");
            let _ = process.child.wait();
        }
        // Nothing may answer on the port any more.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Writes a `kmip:` configuration for client `client` (alice, bob or mallory of the PKI) in `dir`,
    /// with `extra` appended (a `[persistence]` section), and returns its path.
    pub fn config(&self, dir: &Path, name: &str, client: &str, extra: &str) -> PathBuf {
        write_config(dir, name, &[self.address()], client, 3000, extra)
    }
}

/// A configuration for `servers`, as `kmip:PATH` takes it.
pub fn write_config(
    dir: &Path,
    name: &str,
    servers: &[String],
    client: &str,
    timeout_ms: u64,
    extra: &str,
) -> PathBuf {
    let pki = pki();
    // The client key must be private to its user: a copy of mode 0600 next to the configuration.
    let key = dir.join(format!("{client}.key"));
    if !key.exists() {
        std::fs::copy(pki.join(format!("{client}.key")), &key).unwrap();
    }
    let servers: Vec<String> = servers.iter().map(|s| format!("{s:?}")).collect();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[kmip]\nservers = [{}]\nca = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{client}.key\"\ntimeout_ms = {timeout_ms}\n{extra}",
            servers.join(", "),
            pki.join("ca.pem").display(),
            pki.join(format!("{client}.pem")).display(),
        ),
    )
    .unwrap();
    path
}

/// swtpm, a software TPM 2.0, with its state in a directory (kept across a restart, as a TPM's NV is
/// across a reboot).
pub struct Swtpm {
    pub port: u16,
    state: PathBuf,
    process: Option<Captive>,
}

impl Swtpm {
    pub fn start(state: &Path) -> Swtpm {
        std::fs::create_dir_all(state).unwrap();
        let mut tpm = Swtpm { port: free_port_pair(), state: state.to_owned(), process: None };
        tpm.restart();
        tpm
    }

    /// Starts it again (a host reboot: transient objects gone, seeds kept).
    pub fn restart(&mut self) {
        assert!(self.process.is_none());
        let mut cmd = Command::new("swtpm");
        cmd.args(["socket", "--tpm2"])
            .arg(format!("--server=type=tcp,port={},bindaddr=127.0.0.1", self.port))
            .arg(format!("--ctrl=type=tcp,port={},bindaddr=127.0.0.1", self.port + 1))
            .args(["--flags", "not-need-init,startup-clear"])
            .arg(format!("--tpmstate=dir={}", self.state.display()));
        let log = self.state.join("swtpm.out");
        self.process = Some(Captive::start(&mut cmd, &log));
        wait_for_port(self.port, "swtpm", &log);
    }

    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// The TCTI string for it.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// A `[persistence]` section for it, with the store at `store`.
    pub fn persistence(&self, store: &Path) -> String {
        format!("[persistence]\nstore = \"{}\"\ntcti = \"{}\"\n", store.display(), self.tcti())
    }
}

/// Manufactures a TPM in `state` as a vendor would, with `swtpm_setup`: an RSA 2048 and an ECC
/// endorsement key, each with a certificate in NV signed by the local CA kept in `ca` (created there on
/// first use: `swtpm-localca-rootca-cert.pem`, and `issuercert.pem`, the CA that signs EK certificates).
pub fn manufacture(state: &Path, ca: &Path) {
    std::fs::create_dir_all(state).unwrap();
    std::fs::create_dir_all(ca).unwrap();
    let localca = ca.join("swtpm-localca.conf");
    std::fs::write(
        &localca,
        format!(
            "statedir = {0}\nsigningkey = {0}/signkey.pem\nissuercert = {0}/issuercert.pem\ncertserial = {0}/certserial\n",
            ca.display()
        ),
    )
    .unwrap();
    let setup = ca.join("swtpm_setup.conf");
    std::fs::write(
        &setup,
        format!(
            "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n",
            localca.display()
        ),
    )
    .unwrap();
    let out = Command::new("swtpm_setup")
        .args(["--tpm2", "--create-ek-cert", "--overwrite", "--tpmstate"])
        .arg(state)
        .arg("--config")
        .arg(&setup)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "swtpm_setup: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
