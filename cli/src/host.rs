//! `sectorcrypt host ...`: what a host hands to the attestation authority.

use anyhow::{Context, Result};
use sectorcrypt::files::read_small;
use sectorcrypt::trusted::image::{BaseImage, DEFAULT_PCRS};
use std::io::Write;
use std::path::PathBuf;

/// The largest event log taken: firmware logs are tens of kilobytes.
const MAX_EVENT_LOG: usize = 16 << 20;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum HostCommand {
    /// Describe the base image this host booted (the PCR values its TPM holds, and its firmware event
    /// log) in a file for `authority image import`: run it on a test host upgraded to the new image.
    ImageExport(ImageExportArgs),
    /// Attest to the authorities of a trusted provider now and say which base image they found.
    Attest {
        /// The provider: trusted:CONFIG.
        #[arg(long, env = sectorcrypt::keys::KEY_PROVIDER_ENV, value_name = "SPEC")]
        key_provider: String,
    },
}

#[derive(clap::Args, Debug)]
#[command(disable_version_flag = true)]
pub(crate) struct ImageExportArgs {
    /// The TPM: device:/dev/tpmrm0, swtpm:host=H,port=P, mssim:...
    #[arg(long, value_name = "TCTI")]
    tcti: String,
    /// The image's name, as the authority will list it.
    #[arg(long)]
    name: String,
    /// The image's version.
    #[arg(long = "version", value_name = "V")]
    image_version: String,
    /// The SHA-256 PCRs to export, ascending (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_PCRS, value_name = "N,...")]
    pcrs: Vec<u8>,
    /// The firmware's event log to include (on Linux /sys/kernel/security/tpm0/binary_bios_measurements).
    #[arg(long, value_name = "FILE")]
    event_log: Option<PathBuf>,
    /// The description file to write (a new file).
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// Replace --to if it exists.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(command: HostCommand) -> Result<()> {
    match command {
        HostCommand::ImageExport(args) => image_export(&args),
        HostCommand::Attest { key_provider } => attest(&key_provider),
    }
}

fn attest(spec: &str) -> Result<()> {
    let Some(config) = spec.trim().strip_prefix("trusted:").filter(|c| !c.is_empty()) else {
        anyhow::bail!("host attest needs a trusted:CONFIG key provider, not {spec:?}");
    };
    let provider = sectorcrypt::trusted::TrustedProvider::open(config)?;
    let image = provider.attest()?;
    outln!("attested: this host runs base image {} {} ({})", image.name, image.version, image.id);
    Ok(())
}

fn image_export(args: &ImageExportArgs) -> Result<()> {
    let log = match &args.event_log {
        Some(path) => Some(
            read_small(path, MAX_EVENT_LOG)
                .with_context(|| format!("cannot read the event log {}", path.display()))?,
        ),
        None => None,
    };
    // Checked before the TPM is asked, and before anything is written.
    let file = crate::output::new_file(&args.to, args.force, 0o644)?;
    let image = BaseImage::export(
        &args.tcti,
        &args.name,
        &args.image_version,
        &args.pcrs,
        log.as_deref().map(|l| &l[..]),
    )?;
    file.file().write_all(image.to_json().as_bytes())?;
    file.commit()?;
    outln!(
        "exported base image {} {} ({} PCRs{}) to {}",
        image.name,
        image.image_version,
        image.pcrs.len(),
        if image.event_log.is_some() { ", event log" } else { "" },
        args.to.display()
    );
    Ok(())
}
