//! `sectorcrypt authority ...`: the attestation authority (vSphere Trust Authority's Attestation
//! Service and Key Provider Service in one server) and the admin commands that edit its policy.

mod policy;
mod serve;
mod tls;
mod token;
mod verify;

use anyhow::{Context, Result, bail};
use policy::{AuthConfig, Policy, files, image_id, pem_certificates};
use sectorcrypt::files::read_small;
use sectorcrypt::trusted::image::BaseImage;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum AuthorityCommand {
    /// Create the policy directory and the token signing key (keeps what exists).
    Init(ConfigArg),
    /// Serve attestation and key requests over HTTPS, reading the policy at every request.
    Serve(ConfigArg),
    /// The base images hosts may run.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// The CAs trusted to sign endorsement key certificates.
    TpmCa {
        #[command(subcommand)]
        command: TpmCaCommand,
    },
    /// Endorsement keys trusted by themselves (TPMs without a certificate from a trusted CA).
    Ek {
        #[command(subcommand)]
        command: EkCommand,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct ConfigArg {
    /// The authority's configuration.
    #[arg(long, value_name = "AUTH.toml")]
    config: PathBuf,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum ImageCommand {
    /// Import a base image description (from `host image-export` on an upgraded test host).
    Import {
        /// The description file.
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List the imported base images.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove a base image: hosts running it get no key from then on, tokens already out included.
    Remove {
        /// The image's id (`image list`).
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum TpmCaCommand {
    /// Trust a CA certificate (PEM) to sign EK certificates (for swtpm_setup: its issuercert.pem).
    Import {
        /// The PEM file.
        pem: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum EkCommand {
    /// Trust one endorsement key: from a file (TPM2B_PUBLIC or TPMT_PUBLIC, as `tpm2_createek -u`
    /// writes it) or read from this host's TPM.
    Import {
        /// The EK's public area.
        #[arg(required_unless_present = "from_host", conflicts_with = "from_host")]
        file: Option<PathBuf>,
        /// Read the EK from the TPM at --tcti instead.
        #[arg(long, requires = "tcti")]
        from_host: bool,
        /// The TPM, with --from-host.
        #[arg(long, value_name = "TCTI", requires = "from_host")]
        tcti: Option<String>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub(crate) fn run(command: AuthorityCommand) -> Result<()> {
    match command {
        AuthorityCommand::Init(c) => init(&AuthConfig::load(&c.config)?),
        AuthorityCommand::Serve(c) => serve::serve(AuthConfig::load(&c.config)?),
        AuthorityCommand::Image { command: ImageCommand::Import { file, config } } => {
            image_import(&AuthConfig::load(&config.config)?, &file)
        }
        AuthorityCommand::Image { command: ImageCommand::List { json, config } } => {
            image_list(&AuthConfig::load(&config.config)?, json)
        }
        AuthorityCommand::Image { command: ImageCommand::Remove { id, config } } => {
            image_remove(&AuthConfig::load(&config.config)?, &id)
        }
        AuthorityCommand::TpmCa { command: TpmCaCommand::Import { pem, config } } => {
            tpm_ca_import(&AuthConfig::load(&config.config)?, &pem)
        }
        AuthorityCommand::Ek { command: EkCommand::Import { file, from_host: _, tcti, config } } => {
            ek_import(&AuthConfig::load(&config.config)?, file.as_deref(), tcti.as_deref())
        }
    }
}

fn create_dirs(config: &AuthConfig) -> Result<()> {
    for dir in ["images", "tpm-ca", "eks"] {
        let path = config.dir(dir);
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    }
    Ok(())
}

/// Writes `bytes` to a new policy file, refusing one that exists with `exists`.
fn add_file(path: &Path, bytes: &[u8], exists: impl FnOnce() -> String) -> Result<()> {
    if path.exists() {
        bail!("{}", exists());
    }
    let file = crate::output::new_file(path, false, 0o644)?;
    file.file().write_all(bytes)?;
    file.commit()?;
    Ok(())
}

fn init(config: &AuthConfig) -> Result<()> {
    create_dirs(config)?;
    let key = config.token_key();
    if key.exists() {
        token::TokenKeys::load(&key)?;
        outln!("policy {} is ready (token key kept)", config.policy.display());
    } else {
        token::generate(&key)?;
        outln!("policy {} is ready (new token key {})", config.policy.display(), key.display());
    }
    Ok(())
}

fn image_import(config: &AuthConfig, file: &Path) -> Result<()> {
    let bytes = read_small(file, 64 << 20).with_context(|| format!("cannot read {}", file.display()))?;
    let image = BaseImage::from_json(&bytes).with_context(|| format!("{}", file.display()))?;
    let image = policy::Image { id: image_id(&image.pcr_values()), image };
    if image.values_of(&config.pcrs).is_none() {
        bail!(
            "{} describes PCRs {}, but the authority attests PCRs {}: export it again with --pcrs {}",
            file.display(),
            verify::ranges(&image.image.pcrs.iter().map(|p| p.index).collect::<Vec<_>>()),
            verify::ranges(&config.pcrs),
            verify::ranges(&config.pcrs)
        );
    }
    create_dirs(config)?;
    let path = config.dir("images").join(format!("{}.json", image.id));
    add_file(&path, image.image.to_json().as_bytes(), || {
        format!(
            "base image {} ({} {}) is imported already",
            image.id, image.image.name, image.image.image_version
        )
    })?;
    outln!("imported base image {} ({} {})", image.id, image.image.name, image.image.image_version);
    Ok(())
}

fn image_list(config: &AuthConfig, json: bool) -> Result<()> {
    let policy = Policy::load(config)?;
    if json {
        let list: Vec<_> = policy
            .images
            .iter()
            .map(|i| {
                serde_json::json!({"id": i.id, "name": i.image.name, "version": i.image.image_version,
                "pcrs": i.image.pcrs.iter().map(|p| p.index).collect::<Vec<_>>()})
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    outln!("{:<32}  {:<24}  {:<16}  PCRS", "ID", "NAME", "VERSION");
    for i in &policy.images {
        let pcrs: Vec<u8> = i.image.pcrs.iter().map(|p| p.index).collect();
        outln!(
            "{:<32}  {:<24}  {:<16}  {}",
            i.id,
            i.image.name,
            i.image.image_version,
            verify::ranges(&pcrs)
        );
    }
    Ok(())
}

fn image_remove(config: &AuthConfig, id: &str) -> Result<()> {
    let valid = id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let path = config.dir("images").join(format!("{id}.json"));
    if !valid || !files(&config.dir("images"), "json")?.contains(&path) {
        bail!("no base image {id:?} in the policy (see `authority image list`)");
    }
    let policy = Policy::load(config)?;
    let image = policy.images.iter().find(|i| i.id == id).context("the image vanished")?;
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    outln!("removed base image {id} ({} {})", image.image.name, image.image.image_version);
    Ok(())
}

fn tpm_ca_import(config: &AuthConfig, pem: &Path) -> Result<()> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let bytes = read_small(pem, 1 << 20).with_context(|| format!("cannot read {}", pem.display()))?;
    let certs = pem_certificates(&bytes).with_context(|| format!("{}", pem.display()))?;
    // Every certificate is checked before any is written: a file is imported whole or not at all.
    let mut entries = Vec::with_capacity(certs.len());
    for der in &certs {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|_| anyhow::anyhow!("{}: a certificate does not parse", pem.display()))?;
        if !cert.is_ca() {
            bail!("{}: {} is not a CA certificate", pem.display(), cert.subject());
        }
        let fingerprint = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(der)[..16]);
        let path = config.dir("tpm-ca").join(format!("{fingerprint}.pem"));
        if path.exists() {
            bail!("TPM CA {} is trusted already", cert.subject());
        }
        entries.push((path, fingerprint, cert.subject().to_string(), der));
    }
    create_dirs(config)?;
    for (path, fingerprint, subject, der) in entries {
        let text = policy::pem("CERTIFICATE", der);
        add_file(&path, text.as_bytes(), || format!("TPM CA {subject} is trusted already"))?;
        outln!("trusting TPM CA {subject} ({fingerprint})");
    }
    Ok(())
}

fn ek_import(config: &AuthConfig, file: Option<&Path>, tcti: Option<&str>) -> Result<()> {
    let public = match (file, tcti) {
        (Some(file), _) => {
            read_small(file, 1 << 16).with_context(|| format!("cannot read {}", file.display()))?.to_vec()
        }
        (None, Some(tcti)) => sectorcrypt::trusted::host::identity(tcti)?.ek_public,
        (None, None) => bail!("name an EK file or --from-host --tcti TCTI"),
    };
    let id = sectorcrypt::trusted::credential::ek_id(&public)
        .context("not an endorsement key this authority accepts")?;
    create_dirs(config)?;
    let path = config.dir("eks").join(format!("{id}.pub"));
    add_file(&path, &public, || format!("endorsement key {id} is trusted already"))?;
    outln!("trusting endorsement key {id}");
    Ok(())
}
