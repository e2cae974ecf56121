//! The `kmip:CONFIG` file: which key servers, which certificates, and optional key persistence.
//!
//! ```toml
//! [kmip]
//! servers = ["kms1.example:5696", "kms2.example:5696"]  # tried in order: failover
//! ca = "ca.pem"                 # the CA that signed the servers' certificates
//! client_cert = "client.pem"    # this host's certificate (chain), PEM
//! client_key = "client.key"     # its private key, PEM (PKCS#8, PKCS#1 or SEC1), mode 0600
//! timeout_ms = 3000             # connect, handshake, and each request (default 3000)
//! name = "kms"                  # the provider id kept in every key reference (default "kmip")
//! cache_seconds = 300           # how long a fetched KEK is used without asking again (default 300)
//!
//! [persistence]                 # optional: KEKs kept sealed by the TPM (see `persist`)
//! store = "keys.sealed"
//! tcti = "swtpm:host=127.0.0.1,port=2321"   # or "device:/dev/tpmrm0"
//! pcrs = []                     # SHA-256 PCRs the storage key is sealed to (default none)
//! ```
//!
//! Relative paths are relative to the configuration file. Unknown keys are refused, so a typo does not
//! silently turn a setting off.

use crate::error::{Error, ProviderFault, Result};
use crate::files::{FileKinds, open_file, read_bounded};
use crate::keys::material::check_id;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// The largest configuration, certificate or key file read.
const MAX_FILE: usize = 1 << 20;

/// A parsed `kmip:CONFIG` file.
#[derive(Clone, Debug)]
pub struct KmipConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// Key servers, in the order they are tried.
    pub servers: Vec<String>,
    /// The CA certificate(s) that sign the servers' certificates.
    pub ca: PathBuf,
    /// This client's certificate chain.
    pub client_cert: PathBuf,
    /// This client's private key.
    pub client_key: PathBuf,
    /// Limit on the connect and handshake, and on each request.
    pub timeout: Duration,
    /// The provider id in key references.
    pub name: String,
    /// How long the in-memory cache keeps a KEK.
    pub cache_lifetime: Duration,
    /// Key persistence, if configured.
    pub persistence: Option<PersistenceConfig>,
}

/// The `[persistence]` section.
#[derive(Clone, Debug)]
pub struct PersistenceConfig {
    /// The store file.
    pub store: PathBuf,
    /// How to reach the TPM (a tss2 TCTI string).
    pub tcti: String,
    /// SHA-256 PCR indices the storage key is sealed to; empty for none.
    pub pcrs: Vec<u8>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    kmip: KmipSection,
    persistence: Option<PersistenceSection>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KmipSection {
    servers: Vec<String>,
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_name")]
    name: String,
    #[serde(default = "default_cache_seconds")]
    cache_seconds: u64,
}

/// A `[persistence]` section as written (the trusted provider's configuration has one too).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersistenceSection {
    store: PathBuf,
    tcti: String,
    #[serde(default)]
    pcrs: Vec<u8>,
}

fn default_timeout() -> u64 {
    3000
}

fn default_name() -> String {
    "kmip".into()
}

fn default_cache_seconds() -> u64 {
    300
}

/// An error about the configuration file itself.
pub(crate) fn config_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::KeyProvider {
        provider: format!("kmip:{}", path.display()),
        fault: ProviderFault::Misconfigured,
        reason: reason.into(),
    }
}

/// Reads a file the configuration names, keeping the error's fault (missing, denied).
pub(crate) fn read_named(
    config: &Path,
    what: &str,
    path: &Path,
    private: bool,
) -> Result<Zeroizing<Vec<u8>>> {
    read_for(&format!("kmip:{}", config.display()), what, path, private)
}

/// [`read_named`] for any provider, named as in messages (`trusted:PATH`).
pub(crate) fn read_for(provider: &str, what: &str, path: &Path, private: bool) -> Result<Zeroizing<Vec<u8>>> {
    let fail = |fault: ProviderFault, why: String| Error::KeyProvider {
        provider: provider.to_owned(),
        fault,
        reason: format!("{what} {}: {why}", path.display()),
    };
    let io_fail = |err: Error| match &err {
        Error::Io { cause, .. } => {
            let fault = match cause.io_error().kind() {
                std::io::ErrorKind::NotFound => ProviderFault::NotFound,
                std::io::ErrorKind::PermissionDenied => ProviderFault::Denied,
                _ => ProviderFault::Misconfigured,
            };
            fail(fault, cause.to_string())
        }
        _ => err,
    };
    let file = open_file(path, false, FileKinds::Regular).map_err(io_fail)?;
    if private {
        let meta = file.metadata().map_err(|err| io_fail(Error::io(path.display().to_string(), err)))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(
                ProviderFault::Misconfigured,
                format!("has mode {mode:04o}: group or others may access it (run chmod 600 on it)"),
            ));
        }
    }
    read_bounded(file, MAX_FILE, &path.display().to_string()).map_err(io_fail)
}

impl PersistenceSection {
    /// The section checked, its store's path resolved.
    pub(crate) fn resolve(
        self,
        resolve: impl Fn(PathBuf) -> PathBuf,
    ) -> core::result::Result<PersistenceConfig, String> {
        if let Some(bad) = self.pcrs.iter().find(|&&pcr| pcr > 23) {
            return Err(format!("PCR {bad} does not exist (0 to 23)"));
        }
        let mut pcrs = self.pcrs;
        pcrs.sort_unstable();
        pcrs.dedup();
        Ok(PersistenceConfig { store: resolve(self.store), tcti: self.tcti, pcrs })
    }
}

impl KmipConfig {
    /// Reads and checks a configuration file (not the files it names: opening the provider does).
    pub fn load(path: impl AsRef<Path>) -> Result<KmipConfig> {
        let path = path.as_ref();
        let text = read_named(path, "the configuration file", path, false)?;
        let text =
            core::str::from_utf8(&text).map_err(|_| config_error(path, "the file is not UTF-8 text"))?;
        let file: File = toml::from_str(text).map_err(|err| {
            config_error(path, format!("not a valid configuration: {}", err.message().trim_end()))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let kmip = file.kmip;
        if kmip.servers.is_empty() {
            return Err(config_error(path, "`servers` lists no key server"));
        }
        if let Some(bad) = kmip.servers.iter().find(|s| !s.contains(':')) {
            return Err(config_error(path, format!("server {bad:?} has no port (write host:port)")));
        }
        if !(1..=600_000).contains(&kmip.timeout_ms) {
            return Err(config_error(path, "`timeout_ms` must be 1 to 600000"));
        }
        check_id(&kmip.name).map_err(|_| {
            config_error(path, "`name` must be 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'")
        })?;
        let persistence = match file.persistence {
            None => None,
            Some(p) => Some(p.resolve(resolve).map_err(|why| config_error(path, why))?),
        };
        Ok(KmipConfig {
            path: path.to_owned(),
            servers: kmip.servers,
            ca: resolve(kmip.ca),
            client_cert: resolve(kmip.client_cert),
            client_key: resolve(kmip.client_key),
            timeout: Duration::from_millis(kmip.timeout_ms),
            name: kmip.name,
            cache_lifetime: Duration::from_secs(kmip.cache_seconds),
            persistence,
        })
    }

    /// The provider's name in messages: `kmip:PATH`.
    pub fn provider_name(&self) -> String {
        format!("kmip:{}", self.path.display())
    }
}
