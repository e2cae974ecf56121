//! `sectorcrypt disk ...` (VM mode, one file) and `sectorcrypt group ...` (datastore mode, `--member`
//! per file): the same operations on a one-member or many-member volume.

use super::data::{self, DiscardArgs, ExportArgs, ImportArgs, ReadArgs, Target, WriteArgs};
use super::keys::{KeyProviderArg, NewKeyArgs};
use super::output::Inputs;
use super::size::{human, parse_size};
use super::{BackendArg, IoArg};
use anyhow::{Result, bail};
use sectorcrypt::disk::{
    CopyState, CreateOptions, HeaderPair, Mode, OpenOptions, Volume, read_headers, uuid_string,
};
use sectorcrypt::storage::{FileStorage, Storage};
use std::path::PathBuf;

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
        write: WriteArgs<DataPathArgs>,
    },
    /// Read --length bytes at --offset into FILE.
    Read {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        read: ReadArgs<DataPathArgs>,
    },
    /// Encrypt a raw image into the disk, from byte 0.
    Import {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        import: ImportArgs<DataPathArgs>,
    },
    /// Decrypt the whole disk into a raw image.
    Export {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        export: ExportArgs<DataPathArgs>,
    },
    /// Give back --length bytes at --offset (TRIM): whole data units are deallocated and read as zeros.
    Discard {
        /// The disk file.
        path: PathBuf,
        #[command(flatten)]
        discard: DiscardArgs<DataPathArgs>,
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
        write: WriteArgs<DataPathArgs>,
    },
    /// Read --length bytes at --offset into FILE.
    Read {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        read: ReadArgs<DataPathArgs>,
    },
    /// Encrypt a raw image into the group, from byte 0.
    Import {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        import: ImportArgs<DataPathArgs>,
    },
    /// Decrypt the whole group into a raw image.
    Export {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        export: ExportArgs<DataPathArgs>,
    },
    /// Give back --length bytes at --offset (TRIM): whole data units are deallocated and read as zeros.
    Discard {
        #[command(flatten)]
        members: Members,
        #[command(flatten)]
        discard: DiscardArgs<DataPathArgs>,
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

/// A disk or group named by its files, for the data commands.
struct DiskTarget<'a> {
    paths: Vec<PathBuf>,
    mode: Mode,
    args: &'a DataPathArgs,
}

impl<'a> DiskTarget<'a> {
    fn new(paths: &[PathBuf], mode: Mode, args: &'a DataPathArgs) -> Self {
        DiskTarget { paths: paths.to_vec(), mode, args }
    }
}

