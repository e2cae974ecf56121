//! `sectorcrypt disk ...` (VM mode, one file) and `sectorcrypt group ...` (datastore mode, `--member`
//! per file): the same operations on a one-member or many-member volume.

use super::keys::{KeyProviderArg, NewKeyArgs};
use super::raw::AtomicOutput;
use super::{BackendArg, IoArg};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sectorcrypt::disk::{
    CopyState, CreateOptions, HeaderPair, Mode, OpenOptions, Volume, read_headers, uuid_string,
};
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes moved per step by import, export, read and write.
const CHUNK: usize = 16 << 20;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum DiskCommand {
    /// Create an encrypted disk (VM mode: its own DEK, wrapped by a KEK from the key provider).
    Create {
        /// The disk file to create (must not exist).
        path: PathBuf,
        /// Data bytes (suffixes K, M, G, T: powers of 1024).
        #[arg(long, value_parser = parse_size)]
        size: u64,
        #[command(flatten)]
        layout: LayoutArgs,
    },
    /// Show a disk's header (no key needed): cipher, data unit, KEK reference, generation, both copies.
    Info {
        /// The disk file.
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the bytes of FILE into the disk at --offset.
    Write {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Read --length bytes at --offset into FILE.
    Read {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Encrypt a raw image into the disk, from byte 0.
    Import {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        import: ImportArgs,
    },
    /// Decrypt the whole disk into a raw image.
    Export {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        export: ExportArgs,
    },
    /// Rekey: --shallow re-wraps the DEK under a new KEK (atomic; no data rewritten).
    Rekey {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        rekey: RekeyArgs,
    },
    /// Rewrite a damaged or stale header copy from the good one (needs no key).
    Repair {
        /// The disk file.
        path: PathBuf,
    },
    /// Print the disk's DEK in hex (HAZMAT: anyone with it can decrypt the disk without the provider).
    DumpKey {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        dump: DumpKeyArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum GroupCommand {
    /// Create a disk group (datastore mode: one DEK for the group, wrapped in every member's header).
    Create {
        #[command(flatten)]
        members: Members,
        /// Data bytes per member (suffixes K, M, G, T).
        #[arg(long, value_parser = parse_size)]
        size_per_member: u64,
        /// Stripe size (RAID-0), a multiple of the data unit dividing the size per member.
        #[arg(long, value_parser = parse_size, default_value = "1M")]
        stripe: u64,
        #[command(flatten)]
        layout: LayoutArgs,
    },
    /// Show every member's header (no key needed).
    Info {
        #[command(flatten)]
        members: Members,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the bytes of FILE into the group at --offset.
    Write {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Read --length bytes at --offset into FILE.
    Read {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Encrypt a raw image into the group, from byte 0.
    Import {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        import: ImportArgs,
    },
    /// Decrypt the whole group into a raw image.
    Export {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        export: ExportArgs,
    },
    /// Rekey: --shallow re-wraps the group's DEK under a new KEK in every member.
    Rekey {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        rekey: RekeyArgs,
    },
    /// Rewrite damaged or stale header copies and finish an interrupted rekey (needs no key).
    Repair {
        #[command(flatten)]
        members: Members,
    },
    /// Print the group's DEK in hex (HAZMAT).
    DumpKey {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        dump: DumpKeyArgs,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct Members {
    /// A member file; give every member of the group, in any order.
    #[arg(long = "member", value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct LayoutArgs {
    /// Bytes per data unit: a power of two from 512 to 131072.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    data_unit: usize,
    #[command(flatten)]
    key: NewKeyArgs,
}

/// How the data path runs, for the commands that move data.
#[derive(clap::Args, Debug)]
pub(crate) struct DataPathArgs {
    #[command(flatten)]
    provider: KeyProviderArg,
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

impl DataPathArgs {
    fn open(&self, paths: &[PathBuf], mode: Mode, writable: bool) -> Result<Volume> {
        let provider = self.provider.open()?;
        let options = OpenOptions {
            writable,
            backend: self.backend.choice()?,
            io: self.io.engine(),
            queue_depth: self.queue_depth,
            direct: !self.no_direct,
        };
        Ok(Volume::open(paths, mode, provider.as_ref(), options)?)
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct WriteArgs {
    /// Logical byte offset.
    #[arg(long, value_parser = parse_size)]
    offset: u64,
    /// The file whose bytes to write.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    #[command(flatten)]
    data_path: DataPathArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ReadArgs {
    /// Logical byte offset.
    #[arg(long, value_parser = parse_size)]
    offset: u64,
    /// Bytes to read.
    #[arg(long, value_parser = parse_size)]
    length: u64,
    /// The file to write them to (replaced atomically).
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    #[command(flatten)]
    data_path: DataPathArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    /// The raw image (at most the disk's size; the rest of the disk is left as it is).
    #[arg(long, value_name = "RAW")]
    from: PathBuf,
    #[command(flatten)]
    data_path: DataPathArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ExportArgs {
    /// The raw image to write (replaced atomically).
    #[arg(long, value_name = "RAW")]
    to: PathBuf,
    #[command(flatten)]
    data_path: DataPathArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RekeyArgs {
    /// Re-wrap the DEK under a new KEK (the only kind of rekey available so far).
    #[arg(long)]
    shallow: bool,
    /// Id of the new KEK (default: a fresh random id).
    #[arg(long, value_name = "ID")]
    new_key_id: Option<String>,
    #[command(flatten)]
    provider: KeyProviderArg,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DumpKeyArgs {
    /// Confirms that the DEK may be printed in the clear.
    #[arg(long = "i-know-what-i-am-doing")]
    confirmed: bool,
    #[command(flatten)]
    provider: KeyProviderArg,
}

pub(crate) fn run_disk(command: DiskCommand) -> Result<()> {
    let one = |path: PathBuf| vec![path];
    match command {
        DiskCommand::Create { path, size, layout } => create(&one(path), Mode::Vm, size, 0, layout),
        DiskCommand::Info { path, json } => info(&one(path), json),
        DiskCommand::Write { path, write } => write_from(&one(path), Mode::Vm, write),
        DiskCommand::Read { path, read } => read_to(&one(path), Mode::Vm, read),
        DiskCommand::Import { path, import } => import_raw(&one(path), Mode::Vm, import),
        DiskCommand::Export { path, export } => export_raw(&one(path), Mode::Vm, export),
        DiskCommand::Rekey { path, rekey } => rekey_cmd(&one(path), Mode::Vm, rekey),
        DiskCommand::Repair { path } => repair_cmd(&one(path), Mode::Vm),
        DiskCommand::DumpKey { path, dump } => dump_key(&one(path), Mode::Vm, dump),
    }
}

pub(crate) fn run_group(command: GroupCommand) -> Result<()> {
    let d = Mode::Datastore;
    match command {
        GroupCommand::Create { members, size_per_member, stripe, layout } => {
            create(&members.paths, d, size_per_member, stripe, layout)
        }
        GroupCommand::Info { members, json } => info(&members.paths, json),
        GroupCommand::Write { members, write } => write_from(&members.paths, d, write),
        GroupCommand::Read { members, read } => read_to(&members.paths, d, read),
        GroupCommand::Import { members, import } => import_raw(&members.paths, d, import),
        GroupCommand::Export { members, export } => export_raw(&members.paths, d, export),
        GroupCommand::Rekey { members, rekey } => rekey_cmd(&members.paths, d, rekey),
        GroupCommand::Repair { members } => repair_cmd(&members.paths, d),
        GroupCommand::DumpKey { members, dump } => dump_key(&members.paths, d, dump),
    }
}

fn create(paths: &[PathBuf], mode: Mode, size: u64, stripe: u64, layout: LayoutArgs) -> Result<()> {
    let provider = layout.key.provider.open()?;
    let options = CreateOptions {
        data_unit: layout.data_unit,
        cipher: layout.key.cipher.size(),
        key_id: layout.key.key_id.clone(),
        stripe,
    };
    Volume::create(paths, mode, size, &options, provider.as_ref())?;
    let header = read_headers(&paths[0])?;
    let header = header.header();
    let what = match mode {
        Mode::Vm => format!("disk {}", paths[0].display()),
        Mode::Datastore => {
            format!("group {} ({} members)", uuid_string(&header.place.group_uuid), paths.len())
        }
    };
    println!(
        "created {what}: {} data bytes{}, XTS-{}, {}-byte data units, key {}",
        size * paths.len() as u64,
        if mode == Mode::Datastore {
            format!(" ({size} per member, stripe {stripe})")
        } else {
            String::new()
        },
        header.cipher.name().to_uppercase(),
        header.data_unit,
        header.wrapped_dek.key_ref()
    );
    Ok(())
}

fn copy_state(pair: &HeaderPair, slot: usize) -> (String, Option<String>, Option<u64>) {
    let problem = pair.problems()[slot].clone();
    let sequence = match &pair.copies[slot] {
        CopyState::Valid(h) => Some(h.sequence),
        CopyState::Damaged(_) => None,
    };
    let state = match (&pair.copies[slot], &problem) {
        (CopyState::Damaged(_), _) => "damaged",
        (_, Some(_)) => "stale",
        (_, None) => "ok",
    };
    (state.to_string(), problem, sequence)
}

fn info(paths: &[PathBuf], json: bool) -> Result<()> {
    let mut entries = Vec::new();
    for path in paths {
        let pair = read_headers(path)?;
        let h = pair.header();
        let copies: Vec<_> = (0..2)
            .map(|slot| {
                let (state, problem, sequence) = copy_state(&pair, slot);
                serde_json::json!({ "copy": slot, "state": state, "sequence": sequence, "problem": problem })
            })
            .collect();
        let mut entry = serde_json::json!({
            "path": path.display().to_string(),
            "mode": h.mode.name(),
            "format_version": sectorcrypt::disk::format::FORMAT_VERSION,
            "uuid": uuid_string(&h.uuid),
            "cipher": format!("xts-{}", h.cipher.name()),
            "data_unit": h.data_unit,
            "tweak": "plain64: logical data-unit number, little-endian",
            "data_offset": h.data_offset,
            "data_size": h.data_size,
            "kek": h.wrapped_dek.key_ref().to_string(),
            "dek_verifier": hex::encode(h.wrapped_dek.verifier()),
            "generation": h.generation,
            "header_copies": copies,
        });
        if h.mode == Mode::Datastore {
            entry["group"] = serde_json::json!({
                "uuid": uuid_string(&h.place.group_uuid),
                "member_index": h.place.member_index,
                "member_count": h.place.member_count,
                "stripe": h.place.stripe,
            });
        }
        entries.push(entry);
    }
    if json {
        let out =
            if entries.len() == 1 { entries.remove(0) } else { serde_json::json!({ "members": entries }) };
        println!("{out}");
        return Ok(());
    }
    for e in &entries {
        println!("{}", e["path"].as_str().unwrap_or_default());
        println!("  mode         {}", e["mode"].as_str().unwrap_or_default());
        println!("  cipher       {}", e["cipher"].as_str().unwrap_or_default().to_uppercase());
        println!(
            "  data unit    {} bytes (tweak: {})",
            e["data_unit"],
            e["tweak"].as_str().unwrap_or_default()
        );
        println!("  data         {} bytes at offset {}", e["data_size"], e["data_offset"]);
        println!("  kek          {}", e["kek"].as_str().unwrap_or_default());
        println!("  generation   {}", e["generation"]);
        if let Some(group) = e.get("group") {
            println!(
                "  group        {} member {} of {}, stripe {}",
                group["uuid"].as_str().unwrap_or_default(),
                group["member_index"],
                group["member_count"],
                group["stripe"]
            );
        }
        for copy in e["header_copies"].as_array().into_iter().flatten() {
            let state = copy["problem"].as_str().unwrap_or("ok");
            let seq = copy["sequence"].as_u64().map(|s| format!(", sequence {s}")).unwrap_or_default();
            println!("  header copy {}  {state}{seq}", copy["copy"]);
        }
    }
    Ok(())
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style =
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

fn check_range(volume: &Volume, offset: u64, len: u64) -> Result<()> {
    if offset.checked_add(len).is_none_or(|end| end > volume.size()) {
        return Err(sectorcrypt::Error::OutOfRange { offset, len, size: volume.size() }.into());
    }
    Ok(())
}

/// Streams `len` bytes of `source` into the volume at `offset`.
fn stream_in(
    volume: &Volume,
    offset: u64,
    source: &mut File,
    source_path: &Path,
    len: u64,
    what: &str,
) -> Result<()> {
    check_range(volume, offset, len)?;
    let bar = progress(len, what);
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        source.read_exact(&mut buf[..n]).with_context(|| format!("cannot read {}", source_path.display()))?;
        volume.write_at(offset + done, &buf[..n])?;
        done += n as u64;
        bar.set_position(done);
    }
    volume.flush()?;
    bar.finish_and_clear();
    Ok(())
}

/// Streams `len` bytes at `offset` out of the volume into a new file replacing `to` when complete.
fn stream_out(volume: &Volume, offset: u64, len: u64, to: &Path, what: &str) -> Result<()> {
    check_range(volume, offset, len)?;
    let output = AtomicOutput::create(to)?;
    let bar = progress(len, what);
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut done = 0u64;
    let mut writer = output.file();
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        volume.read_at(offset + done, &mut buf[..n])?;
        writer.write_all(&buf[..n]).with_context(|| format!("cannot write {}", to.display()))?;
        done += n as u64;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    output.commit()
}

fn open_source(path: &Path) -> Result<(File, u64)> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let meta = file.metadata().with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    Ok((file, meta.len()))
}

fn write_from(paths: &[PathBuf], mode: Mode, args: WriteArgs) -> Result<()> {
    let (mut source, len) = open_source(&args.from)?;
    let volume = args.data_path.open(paths, mode, true)?;
    stream_in(&volume, args.offset, &mut source, &args.from, len, "write")?;
    println!("wrote {len} bytes at offset {}", args.offset);
    Ok(())
}

fn read_to(paths: &[PathBuf], mode: Mode, args: ReadArgs) -> Result<()> {
    let volume = args.data_path.open(paths, mode, false)?;
    stream_out(&volume, args.offset, args.length, &args.to, "read")?;
    println!("read {} bytes at offset {} into {}", args.length, args.offset, args.to.display());
    Ok(())
}

fn import_raw(paths: &[PathBuf], mode: Mode, args: ImportArgs) -> Result<()> {
    let (mut source, len) = open_source(&args.from)?;
    let volume = args.data_path.open(paths, mode, true)?;
    if len > volume.size() {
        bail!("{} is {len} bytes, larger than the disk ({} bytes)", args.from.display(), volume.size());
    }
    let started = std::time::Instant::now();
    stream_in(&volume, 0, &mut source, &args.from, len, "import")?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "imported {len} bytes from {} in {seconds:.2} s ({:.0} MB/s, {}, {})",
        args.from.display(),
        len as f64 / seconds / 1e6,
        volume.io_engine_name()?,
        volume.backend().name()
    );
    Ok(())
}

fn export_raw(paths: &[PathBuf], mode: Mode, args: ExportArgs) -> Result<()> {
    let volume = args.data_path.open(paths, mode, false)?;
    let started = std::time::Instant::now();
    stream_out(&volume, 0, volume.size(), &args.to, "export")?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "exported {} bytes to {} in {seconds:.2} s ({:.0} MB/s)",
        volume.size(),
        args.to.display(),
        volume.size() as f64 / seconds / 1e6
    );
    Ok(())
}

fn rekey_cmd(paths: &[PathBuf], mode: Mode, args: RekeyArgs) -> Result<()> {
    if !args.shallow {
        bail!(
            "only --shallow rekey (a new KEK for the same DEK) is available; deep rekey is not implemented yet"
        );
    }
    let provider = args.provider.open()?;
    let (old, new) =
        sectorcrypt::disk::rekey_shallow(paths, mode, provider.as_ref(), args.new_key_id.as_deref())?;
    println!("rekeyed: the DEK is now wrapped under {new} (was {old}); no data was rewritten");
    Ok(())
}

fn repair_cmd(paths: &[PathBuf], mode: Mode) -> Result<()> {
    let actions = sectorcrypt::disk::repair(paths, mode)?;
    if actions.is_empty() {
        println!("nothing to repair: every header copy is complete and current");
    }
    for action in actions {
        println!("{action}");
    }
    Ok(())
}

fn dump_key(paths: &[PathBuf], mode: Mode, args: DumpKeyArgs) -> Result<()> {
    if !args.confirmed {
        bail!(
            "dump-key prints the data key in the clear; add --i-know-what-i-am-doing if that is what you want"
        );
    }
    let provider = args.provider.open()?;
    let (dek, _) = sectorcrypt::disk::hazmat_unwrap_dek(paths, mode, provider.as_ref())?;
    println!("{}", hex::encode(dek.hazmat_reveal()));
    Ok(())
}

/// A byte count: digits with an optional K, M, G or T suffix (powers of 1024; `KiB` etc. also accepted).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 =
        digits.parse().map_err(|_| format!("{text:?} is not a byte count (e.g. 4096, 64M, 10G)"))?;
    let shift = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("unknown size suffix in {text:?} (use K, M, G or T)")),
    };
    number.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))
}
