//! The `trusted:CONFIG` file: which attestation authorities, the CA of their certificates, this host's
//! TPM, and optional key persistence.
//!
//! ```toml
//! [trusted]
//! authorities = ["https://vta1.example:8443", "https://vta2.example:8443"]  # in order: failover
//! ca = "authority-ca.pem"       # the CA that signed the authorities' TLS certificates
//! tcti = "device:/dev/tpmrm0"   # this host's TPM (or "swtpm:host=127.0.0.1,port=2321")
//! name = "vta"                  # the provider id kept in every key reference (default "trusted")
//! timeout_ms = 3000             # connect and each request (default 3000)
//! cache_seconds = 300           # how long a released KEK is used without asking again (default 300)
//!
//! [persistence]                 # optional: KEKs kept sealed by the TPM, as for `kmip:`
//! store = "keys.sealed"
//! tcti = "device:/dev/tpmrm0"
//! ```
//!
//! Relative paths are relative to the configuration file; unknown keys are refused.

use crate::error::{Error, ProviderFault, Result};
use crate::keys::check_id;
use crate::keys::kmip::{PersistenceConfig, PersistenceSection, read_for};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed `trusted:CONFIG` file.
#[derive(Clone, Debug)]
pub struct TrustedConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// The authorities' base URLs (`https://host:port`), in the order they are tried.
    pub authorities: Vec<String>,
    /// The CA certificate(s) that sign the authorities' TLS certificates.
    pub ca: PathBuf,
    /// This host's TPM.
    pub tcti: String,
    /// The provider id in key references.
    pub name: String,
    /// Limit on connecting and on each request.
    pub timeout: Duration,
    /// How long the in-memory cache keeps a KEK.
    pub cache_lifetime: Duration,
    /// Key persistence, if configured.
    pub persistence: Option<PersistenceConfig>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    trusted: Section,
    persistence: Option<PersistenceSection>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    authorities: Vec<String>,
    ca: PathBuf,
    tcti: String,
    #[serde(default = "default_name")]
    name: String,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_cache_seconds")]
    cache_seconds: u64,
}

fn default_name() -> String {
    "trusted".into()
}

fn default_timeout() -> u64 {
    3000
}

fn default_cache_seconds() -> u64 {
    300
}

impl TrustedConfig {
    /// Reads and checks a configuration file (not the files it names).
    pub fn load(path: impl AsRef<Path>) -> Result<TrustedConfig> {
        let path = path.as_ref();
        let provider = format!("trusted:{}", path.display());
        let bad = |reason: String| Error::KeyProvider {
            provider: provider.clone(),
            fault: ProviderFault::Misconfigured,
            reason,
        };
        let text = read_for(&provider, "the configuration file", path, false)?;
        let text = core::str::from_utf8(&text).map_err(|_| bad("the file is not UTF-8 text".into()))?;
        let file: File = toml::from_str(text)
            .map_err(|err| bad(format!("not a valid configuration: {}", err.message().trim_end())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let section = file.trusted;
        if section.authorities.is_empty() {
            return Err(bad("`authorities` lists no attestation authority".into()));
        }
        if let Some(url) = section.authorities.iter().find(|url| !url.starts_with("https://")) {
            return Err(bad(format!("authority {url:?} is not an https:// URL")));
        }
        if !(1..=600_000).contains(&section.timeout_ms) {
            return Err(bad("`timeout_ms` must be 1 to 600000".into()));
        }
        check_id(&section.name).map_err(|_| {
            bad("`name` must be 1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'".into())
        })?;
        let persistence = match file.persistence {
            None => None,
            Some(p) => Some(p.resolve(resolve).map_err(bad)?),
        };
        Ok(TrustedConfig {
            path: path.to_owned(),
            authorities: section.authorities.iter().map(|url| url.trim_end_matches('/').to_owned()).collect(),
            ca: resolve(section.ca),
            tcti: section.tcti,
            name: section.name,
            timeout: Duration::from_millis(section.timeout_ms),
            cache_lifetime: Duration::from_secs(section.cache_seconds),
            persistence,
        })
    }

    /// The provider's name in messages: `trusted:PATH`.
    pub fn provider_name(&self) -> String {
        format!("trusted:{}", self.path.display())
    }
}
