//! `sectorcrypt disk ...` (VM mode, one file) and `sectorcrypt group ...` (datastore mode, `--member`
//! per file): the same operations on a one-member or many-member volume.

use super::input::{Source, fill};
use super::keys::{KeyProviderArg, NewKeyArgs};
use super::output::{Inputs, Output, OutputArgs};
use super::size::{human, parse_size};
use super::{BackendArg, IoArg};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sectorcrypt::disk::{
    CopyState, CreateOptions, HeaderPair, Mode, OpenOptions, Volume, read_headers, uuid_string,
};
use sectorcrypt::storage::{FileStorage, Storage};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

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
    /// Give back --length bytes at --offset (TRIM): whole data units are deallocated and read as zeros.
    Discard {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        discard: DiscardArgs,
    },
    /// Rekey: a shallow rekey wraps the DEK under a new KEK (atomic; no data rewritten).
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
    /// Give back --length bytes at --offset (TRIM): whole data units are deallocated and read as zeros.
    Discard {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        discard: DiscardArgs,
    },
    /// Rekey: a shallow rekey wraps the group's DEK under a new KEK in every member.
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
    /// The member files, in any order, every one of the group: given as `disk` commands take a disk
    /// (`group info a.img b.img`), or each with --member.
    #[arg(value_name = "MEMBER", required_unless_present = "named")]
    given: Vec<PathBuf>,
    /// A member file (the same as giving it without the flag).
    #[arg(long = "member", value_name = "PATH")]
    named: Vec<PathBuf>,
}

impl Members {
    fn paths(&self) -> Vec<PathBuf> {
        self.given.iter().chain(&self.named).cloned().collect()
    }
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
    /// Opens the volume and tells its notices (a damaged header copy, an io_uring fallback) on stderr.
    fn open(&self, paths: &[PathBuf], mode: Mode, writable: bool) -> Result<Volume> {
        let provider = self.provider.open()?;
        let options = OpenOptions {
            writable,
            backend: self.backend.choice()?,
            io: self.io.engine(),
            queue_depth: self.queue_depth,
            direct: !self.no_direct,
        };
        let volume = Volume::open(paths, mode, provider.as_ref(), options)?;
        for notice in volume.notices() {
            eprintln!("sectorcrypt: warning: {notice}");
        }
        Ok(volume)
    }

