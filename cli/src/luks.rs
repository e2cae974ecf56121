//! `sectorcrypt luks ...`: LUKS1 and LUKS2 volumes (made by cryptsetup or QEMU) opened in user space:
//! `dump` shows the header with no passphrase; `read`, `write`, `import`, `export` and `discard` are
//! the `disk` commands, unlocked by a passphrase instead of a key provider. No command writes the
//! LUKS header.

use super::data::{self, DiscardArgs, ExportArgs, ImportArgs, ReadArgs, Target, WriteArgs};
use super::keys::PassphraseArg;
use super::output::Inputs;
use super::size::human;
use super::{BackendArg, IoArg};
use anyhow::Result;
use sectorcrypt::disk::{OpenOptions, Volume};
use sectorcrypt::luks::{Kdf, LuksHeader, read_header_file};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum LuksCommand {
    /// Show the LUKS header: version, cipher, sectors, data segment, keyslots, digests (no passphrase).
    Dump {
        /// The LUKS volume (a file or block device).
        path: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the bytes of FILE into the volume at --offset.
    Write {
        /// The LUKS volume.
        path: PathBuf,
        #[command(flatten)]
        write: WriteArgs<LuksPathArgs>,
    },
    /// Read --length bytes at --offset into FILE.
    Read {
        /// The LUKS volume.
        path: PathBuf,
        #[command(flatten)]
        read: ReadArgs<LuksPathArgs>,
    },
    /// Encrypt a raw image into the volume, from byte 0.
    Import {
        /// The LUKS volume.
        path: PathBuf,
        #[command(flatten)]
        import: ImportArgs<LuksPathArgs>,
    },
    /// Decrypt the whole volume into a raw image.
    Export {
        /// The LUKS volume.
        path: PathBuf,
        #[command(flatten)]
        export: ExportArgs<LuksPathArgs>,
    },
    /// Write zeros over --length bytes at --offset (LUKS has no unwritten sectors to give back).
    Discard {
        /// The LUKS volume.
        path: PathBuf,
        #[command(flatten)]
        discard: DiscardArgs<LuksPathArgs>,
    },
}

/// How to unlock and run a LUKS volume's data path.
#[derive(clap::Args, Debug)]
pub(crate) struct LuksPathArgs {
    #[command(flatten)]
    passphrase: PassphraseArg,
    #[command(flatten)]
    backend: BackendArg,
    #[command(flatten)]
    io: IoArg,
    /// Requests in flight per worker.
    #[arg(long, default_value_t = sectorcrypt::disk::DEFAULT_QUEUE_DEPTH, value_name = "N")]
    queue_depth: usize,
    /// Use the page cache instead of O_DIRECT.
    #[arg(long)]
    no_direct: bool,
}

struct LuksTarget<'a> {
    path: PathBuf,
    args: &'a LuksPathArgs,
}

impl Target for LuksTarget<'_> {
    fn open(&self, writable: bool) -> Result<Volume> {
        let passphrase = self.args.passphrase.read(false)?;
        let options = OpenOptions {
            writable,
            backend: self.args.backend.choice()?,
            io: self.args.io.engine(),
            queue_depth: self.args.queue_depth,
            direct: !self.args.no_direct,
        };
        let volume = Volume::open_luks_file(&self.path, &passphrase, options)?;
        for notice in volume.notices() {
            eprintln!("sectorcrypt: warning: {notice}");
        }
        Ok(volume)
    }

    fn inputs(&self) -> Inputs {
        let mut inputs = Inputs::new();
        inputs.add(&self.path);
        if let Some(file) = self.args.passphrase.file() {
            inputs.add(file);
        }
        inputs
    }
}

pub(crate) fn run(command: LuksCommand) -> Result<()> {
    let target = |path: PathBuf, args| LuksTarget { path, args };
    match command {
        LuksCommand::Dump { path, json } => dump(&path, json),
        LuksCommand::Write { path, write } => data::write_from(&target(path, &write.data_path), &write),
        LuksCommand::Read { path, read } => data::read_to(&target(path, &read.data_path), &read),
        LuksCommand::Import { path, import } => data::import_raw(&target(path, &import.data_path), &import),
        LuksCommand::Export { path, export } => data::export_raw(&target(path, &export.data_path), &export),
        LuksCommand::Discard { path, discard } => {
            data::discard_cmd(&target(path, &discard.data_path), &discard)
        }
    }
}

fn dump(path: &std::path::Path, json: bool) -> Result<()> {
    let header = read_header_file(path)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&header)?);
        return Ok(());
    }
    print_header(&header);
    Ok(())
}

fn print_header(h: &LuksHeader) {
    outln!("LUKS{} volume {}", h.version, h.uuid);
    if !h.label.is_empty() {
        outln!("  label        {}", h.label);
    }
    outln!("  cipher       {} ({}-bit key)", h.cipher, h.key_bytes * 8);
    outln!("  sector size  {} bytes (IVs count 512-byte sectors from {})", h.sector_size, h.iv_tweak);
    let size = h.data_size.map_or_else(|| "to the end of the device".to_owned(), human);
    outln!("  data         at {} ({}), {size}", h.data_offset, human(h.data_offset));
    outln!(
        "  metadata     {} bytes per header copy{}",
        h.metadata_size,
        if h.version == 2 { format!(", sequence {}", h.seqid) } else { String::new() }
    );
    for problem in &h.damaged_copies {
        outln!("  warning      {problem}");
    }
    for slot in &h.keyslots {
        let kdf = match &slot.kdf {
            Kdf::Pbkdf2 { hash, iterations, .. } => format!("pbkdf2-{hash}, {iterations} iterations"),
            Kdf::Argon2 { variant, time, memory_kib, parallel, .. } => {
                format!("{variant}, time {time}, memory {memory_kib} KiB, {parallel} threads")
            }
        };
        outln!(
            "  keyslot {}    {}: {}-bit key, {kdf}, AF {} stripes ({}), area at {} ({} bytes, {})",
            slot.index,
            slot.kind,
            slot.key_bytes * 8,
            slot.af_stripes,
            slot.af_hash,
            slot.area_offset,
            slot.area_size,
            slot.area_cipher
        );
    }
    for digest in &h.digests {
        outln!(
            "  digest       pbkdf2-{}, {} iterations, keyslots {:?}",
            digest.hash,
            digest.iterations,
            digest.keyslots
        );
    }
    if !h.tokens.is_empty() {
        outln!("  tokens       {} (not used: unlocking takes a passphrase)", h.tokens.join(", "));
    }
    for requirement in &h.requirements {
        outln!("  requirement  {requirement} (not supported)");
    }
    if let Some(integrity) = &h.integrity {
        outln!("  integrity    {integrity} (not supported)");
    }
}
