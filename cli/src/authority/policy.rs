//! The authority's configuration (`AUTH.toml`) and its policy: a directory of small files that the
//! admin commands edit and every request reads afresh, so an edit takes effect at once on every replica
//! that shares the directory, with no reload to signal and no state of its own to keep in step.
//!
//! ```text
//! POLICY/token.key          ES256 key (PKCS#8 PEM, mode 0600) that signs and verifies tokens
//! POLICY/images/ID.json     base images (the `host image-export` format); ID from their PCR values
//! POLICY/tpm-ca/FP.pem      CA certificates trusted to sign EK certificates
//! POLICY/eks/ID.pub         endorsement keys trusted by themselves (TPMT_PUBLIC, or TPM2B_PUBLIC)
//! ```

use anyhow::{Context, Result, bail};
use sectorcrypt::files::read_small;
use sectorcrypt::trusted::image::{BaseImage, check_selection};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest policy or configuration file read.
const MAX_FILE: usize = 64 << 20;

/// `AUTH.toml`.
#[derive(Debug, Clone)]
pub(crate) struct AuthConfig {
    pub(crate) listen: String,
    pub(crate) tls_cert: PathBuf,
    pub(crate) tls_key: PathBuf,
    pub(crate) policy: PathBuf,
    pub(crate) kmip: PathBuf,
    pub(crate) pcrs: Vec<u8>,
    pub(crate) token_lifetime: Duration,
    pub(crate) challenge_lifetime: Duration,
    pub(crate) issuer: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    authority: Section,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    listen: String,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    policy: PathBuf,
    kmip: PathBuf,
    #[serde(default = "default_pcrs")]
    pcrs: Vec<u8>,
    #[serde(default = "default_token_seconds")]
    token_seconds: u64,
    #[serde(default = "default_challenge_seconds")]
    challenge_seconds: u64,
    #[serde(default = "default_issuer")]
    issuer: String,
}

fn default_pcrs() -> Vec<u8> {
    sectorcrypt::trusted::image::DEFAULT_PCRS.to_vec()
}

fn default_token_seconds() -> u64 {
    300
}

fn default_challenge_seconds() -> u64 {
    60
}

fn default_issuer() -> String {
    "sectorcrypt-authority".into()
}

impl AuthConfig {
    pub(crate) fn load(path: &Path) -> Result<AuthConfig> {
        let text = read_small(path, MAX_FILE).with_context(|| format!("cannot read {}", path.display()))?;
        let text = std::str::from_utf8(&text).with_context(|| format!("{} is not UTF-8", path.display()))?;
        let file: File = toml::from_str(text)
            .map_err(|err| anyhow::anyhow!("{}: {}", path.display(), err.message().trim_end()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let s = file.authority;
        check_selection(&s.pcrs).with_context(|| format!("{}: `pcrs`", path.display()))?;
        if !(1..=86_400).contains(&s.token_seconds) {
            bail!("{}: `token_seconds` must be 1 to 86400", path.display());
        }
        if !(1..=3_600).contains(&s.challenge_seconds) {
            bail!("{}: `challenge_seconds` must be 1 to 3600", path.display());
        }
        Ok(AuthConfig {
            listen: s.listen,
            tls_cert: resolve(s.tls_cert),
            tls_key: resolve(s.tls_key),
            policy: resolve(s.policy),
            kmip: resolve(s.kmip),
            pcrs: s.pcrs,
            token_lifetime: Duration::from_secs(s.token_seconds),
            challenge_lifetime: Duration::from_secs(s.challenge_seconds),
            issuer: s.issuer,
        })
    }

    pub(crate) fn token_key(&self) -> PathBuf {
        self.policy.join("token.key")
    }

    pub(crate) fn dir(&self, which: &str) -> PathBuf {
        self.policy.join(which)
    }
}

/// An imported base image.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) id: String,
    pub(crate) image: BaseImage,
}

/// The id of the image whose PCRs hold `values` (ascending): the first 16 bytes of the SHA-256 of
/// each index and value, hex. Hosts are told this id when their image is unknown, and the admin
/// sees the same id in `image list` once the image is imported.
pub(crate) fn image_id(values: &[(u8, [u8; 32])]) -> String {
    let mut hash = Sha256::new();
    for (index, value) in values {
        hash.update([*index]);
        hash.update(value);
    }
    hex::encode(&hash.finalize()[..16])
}

impl Image {
    /// The image's values of `pcrs`, if it describes them all.
    pub(crate) fn values_of(&self, pcrs: &[u8]) -> Option<Vec<(u8, [u8; 32])>> {
        let all = self.image.pcr_values();
        pcrs.iter().map(|index| all.iter().find(|(i, _)| i == index).copied()).collect()
    }
}

/// The policy as the files say now.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    pub(crate) images: Vec<Image>,
    /// DER certificates.
    pub(crate) cas: Vec<Vec<u8>>,
    /// EK ids.
    pub(crate) eks: Vec<String>,
}

/// The files of `dir` named `*.EXT` (a missing directory holds none), sorted.
pub(crate) fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
        // Temporary files of an admin command being written are not policy yet.
        let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
        if !hidden && path.extension().and_then(|e| e.to_str()) == Some(ext) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

impl Policy {
    pub(crate) fn load(config: &AuthConfig) -> Result<Policy> {
        let mut policy = Policy::default();
        for path in files(&config.dir("images"), "json")? {
            let bytes =
                read_small(&path, MAX_FILE).with_context(|| format!("cannot read {}", path.display()))?;
            let image = BaseImage::from_json(&bytes).with_context(|| format!("{}", path.display()))?;
            let id = image_id(&image.pcr_values());
            policy.images.push(Image { id, image });
        }
        for path in files(&config.dir("tpm-ca"), "pem")? {
            let bytes =
                read_small(&path, MAX_FILE).with_context(|| format!("cannot read {}", path.display()))?;
            policy.cas.extend(pem_certificates(&bytes).with_context(|| format!("{}", path.display()))?);
        }
        for path in files(&config.dir("eks"), "pub")? {
            let bytes =
                read_small(&path, MAX_FILE).with_context(|| format!("cannot read {}", path.display()))?;
            let id = sectorcrypt::trusted::credential::ek_id(&bytes)
                .with_context(|| format!("{}", path.display()))?;
            policy.eks.push(id);
        }
        Ok(policy)
    }

    /// The imported image whose values of `pcrs` are `values`.
    pub(crate) fn image_matching(&self, pcrs: &[u8], values: &[(u8, [u8; 32])]) -> Option<&Image> {
        self.images.iter().find(|image| image.values_of(pcrs).as_deref() == Some(values))
    }
}

/// `der` as a PEM block with this label (base64 in lines of 64). The token key goes through here, so
/// the base64 is zeroized after use and the block is written into one allocation of its final size:
/// no intermediate copy of the key is left in freed memory (the caller zeroizes the result).
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let (begin, end) = (format!("-----BEGIN {label}-----\n"), format!("-----END {label}-----\n"));
    let mut out = String::with_capacity(begin.len() + body.len() + body.len().div_ceil(64) + end.len());
    out.push_str(&begin);
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&end);
    out
}

/// The certificates of a PEM file, DER.
pub(crate) fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for item in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let item = item.map_err(|err| anyhow::anyhow!("not a PEM file: {err}"))?;
        if item.label == "CERTIFICATE" {
            out.push(item.contents);
        }
    }
    if out.is_empty() {
        bail!("holds no certificate");
    }
    Ok(out)
}