    /// What the output of a command on `paths` may not overwrite.
    fn inputs(&self, paths: &[PathBuf]) -> Inputs {
        let mut inputs = Inputs::new();
        for path in paths {
            inputs.add(path);
        }
        inputs.add_provider(self.provider.spec());
        inputs
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct DiscardArgs {
    /// Logical byte offset.
    #[arg(long, value_parser = parse_size)]
    offset: u64,
    /// Bytes to give back.
    #[arg(long, value_parser = parse_size)]
    length: u64,
    #[command(flatten)]
    data_path: DataPathArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct WriteArgs {
    /// Logical byte offset.
    #[arg(long, value_parser = parse_size)]
    offset: u64,
    /// The file whose bytes to write (- for standard input).
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
    /// Where to write them: a new file, a device, or - for standard output.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    data_path: DataPathArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    /// The raw image (at most the disk's size; the rest of the disk is left as it is; - for standard
    /// input).
    #[arg(long, value_name = "RAW")]
    from: PathBuf,
    #[command(flatten)]
    data_path: DataPathArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ExportArgs {
    /// Where to write the raw image: a new file, a device, or - for standard output.
    #[arg(long, value_name = "RAW")]
    to: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    data_path: DataPathArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RekeyArgs {
    /// The kind of rekey. shallow: the DEK wrapped under a new KEK, no data rewritten (the only kind
    /// so far; a deep rekey, a new DEK with the data re-encrypted, is planned).
    #[arg(long, value_enum, default_value = "shallow")]
    kind: RekeyKind,
    /// Same as --kind shallow (kept for scripts written before --kind).
    #[arg(long, hide = true)]
    shallow: bool,
    /// Id of the new KEK (default: a fresh random id).
    #[arg(long, value_name = "ID")]
    new_key_id: Option<String>,
    #[command(flatten)]
    provider: KeyProviderArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RekeyKind {
    /// A new KEK for the same DEK.
    Shallow,
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
        DiskCommand::Info { path, json } => info(&one(path), Mode::Vm, json),
        DiskCommand::Write { path, write } => write_from(&one(path), Mode::Vm, write),
        DiskCommand::Read { path, read } => read_to(&one(path), Mode::Vm, read),
        DiskCommand::Import { path, import } => import_raw(&one(path), Mode::Vm, import),
        DiskCommand::Export { path, export } => export_raw(&one(path), Mode::Vm, export),
        DiskCommand::Discard { path, discard } => discard_cmd(&one(path), Mode::Vm, discard),
        DiskCommand::Rekey { path, rekey } => rekey_cmd(&one(path), Mode::Vm, rekey),
        DiskCommand::Repair { path } => repair_cmd(&one(path), Mode::Vm),
        DiskCommand::DumpKey { path, dump } => dump_key(&one(path), Mode::Vm, dump),
    }
}

pub(crate) fn run_group(command: GroupCommand) -> Result<()> {
    let d = Mode::Datastore;
    match command {
        GroupCommand::Create { members, size_per_member, stripe, layout } => {
            create(&members.paths(), d, size_per_member, stripe, layout)
        }
        GroupCommand::Info { members, json } => info(&members.paths(), d, json),
        GroupCommand::Write { members, write } => write_from(&members.paths(), d, write),
        GroupCommand::Read { members, read } => read_to(&members.paths(), d, read),
        GroupCommand::Import { members, import } => import_raw(&members.paths(), d, import),
        GroupCommand::Export { members, export } => export_raw(&members.paths(), d, export),
        GroupCommand::Discard { members, discard } => discard_cmd(&members.paths(), d, discard),
        GroupCommand::Rekey { members, rekey } => rekey_cmd(&members.paths(), d, rekey),
        GroupCommand::Repair { members } => repair_cmd(&members.paths(), d),
        GroupCommand::DumpKey { members, dump } => dump_key(&members.paths(), d, dump),
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
    let total = size.saturating_mul(paths.len() as u64);
    outln!(
        "created {what}: {total} data bytes ({}){}, XTS-{}, {}-byte data units, key {}",
        human(total),
        if mode == Mode::Datastore {
            format!(" ({} per member, stripe {})", human(size), human(stripe))
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

fn info(paths: &[PathBuf], mode: Mode, json: bool) -> Result<()> {
    let mut entries = Vec::new();
    let mut headers = Vec::new();
    for path in paths {
        let pair = read_headers(path)?;
        let h = pair.header().clone();
        if h.mode != mode {
            let command = if h.mode == Mode::Vm { "disk" } else { "group" };
            bail!(
                "{}: is a {}-mode disk, not {} mode (use `sectorcrypt {command} info`)",
                path.display(),
                h.mode.name(),
                mode.name()
            );
        }
        let copies: Vec<_> = (0..2)
            .map(|slot| {
                let (state, problem, sequence) = copy_state(&pair, slot);
                serde_json::json!({ "copy": slot, "state": state, "sequence": sequence, "problem": problem })
            })
            .collect();
        let allocated = FileStorage::open(path, false).ok().and_then(|store| store.allocated());
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
            "allocated": allocated,
            "key_ref": h.wrapped_dek.key_ref().to_string(),
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
        headers.push(h);
    }
    let summary = (mode == Mode::Datastore).then(|| {
        let first = &headers[0];
        let count = first.place.member_count as u64;
        serde_json::json!({
            "uuid": uuid_string(&first.place.group_uuid),
            "size": first.data_size.saturating_mul(count),
            "member_count": count,
            "members_given": headers.len(),
            "stripe": first.place.stripe,
        })
    });
    if json {
        let out = match summary {
            None => entries.remove(0),
            Some(group) => serde_json::json!({ "group": group, "members": entries }),
        };
        outln!("{out}");
        return Ok(());
    }
    if let Some(group) = &summary {
        let size = group["size"].as_u64().unwrap_or_default();
        outln!("group {}", group["uuid"].as_str().unwrap_or_default());
        outln!("  size         {size} bytes ({})", human(size));
        outln!(
            "  members      {} ({} given), stripe {}",
            group["member_count"],
            group["members_given"],
            human(group["stripe"].as_u64().unwrap_or_default())
        );
    }
    for e in &entries {
        let bytes = |field: &str| e[field].as_u64().unwrap_or_default();
        outln!("{}", e["path"].as_str().unwrap_or_default());
        outln!("  mode         {}", e["mode"].as_str().unwrap_or_default());
        outln!("  cipher       {}", e["cipher"].as_str().unwrap_or_default().to_uppercase());
        outln!(
            "  data unit    {} bytes (tweak: {})",
            e["data_unit"],
            e["tweak"].as_str().unwrap_or_default()
        );
        outln!(
            "  data         {} bytes ({}) at offset {}",
            bytes("data_size"),
            human(bytes("data_size")),
            e["data_offset"]
        );
        if let Some(allocated) = e["allocated"].as_u64() {
            outln!("  allocated    {allocated} bytes ({})", human(allocated));
        }
        outln!("  key_ref      {}", e["key_ref"].as_str().unwrap_or_default());
        outln!("  generation   {}", e["generation"]);
        if let Some(group) = e.get("group") {
            outln!(
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
            outln!("  header copy {}  {state}{seq}", copy["copy"]);
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

/// Streams `source` into the volume at `offset`, to its end; returns the bytes written. A source of
/// known length is checked against the volume before anything is written; a stream that runs past
/// the end of the volume stops with an error there.
fn stream_in(
    volume: &Volume,
    offset: u64,
    source: &mut Source,
    from: &std::path::Path,
    what: &str,
) -> Result<u64> {
    if let Some(len) = source.len {
        check_range(volume, offset, len)?;
    }
    let bar = progress(source.len.unwrap_or(volume.size() - offset.min(volume.size())), what);
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n =
            fill(&mut source.reader, &mut buf).with_context(|| format!("cannot read {}", from.display()))?;
        if n == 0 {
            break;
        }
        check_range(volume, offset + done, n as u64)
            .with_context(|| format!("{} is larger than the space after offset {offset}", from.display()))?;
        volume.write_at(offset + done, &buf[..n])?;
        done += n as u64;
        bar.set_position(done);
    }
    volume.flush()?;
    bar.finish_and_clear();
    Ok(done)
}

/// Streams `len` bytes at `offset` out of the volume into `output`.
fn stream_out(volume: &Volume, offset: u64, len: u64, mut output: Output, what: &str) -> Result<()> {
    check_range(volume, offset, len)?;
    let bar = progress(len, what);
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut done = 0u64;
    {
        let mut writer = output.writer();
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            volume.read_at(offset + done, &mut buf[..n])?;
            writer.write_all(&buf[..n]).context("cannot write the output")?;
            done += n as u64;
            bar.set_position(done);
        }
    }
    bar.finish_and_clear();
    output.commit()
}

/// Where a command that writes an output reports: stderr when the data itself goes to stdout.
fn report(to: &std::path::Path, line: std::fmt::Arguments<'_>) {
    if to.as_os_str() == "-" {
        eprintln!("{line}");
    } else {
        super::outln(line);
    }
}

fn write_from(paths: &[PathBuf], mode: Mode, args: WriteArgs) -> Result<()> {
    let mut source = Source::open(&args.from)?;
    let volume = args.data_path.open(paths, mode, true)?;
    let len = stream_in(&volume, args.offset, &mut source, &args.from, "write")?;
    outln!("wrote {len} bytes at offset {}", args.offset);
    Ok(())
}

fn read_to(paths: &[PathBuf], mode: Mode, args: ReadArgs) -> Result<()> {
    let volume = args.data_path.open(paths, mode, false)?;
    check_range(&volume, args.offset, args.length)?;
    let output = Output::open(&args.to, &args.output, &args.data_path.inputs(paths))?;
    stream_out(&volume, args.offset, args.length, output, "read")?;
    report(
        &args.to,
        format_args!("read {} bytes at offset {} into {}", args.length, args.offset, args.to.display()),
    );
    Ok(())
}

fn import_raw(paths: &[PathBuf], mode: Mode, args: ImportArgs) -> Result<()> {
    let mut source = Source::open(&args.from)?;
    let volume = args.data_path.open(paths, mode, true)?;
    if let Some(len) = source.len.filter(|&len| len > volume.size()) {
        bail!("{} is {len} bytes, larger than the disk ({} bytes)", args.from.display(), volume.size());
    }
    let started = std::time::Instant::now();
    let len = stream_in(&volume, 0, &mut source, &args.from, "import")?;
    let seconds = started.elapsed().as_secs_f64();
    outln!(
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
    let output = Output::open(&args.to, &args.output, &args.data_path.inputs(paths))?;
    let started = std::time::Instant::now();
    stream_out(&volume, 0, volume.size(), output, "export")?;
    let seconds = started.elapsed().as_secs_f64();
    report(
        &args.to,
        format_args!(
            "exported {} bytes to {} in {seconds:.2} s ({:.0} MB/s)",
            volume.size(),
            args.to.display(),
            volume.size() as f64 / seconds / 1e6
        ),
    );
    Ok(())
}

fn discard_cmd(paths: &[PathBuf], mode: Mode, args: DiscardArgs) -> Result<()> {
    let volume = args.data_path.open(paths, mode, true)?;
    let freed = volume.discard(args.offset, args.length)?;
    volume.flush()?;
    outln!(
        "discarded {} bytes at offset {} ({freed} bytes of whole data units deallocated)",
        args.length,
        args.offset
    );
    Ok(())
}

fn rekey_cmd(paths: &[PathBuf], mode: Mode, args: RekeyArgs) -> Result<()> {
    let RekeyKind::Shallow = args.kind;
    let _ = args.shallow;
    let provider = args.provider.open()?;
    let (old, new) =
        sectorcrypt::disk::rekey_shallow(paths, mode, provider.as_ref(), args.new_key_id.as_deref())?;
    outln!("rekeyed: the DEK is now wrapped under {new} (was {old}); no data was rewritten");
    Ok(())
}

fn repair_cmd(paths: &[PathBuf], mode: Mode) -> Result<()> {
    let actions = sectorcrypt::disk::repair(paths, mode)?;
    if actions.is_empty() {
        outln!("nothing to repair: every header copy is complete and current");
    }
    for action in actions {
        outln!("{action}");
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
    outln!("{}", hex::encode(dek.hazmat_reveal()));
    Ok(())
}
