//! `sectorcrypt keys kmip ...` and `keys persistence ...`: the standard key provider's servers and the
//! TPM-sealed store of the keys fetched from them.

use anyhow::{Result, bail};
use sectorcrypt::keys::kmip::{KmipProvider, RevocationReason};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum KmipCommand {
    /// Connect to the first key server that answers and print its versions and vendor.
    Check {
        /// The KMIP configuration file.
        config: PathBuf,
    },
    /// Revoke a key on the key server: disks whose KEK it is no longer open, and hosts that persisted
    /// it remove their copy as soon as they reach the server.
    Revoke {
        /// The KMIP configuration file.
        config: PathBuf,
        /// The key's unique identifier on the server (the key id in `keys info`).
        #[arg(long, value_name = "ID")]
        key_id: String,
        /// Why: compromised keys become Compromised, the others Deactivated.
        #[arg(long, value_enum, default_value = "cessation-of-operation")]
        reason: Reason,
    },
    /// Destroy a revoked key on the key server (data under it is lost for good).
    Destroy {
        /// The KMIP configuration file.
        config: PathBuf,
        /// The key's unique identifier on the server.
        #[arg(long, value_name = "ID")]
        key_id: String,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum Reason {
    /// The key may be known to someone else.
    KeyCompromise,
    /// A newer key replaces it.
    Superseded,
    /// It is no longer needed.
    CessationOfOperation,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum PersistenceCommand {
    /// List the keys the store keeps and check that this host's TPM unseals it.
    Status {
        /// The KMIP configuration file, or trusted:CONFIG (its [persistence] section).
        config: PathBuf,
    },
    /// Delete the store: keys are fetched (and persisted again) from the key server when next used.
    /// After a TPM clear, this is how a host starts persisting again (docs/TRUSTED.md).
    Clear {
        /// The KMIP configuration file, or trusted:CONFIG (its [persistence] section).
        config: PathBuf,
    },
}

pub(crate) fn run_kmip(command: KmipCommand) -> Result<()> {
    match command {
        KmipCommand::Check { config } => {
            let provider = KmipProvider::open(&config)?;
            let info = provider.client().check()?;
            for skipped in &info.skipped {
                eprintln!("sectorcrypt: warning: {skipped}");
            }
            let versions: Vec<String> =
                info.server_versions.iter().map(|(a, b)| format!("{a}.{b}")).collect();
            outln!("ok: key server {} answered over {}", info.server, info.tls);
            outln!(
                "protocol   KMIP {}.{} (the server offers {})",
                info.protocol.0,
                info.protocol.1,
                versions.join(", ")
            );
            outln!("vendor     {}", info.vendor.as_deref().unwrap_or("(not given)"));
            match provider.store() {
                Some(store) => outln!("persistence on: {}", store.path().display()),
                None => outln!("persistence off"),
            }
        }
        KmipCommand::Revoke { config, key_id, reason } => {
            let reason = match reason {
                Reason::KeyCompromise => RevocationReason::KeyCompromise,
                Reason::Superseded => RevocationReason::Superseded,
                Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            };
            let provider = KmipProvider::open(&config)?;
            provider.client().revoke(&key_id, reason)?;
            outln!("revoked key {key_id}: it is now {}", provider.client().state(&key_id)?.name());
        }
        KmipCommand::Destroy { config, key_id } => {
            KmipProvider::open(&config)?.client().destroy(&key_id)?;
            outln!("destroyed key {key_id}");
        }
    }
    Ok(())
}

pub(crate) fn run_persistence(command: PersistenceCommand) -> Result<()> {
    let config = match &command {
        PersistenceCommand::Status { config } | PersistenceCommand::Clear { config } => config,
    };
    let text = config.to_string_lossy();
    let store = match text.strip_prefix("trusted:") {
        Some(path) => sectorcrypt::trusted::TrustedProvider::open(path)?.store().cloned(),
        None => KmipProvider::open(text.strip_prefix("kmip:").unwrap_or(&text))?.store().cloned(),
    };
    let Some(store) = store else {
        bail!(
            "{}: key persistence is off (the configuration has no [persistence] section)",
            config.display()
        );
    };
    match command {
        PersistenceCommand::Status { .. } => match store.list()? {
            None => {
                outln!("{}: no store yet (keys are persisted when first fetched)", store.path().display())
            }
            Some(keys) => {
                outln!("{}: {} key(s)", store.path().display(), keys.len());
                for key in &keys {
                    outln!("  {}  stored at {} (Unix time)", key.key_ref, key.stored_at);
                }
                store.check()?;
                outln!("ok: this host's TPM unseals it");
            }
        },
        PersistenceCommand::Clear { .. } => {
            if store.clear()? {
                outln!("{}: deleted", store.path().display());
            } else {
                outln!("{}: no store to delete", store.path().display());
            }
        }
    }
    Ok(())
}
