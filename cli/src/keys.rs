//! `sectorcrypt keys ...`: the native provider's KDK (init, backup, restore) and wrapped data keys
//! (new, info, check, rewrap).

use anyhow::{Context, Result, bail};
use sectorcrypt::KeySize;
use sectorcrypt::files::{AtomicFile, Overwrite, read_small};
use sectorcrypt::keys::{
    KEY_PROVIDER_ENV, KeyProvider, MAX_BLOB_LEN, NativeProvider, WrappedDek, open_provider,
};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The longest passphrase file read; a longer one (or `/dev/zero`) is refused.
const MAX_PASSPHRASE_FILE: usize = 4096;

/// Where a passphrase comes from when `--passphrase-file` is not given.
const PASSPHRASE_ENV: &str = "SECTORCRYPT_PASSPHRASE";

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Command {
    /// The native key provider: a key-derivation key (KDK) file from which KEKs are derived.
    Native {
        #[command(subcommand)]
        command: NativeCommand,
    },
    /// The standard key provider: KMIP key servers (check the connection, revoke or destroy a key).
    Kmip {
        #[command(subcommand)]
        command: super::kmip::KmipCommand,
    },
    /// Key persistence of a KMIP configuration: the TPM-sealed store of fetched keys.
    Persistence {
        #[command(subcommand)]
        command: super::kmip::PersistenceCommand,
    },
    /// Make a new random data key (DEK), wrap it under a KEK from the key provider and write the blob.
    New {
        /// File to write the wrapped key to (must not exist).
        #[arg(long, value_name = "PATH", alias = "out")]
        to: PathBuf,
        #[command(flatten)]
        key: NewKeyArgs,
    },
    /// Show what a wrapped key blob holds (cipher, KEK reference, verifier); needs no key.
    Info {
        /// The wrapped key file.
        blob: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that the key provider can unwrap a wrapped key and that it matches its verifier.
    Check {
        /// The wrapped key file.
        blob: PathBuf,
        #[command(flatten)]
        provider: KeyProviderArg,
    },
    /// Shallow rekey of a wrapped key file: the same DEK wrapped under a new KEK (replaced atomically).
    Rewrap {
        /// The wrapped key file.
        blob: PathBuf,
        /// Id of the new KEK (default: a fresh random id).
        #[arg(long, value_name = "ID")]
        new_key_id: Option<String>,
        #[command(flatten)]
        provider: KeyProviderArg,
    },
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum NativeCommand {
    /// Create a new random KDK file with mode 0600 (refuses to overwrite).
    Init {
        /// Where to create the KDK file.
        #[arg(long, value_name = "PATH")]
        kdk: PathBuf,
    },
    /// Write a passphrase-protected backup of a KDK (argon2id + AES-256-GCM).
    Backup {
        /// The KDK file.
        #[arg(long, value_name = "PATH")]
        kdk: PathBuf,
        /// The backup file to create (must not exist).
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArg,
    },
    /// Restore a KDK from a backup into a new KDK file (refuses to overwrite).
    Restore {
        /// The backup file.
        #[arg(long, value_name = "PATH")]
        from: PathBuf,
        /// The KDK file to create.
        #[arg(long, value_name = "PATH")]
        kdk: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArg,
    },
}

/// `--key-provider`, shared by every command that needs a key.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct KeyProviderArg {
    /// Key provider: native:PATH (a KDK file made by `keys native init`), kmip:CONFIG (a KMIP
    /// configuration file; see docs/KEYS.md) or trusted:CONFIG (attestation authorities; see
    /// docs/TRUSTED.md).
    #[arg(long, env = KEY_PROVIDER_ENV, value_name = "SPEC")]
    key_provider: String,
}

impl KeyProviderArg {
    pub(crate) fn open(&self) -> Result<Box<dyn KeyProvider>> {
        open_announced(&self.key_provider)
    }

    /// The spec as given, for the files it names.
    pub(crate) fn spec(&self) -> Option<&str> {
        Some(&self.key_provider)
    }
}

/// Opens a provider whose notices (a key used from persistence while the key server is down) go to
/// stderr as they arise, once each.
pub(crate) fn open_announced(spec: &str) -> Result<Box<dyn KeyProvider>> {
    Ok(Box::new(Announced(open_provider(spec)?)))
}

#[derive(Debug)]
struct Announced(Box<dyn KeyProvider>);

impl Announced {
    fn announce<T>(&self, out: sectorcrypt::Result<T>) -> sectorcrypt::Result<T> {
        for notice in self.0.take_notices() {
            eprintln!("sectorcrypt: warning: {notice}");
        }
        out
    }
}

impl KeyProvider for Announced {
    fn name(&self) -> String {
        self.0.name()
    }

    fn create_kek(&self, key_id: Option<&str>) -> sectorcrypt::Result<sectorcrypt::keys::KeyRef> {
        self.announce(self.0.create_kek(key_id))
    }

    fn get_kek(&self, key_ref: &sectorcrypt::keys::KeyRef) -> sectorcrypt::Result<sectorcrypt::keys::Kek> {
        self.announce(self.0.get_kek(key_ref))
    }
}

/// How a new data key is made: its cipher, the id of the KEK that wraps it, and the provider.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct NewKeyArgs {
    #[command(flatten)]
    pub(crate) cipher: CipherArg,
    /// Id of the KEK at the provider (default: a fresh random id).
    #[arg(long, value_name = "ID")]
    pub(crate) key_id: Option<String>,
    #[command(flatten)]
    pub(crate) provider: KeyProviderArg,
}