impl Target for DiskTarget<'_> {
    fn open(&self, writable: bool) -> Result<Volume> {
        self.args.open(&self.paths, self.mode, writable)
    }

    fn inputs(&self) -> Inputs {
        self.args.inputs(&self.paths)
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct RekeyArgs {
    /// The kind of rekey. shallow: the DEK wrapped under a new KEK, no data rewritten. deep: a new DEK
    /// and every data unit re-encrypted to it, online and resumable (run the same command again after
    /// an interruption).
    #[arg(long, value_enum, default_value = "shallow")]
    kind: RekeyKind,
    /// Same as --kind shallow.
    #[arg(long, conflicts_with = "deep")]
    shallow: bool,
    /// Same as --kind deep.
    #[arg(long)]
    deep: bool,
    /// Deep rekey: bytes per step (tests use small steps to stop it in many places).
    #[arg(long, hide = true, value_parser = super::size::parse_size, default_value = "28M")]
    chunk: u64,
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
    /// A new DEK; every data unit re-encrypted.
    Deep,
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
        DiskCommand::Write { path, write } => {
            data::write_from(&DiskTarget::new(&one(path), Mode::Vm, &write.data_path), &write)
        }
        DiskCommand::Read { path, read } => {
            data::read_to(&DiskTarget::new(&one(path), Mode::Vm, &read.data_path), &read)
        }
        DiskCommand::Import { path, import } => {
            data::import_raw(&DiskTarget::new(&one(path), Mode::Vm, &import.data_path), &import)
        }
        DiskCommand::Export { path, export } => {
            data::export_raw(&DiskTarget::new(&one(path), Mode::Vm, &export.data_path), &export)
        }
        DiskCommand::Discard { path, discard } => {
            data::discard_cmd(&DiskTarget::new(&one(path), Mode::Vm, &discard.data_path), &discard)
        }
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
        GroupCommand::Write { members, write } => {
            data::write_from(&DiskTarget::new(&members.paths(), d, &write.data_path), &write)
        }
        GroupCommand::Read { members, read } => {
            data::read_to(&DiskTarget::new(&members.paths(), d, &read.data_path), &read)
        }
        GroupCommand::Import { members, import } => {
            data::import_raw(&DiskTarget::new(&members.paths(), d, &import.data_path), &import)
        }
        GroupCommand::Export { members, export } => {
            data::export_raw(&DiskTarget::new(&members.paths(), d, &export.data_path), &export)
        }
        GroupCommand::Discard { members, discard } => {
            data::discard_cmd(&DiskTarget::new(&members.paths(), d, &discard.data_path), &discard)
        }
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
            "format_version": if h.reencryption.is_some() {
                sectorcrypt::disk::format::REENCRYPTING_VERSION
            } else {
                sectorcrypt::disk::format::FORMAT_VERSION
            },
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
        if let Some(record) = &h.reencryption {
            let unit = h.data_unit as u64;
            entry["reencryption"] = serde_json::json!({
                "position": record.position * unit,
                "total": h.data_size,
                "hot": record.hot * unit,
                "new_key_ref": record.new_dek.key_ref().to_string(),
                "new_dek_verifier": hex::encode(record.new_dek.verifier()),
            });
        }
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
        if let Some(r) = e.get("reencryption") {
            let (position, total) = (r["position"].as_u64().unwrap_or(0), r["total"].as_u64().unwrap_or(1));
            outln!(
                "  deep rekey   in progress: {} of {} re-encrypted ({}%), new key {}; run `rekey --deep` to resume",
                human(position),
                human(total),
                position * 100 / total.max(1),
                r["new_key_ref"].as_str().unwrap_or_default()
            );
        }
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

fn rekey_cmd(paths: &[PathBuf], mode: Mode, args: RekeyArgs) -> Result<()> {
    let deep = args.deep || (matches!(args.kind, RekeyKind::Deep) && !args.shallow);
    if deep {
        return deep_rekey(paths, mode, args);
    }
    let provider = args.provider.open()?;
    let (old, new) =
        sectorcrypt::disk::rekey_shallow(paths, mode, provider.as_ref(), args.new_key_id.as_deref())?;
    outln!("rekeyed: the DEK is now wrapped under {new} (was {old}); no data was rewritten");
    Ok(())
}

/// A deep rekey, or the rest of an interrupted one, with a progress bar on a terminal.
fn deep_rekey(paths: &[PathBuf], mode: Mode, args: RekeyArgs) -> Result<()> {
    let provider = args.provider.open()?;
    let options = OpenOptions { writable: true, ..OpenOptions::default() };
    let volume = Volume::open(paths, mode, provider.as_ref(), options)?;
    for notice in volume.notices() {
        eprintln!("sectorcrypt: warning: {notice}");
    }
    let bar = super::data::progress(volume.size(), "re-encrypting");
    let outcome =
        volume.deep_rekey_in_chunks(provider.as_ref(), args.new_key_id.as_deref(), args.chunk, &mut |step| {
            bar.set_length(step.total);
            bar.set_position(step.done);
        });
    bar.finish_and_clear();
    let done = outcome?;
    if done.resumed && args.new_key_id.is_some() {
        eprintln!(
            "sectorcrypt: warning: resumed a deep rekey begun earlier; its new DEK stays wrapped under {}",
            done.key_ref
        );
    }
    outln!(
        "deep rekey {}: every data unit is under a new DEK, wrapped under {}",
        if done.resumed { "resumed and finished" } else { "finished" },
        done.key_ref
    );
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
