//! `sectorcrypt raw encrypt|decrypt`: a file in, a file out, cut into XTS data units.
//!
//! Everything about the input is checked before the output exists. The result goes to a temporary file
//! beside the output and is renamed over it only when complete and synced, so a failure never leaves a
//! partial output (or a damaged one where a file of that name existed).

use super::BackendArg;
use anyhow::{Context, Result, bail};
use sectorcrypt::keys::open_provider;
use sectorcrypt::{DataUnits, Xts, XtsKey};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Bytes read, processed and written per step (rounded down to whole data units).
const CHUNK: usize = 16 << 20;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Direction {
    /// Encrypt INPUT into OUTPUT.
    Encrypt(Args),
    /// Decrypt INPUT into OUTPUT.
    Decrypt(Args),
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The XTS key, Key1 || Key2: 64 hex digits (XTS-AES-128) or 128 (XTS-AES-256).
    #[arg(long, value_name = "HEX", required_unless_present = "wrapped_key", conflicts_with = "wrapped_key")]
    key: Option<String>,
    /// Instead of --key: a wrapped data key (from `keys new`), unwrapped through --key-provider.
    #[arg(long, value_name = "PATH")]
    wrapped_key: Option<PathBuf>,
    /// Key provider for --wrapped-key: native:PATH.
    #[arg(long, env = sectorcrypt::keys::KEY_PROVIDER_ENV, value_name = "SPEC")]
    key_provider: Option<String>,
    /// Bytes per data unit: a power of two from 512 to 131072. The last unit may be shorter (>= 16).
    #[arg(long, value_name = "BYTES")]
    data_unit: usize,
    /// Number of the first data unit (plain64 tweak).
    #[arg(long, default_value_t = 0, value_name = "N")]
    first_unit: u64,
    /// Increment of the data-unit number from one unit to the next (8 = LUKS2 on 4 KiB sectors).
    #[arg(long, default_value_t = 1, value_name = "N")]
    tweak_step: u64,
    #[command(flatten)]
    backend: BackendArg,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    threads: usize,
    /// File to read.
    #[arg(long, value_name = "PATH")]
    input: PathBuf,
    /// File to write (replaced atomically when done).
    #[arg(long, value_name = "PATH")]
    output: PathBuf,
}

pub(crate) fn run(direction: Direction) -> Result<()> {
    let (args, decrypt) = match direction {
        Direction::Encrypt(args) => (args, false),
        Direction::Decrypt(args) => (args, true),
    };
    let dek;
    let hex_key;
    let key: &XtsKey = match (&args.key, &args.wrapped_key) {
        (Some(hex_digits), _) => {
            hex_key = XtsKey::from_hex(hex_digits).context("--key")?;
            &hex_key
        }
        (None, Some(path)) => {
            let Some(spec) = &args.key_provider else {
                bail!("--wrapped-key needs --key-provider (or {})", sectorcrypt::keys::KEY_PROVIDER_ENV);
            };
            let wrapped = super::keys::read_blob(path)?;
            dek = open_provider(spec)?.unwrap_dek(&wrapped).with_context(|| format!("{}", path.display()))?;
            dek.xts_key()
        }
        (None, None) => bail!("give --key or --wrapped-key"),
    };
    let units = DataUnits::new(args.data_unit)
        .and_then(|u| u.with_step(args.tweak_step))
        .map(|u| u.starting_at(args.first_unit))
        .context("--data-unit/--tweak-step")?;
    let xts = Xts::new(key, args.backend.choice()?)?;
    let mut input =
        File::open(&args.input).with_context(|| format!("cannot read {}", args.input.display()))?;
    let meta = input.metadata().with_context(|| format!("cannot read {}", args.input.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", args.input.display());
    }
    let len = meta.len();
    units.check(len).with_context(|| format!("{} ({len} bytes)", args.input.display()))?;

    let pool = super::pool(args.threads)?;
    let output = AtomicOutput::create(&args.output)?;
    let chunk_len = (CHUNK / units.size()).max(1) * units.size();
    let mut buf = vec![0u8; chunk_len.min(len as usize)];
    let mut writer = output.file();
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(chunk_len as u64) as usize;
        let piece = &mut buf[..n];
        input.read_exact(piece).with_context(|| format!("cannot read {}", args.input.display()))?;
        let first = units.first() + done / units.size() as u64 * units.step();
        let piece_units = units.starting_at(first);
        pool.install(|| {
            if decrypt {
                xts.decrypt_units_parallel(piece, piece_units)
            } else {
                xts.encrypt_units_parallel(piece, piece_units)
            }
        })?;
        writer.write_all(piece).with_context(|| format!("cannot write {}", args.output.display()))?;
        done += n as u64;
    }
    output.commit()
}

/// A temporary file beside the destination, renamed over it by `commit`; deleted if dropped first.
pub(crate) struct AtomicOutput {
    temp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl AtomicOutput {
    pub(crate) fn create(path: &Path) -> Result<AtomicOutput> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if path.is_dir() {
            bail!("{} is a directory", path.display());
        }
        let temp = tempfile::Builder::new()
            .prefix(".sectorcrypt-")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        Ok(AtomicOutput { temp, path: path.to_owned() })
    }

    pub(crate) fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// Like `commit`, but refuses (and writes nothing) if the destination appeared meanwhile.
    pub(crate) fn commit_new(self) -> Result<()> {
        self.temp.as_file().sync_all().with_context(|| format!("cannot write {}", self.path.display()))?;
        self.temp
            .persist_noclobber(&self.path)
            .with_context(|| format!("cannot create {} (it may already exist)", self.path.display()))?;
        Ok(())
    }

    pub(crate) fn commit(self) -> Result<()> {
        self.temp.as_file().sync_all().with_context(|| format!("cannot write {}", self.path.display()))?;
        self.temp.persist(&self.path).with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(())
    }
}