/// `--cipher`, for commands that make a new data key.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct CipherArg {
    /// Cipher of the new data key.
    #[arg(long, value_enum, default_value = "aes-256")]
    cipher: Cipher,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Cipher {
    /// XTS-AES-256 (two 256-bit keys).
    #[value(name = "aes-256")]
    Aes256,
    /// XTS-AES-128 (two 128-bit keys).
    #[value(name = "aes-128")]
    Aes128,
}

impl CipherArg {
    pub(crate) fn size(&self) -> KeySize {
        match self.cipher {
            Cipher::Aes256 => KeySize::Aes256,
            Cipher::Aes128 => KeySize::Aes128,
        }
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct PassphraseArg {
    /// Read the passphrase from this file (one trailing newline is ignored). Without it: the
    /// SECTORCRYPT_PASSPHRASE environment variable, or a prompt on the terminal.
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,
}

impl PassphraseArg {
    /// The passphrase file, if one is given.
    pub(crate) fn file(&self) -> Option<&Path> {
        self.passphrase_file.as_deref()
    }

    /// The passphrase: from the file, the environment, or a prompt (twice if `confirm`).
    pub(crate) fn read(&self, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
        if let Some(path) = &self.passphrase_file {
            let mut text =
                read_small(path, MAX_PASSPHRASE_FILE).context("cannot read the passphrase file")?;
            if text.last() == Some(&b'\n') {
                text.pop();
                if text.last() == Some(&b'\r') {
                    text.pop();
                }
            }
            return Ok(text);
        }
        if let Some(text) = std::env::var_os(PASSPHRASE_ENV) {
            return Ok(Zeroizing::new(text.into_encoded_bytes()));
        }
        if !std::io::stdin().is_terminal() {
            bail!("no passphrase: give --passphrase-file or set {PASSPHRASE_ENV}");
        }
        let first = Zeroizing::new(rpassword::prompt_password("Passphrase: ")?);
        if confirm {
            let second = Zeroizing::new(rpassword::prompt_password("Passphrase again: ")?);
            if *first != *second {
                bail!("the two passphrases differ");
            }
        }
        Ok(Zeroizing::new(first.as_bytes().to_vec()))
    }
}

pub(crate) fn run(command: Command) -> Result<()> {
    match command {
        Command::Native { command } => native(command),
        Command::Kmip { command } => super::kmip::run_kmip(command),
        Command::Persistence { command } => super::kmip::run_persistence(command),
        Command::New { to, key: NewKeyArgs { cipher, key_id, provider } } => {
            if std::fs::symlink_metadata(&to).is_ok() {
                bail!("{} already exists; refusing to overwrite it", to.display());
            }
            let provider = provider.open()?;
            let (_dek, wrapped) = provider.new_wrapped_dek(cipher.size(), key_id.as_deref())?;
            write_blob(&to, &wrapped, Overwrite::Refuse)?;
            outln!(
                "wrapped XTS-{} key under {} in {}",
                cipher.size().name().to_uppercase(),
                wrapped.key_ref(),
                to.display()
            );
            Ok(())
        }
        Command::Info { blob, json } => {
            let wrapped = read_blob(&blob)?;
            let key_ref = wrapped.key_ref();
            if json {
                let info = serde_json::json!({
                    "cipher": format!("xts-{}", wrapped.dek_size().name()),
                    "wrapping": "aes-256-kwp",
                    "key_ref": key_ref.to_string(),
                    "provider_kind": key_ref.kind().name(),
                    "provider_id": key_ref.provider_id(),
                    "key_id": key_ref.key_id(),
                    "verifier": hex::encode(wrapped.verifier()),
                });
                outln!("{info}");
            } else {
                outln!("cipher     XTS-{}", wrapped.dek_size().name().to_uppercase());
                outln!("wrapping   AES-256 key wrap with padding (RFC 5649)");
                outln!("key_ref    {key_ref}");
                outln!("verifier   {}", hex::encode(wrapped.verifier()));
            }
            Ok(())
        }
        Command::Check { blob, provider } => {
            let wrapped = read_blob(&blob)?;
            provider.open()?.unwrap_dek(&wrapped).with_context(|| format!("{}", blob.display()))?;
            outln!("ok: {} unwraps with {} and matches its verifier", blob.display(), wrapped.key_ref());
            Ok(())
        }
        Command::Rewrap { blob, new_key_id, provider } => {
            let wrapped = read_blob(&blob)?;
            let rewrapped = provider
                .open()?
                .rewrap_dek(&wrapped, new_key_id.as_deref())
                .with_context(|| format!("{}", blob.display()))?;
            write_blob(&blob, &rewrapped, Overwrite::Replace)?;
            outln!(
                "{}: now wrapped under {} (was {})",
                blob.display(),
                rewrapped.key_ref(),
                wrapped.key_ref()
            );
            Ok(())
        }
    }
}

fn native(command: NativeCommand) -> Result<()> {
    match command {
        NativeCommand::Init { kdk } => {
            let provider = NativeProvider::init(&kdk)?;
            outln!("created KDK {} (fingerprint {})", kdk.display(), provider.fingerprint());
            outln!("back it up with: sectorcrypt keys native backup --kdk {} --to BACKUP", kdk.display());
        }
        NativeCommand::Backup { kdk, to, passphrase } => {
            let provider = NativeProvider::open(&kdk)?;
            if to.exists() {
                bail!("{} already exists; refusing to overwrite it", to.display());
            }
            provider.backup(&passphrase.read(true)?, &to)?;
            outln!(
                "backed up KDK {} (fingerprint {}) to {}",
                kdk.display(),
                provider.fingerprint(),
                to.display()
            );
        }
        NativeCommand::Restore { from, kdk, passphrase } => {
            if kdk.exists() {
                bail!("{} already exists; refusing to overwrite it", kdk.display());
            }
            let provider = NativeProvider::restore(&from, &passphrase.read(false)?, &kdk)?;
            outln!(
                "restored KDK {} (fingerprint {}) from {}",
                kdk.display(),
                provider.fingerprint(),
                from.display()
            );
        }
    }
    Ok(())
}

/// Reads and parses a wrapped-key file (bounded: a larger file is no wrapped key).
pub(crate) fn read_blob(path: &Path) -> Result<WrappedDek> {
    let bytes =
        read_small(path, MAX_BLOB_LEN).with_context(|| format!("{} is not a wrapped key", path.display()))?;
    WrappedDek::from_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

fn write_blob(path: &Path, wrapped: &WrappedDek, overwrite: Overwrite) -> Result<()> {
    let output = AtomicFile::create(path, overwrite, 0o600)?;
    output
        .file()
        .write_all(&wrapped.to_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(output.commit()?)
}
