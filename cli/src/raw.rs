//! `sectorcrypt raw encrypt|decrypt`: a file in, a file out, cut into XTS data units.
//!
//! The key and the layout are checked before the output exists, and the output follows the rules of
//! [`Output`]: a new regular file appears only when complete, so a failure (or a stream whose last
//! unit is too short) never leaves a partial output or damages an existing file.

use super::BackendArg;
use super::input::{Source, fill};
use super::output::{Inputs, Output, OutputArgs};
use anyhow::{Context, Result, bail};
use sectorcrypt::files::{read_bounded, read_small};
use sectorcrypt::{DataUnits, Xts, XtsKey};
use std::io::Write;
use std::path::PathBuf;

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
    /// The XTS key, Key1 || Key2: 64 hex digits (XTS-AES-128) or 128 (XTS-AES-256). Visible to every
    /// user in `ps` and in shell history: prefer --key-file.
    #[arg(long, value_name = "HEX", required_unless_present_any = ["wrapped_key", "key_file"], conflicts_with_all = ["wrapped_key", "key_file"])]
    key: Option<String>,
    /// The XTS key in hex, from a file (- for standard input); one trailing newline is ignored.
    #[arg(long, value_name = "PATH", conflicts_with = "wrapped_key")]
    key_file: Option<PathBuf>,
    /// Instead of --key: a wrapped data key (from `keys new`), unwrapped through --key-provider.
    #[arg(long, value_name = "PATH")]
    wrapped_key: Option<PathBuf>,
    /// Key provider for --wrapped-key: native:PATH, kmip:CONFIG or trusted:CONFIG.
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
    /// Threads that run the cipher (0: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    threads: usize,
    /// File to read (- for standard input).
    #[arg(long, value_name = "PATH", alias = "input")]
    from: PathBuf,
    /// Where to write: a new file, a device, or - for standard output.
    #[arg(long, value_name = "PATH", alias = "output")]
    to: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

/// The longest key file read: 128 hex digits and a line ending, with room to spare.
const MAX_KEY_FILE: usize = 1024;

fn read_key_file(path: &std::path::Path) -> Result<XtsKey> {
    let text = if path.as_os_str() == "-" {
        read_bounded(std::io::stdin(), MAX_KEY_FILE, "standard input")?
    } else {
        read_small(path, MAX_KEY_FILE)?
    };
    let digits = std::str::from_utf8(&text).map_err(|_| anyhow::anyhow!("the key file is not hex text"))?;
    Ok(XtsKey::from_hex(digits)?)
}

pub(crate) fn run(direction: Direction) -> Result<()> {
    let (args, decrypt) = match direction {
        Direction::Encrypt(args) => (args, false),
        Direction::Decrypt(args) => (args, true),
    };
    let dek;
    let hex_key;
    let mut inputs = Inputs::new();
    inputs.add(&args.from);
    let key: &XtsKey = match (&args.key, &args.key_file, &args.wrapped_key) {
        (Some(hex_digits), _, _) => {
            hex_key = XtsKey::from_hex(hex_digits).context("--key")?;
            &hex_key
        }
        (None, Some(path), _) => {
            inputs.add(path);
            hex_key = read_key_file(path).context("--key-file")?;
            &hex_key
        }
        (None, None, Some(path)) => {
            let Some(spec) = &args.key_provider else {
                bail!("--wrapped-key needs --key-provider (or {})", sectorcrypt::keys::KEY_PROVIDER_ENV);
            };
            inputs.add(path).add_provider(Some(spec));
            let wrapped = super::keys::read_blob(path)?;
            dek = super::keys::open_announced(spec)?
                .unwrap_dek(&wrapped)
                .with_context(|| format!("{}", path.display()))?;
            dek.xts_key()
        }
        (None, None, None) => bail!("give --key-file, --key or --wrapped-key"),
    };
    let units = DataUnits::new(args.data_unit)
        .and_then(|u| u.with_step(args.tweak_step))
        .map(|u| u.starting_at(args.first_unit))
        .context("--data-unit/--tweak-step")?;
    let xts = Xts::new(key, args.backend.choice()?)?;
    let mut source = Source::open(&args.from)?;
    if let Some(len) = source.len {
        units.check(len).with_context(|| format!("{} ({len} bytes)", args.from.display()))?;
    }

    let pool = super::pool(args.threads)?;
    let mut output = Output::open(&args.to, &args.output, &inputs)?;
    let chunk_len = (CHUNK / units.size()).max(1) * units.size();
    let mut buf = vec![0u8; chunk_len.min(source.len.map_or(chunk_len, |len| len as usize))];
    let mut done = 0u64;
    {
        let mut writer = output.writer();
        loop {
            let n = fill(&mut source.reader, &mut buf)
                .with_context(|| format!("cannot read {}", args.from.display()))?;
            if n == 0 {
                break;
            }
            let piece = &mut buf[..n];
            let first = units.first() + done / units.size() as u64 * units.step();
            let piece_units = units.starting_at(first);
            // A stream's length is known only at its end: check each piece as it comes.
            piece_units
                .check(n as u64)
                .with_context(|| format!("{} ({} bytes)", args.from.display(), done + n as u64))?;
            pool.install(|| {
                if decrypt {
                    xts.decrypt_units_parallel(piece, piece_units)
                } else {
                    xts.encrypt_units_parallel(piece, piece_units)
                }
            })?;
            writer.write_all(piece).with_context(|| format!("cannot write {}", args.to.display()))?;
            done += n as u64;
        }
    }
    if done < 16 {
        bail!("{} holds {done} bytes: an XTS input holds at least 16", args.from.display());
    }
    output.commit()
}
