//! A volume's life apart from its data: create, open, shallow rekey, repair, and the hazmat key dump.
//!
//! `create` formats new stores: the geometry is checked, a fresh DEK is wrapped under a KEK from the
//! provider, and both header copies are written and flushed. For files, each member is built as an
//! unnamed file and linked into place only when complete, so a crash leaves no half-made disk and an
//! existing file is never replaced. A shallow rekey re-wraps the DEK under a new KEK in every member's
//! header pair (generation + 1); `repair` rewrites damaged or stale copies and brings members that an
//! interrupted group rekey left behind to the newest generation.

use super::datapath::Volume;
use super::format::{
    CopyState, DATA_OFFSET, DEFAULT_STRIPE, GroupPlace, HEADER_OFFSETS, Header, HeaderPair, Mode, new_uuid,
};
use super::members::{Member, check_group, check_members, disk_error, open_file_member, storage_error};
use super::options::OpenOptions;
use crate::error::{DiskFault, Error, Result};
use crate::files::{AtomicFile, Overwrite};
use crate::key::KeySize;
use crate::keys::{Dek, KeyProvider, KeyRef, WrappedDek};
use crate::storage::{FileStorage, Storage};
use crate::xts::DataUnits;
use std::path::PathBuf;

/// How to lay out a new disk or group.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Bytes per data unit (power of two, 512..=131072).
    pub data_unit: usize,
    /// XTS-AES-256 (default) or XTS-AES-128.
    pub cipher: KeySize,
    /// The KEK's id at the provider (default: a fresh random id).
    pub key_id: Option<String>,
    /// Stripe of a group (default 1 MiB); ignored in VM mode.
    pub stripe: u64,
}

impl Default for CreateOptions {
    fn default() -> CreateOptions {
        CreateOptions { data_unit: 4096, cipher: KeySize::Aes256, key_id: None, stripe: DEFAULT_STRIPE }
    }
}

/// The headers of a new disk (one) or group (one per member), with a fresh wrapped DEK.
fn new_headers(
    count: usize,
    mode: Mode,
    member_size: u64,
    options: &CreateOptions,
    provider: &dyn KeyProvider,
) -> Result<Vec<Header>> {
    let unit = DataUnits::new(options.data_unit)?.size() as u64;
    let stripe = match mode {
        Mode::Vm => member_size,
        Mode::Datastore => options.stripe,
    };
    let bad = |reason: String| disk_error("", DiskFault::InvalidLayout, reason);
    match mode {
        Mode::Vm if count != 1 => return Err(bad("a VM-mode disk has exactly one file".into())),
        Mode::Datastore if count == 0 => return Err(bad("a group needs at least one member".into())),
        _ => {}
    }
    if member_size == 0 || !member_size.is_multiple_of(unit) {
        return Err(bad(format!("the size must be a positive multiple of the data unit ({unit} bytes)")));
    }
    if mode == Mode::Datastore
        && (stripe == 0 || !stripe.is_multiple_of(unit) || !member_size.is_multiple_of(stripe))
    {
        return Err(bad(format!(
            "the stripe ({stripe}) must be a multiple of the data unit ({unit}) and divide the size per member ({member_size})"
        )));
    }
    if DATA_OFFSET.checked_add(member_size).is_none() || member_size.checked_mul(count as u64).is_none() {
        return Err(bad("the size is too large: it passes 2^64 bytes".into()));
    }
    let (_dek, wrapped) = provider.new_wrapped_dek(options.cipher, options.key_id.as_deref())?;
    let group_uuid = if mode == Mode::Datastore { new_uuid()? } else { [0; 16] };
    (0..count)
        .map(|index| {
            let header = Header {
                sequence: 0,
                generation: 1,
                uuid: new_uuid()?,
                mode,
                cipher: options.cipher,
                data_unit: unit as u32,
                data_offset: DATA_OFFSET,
                data_size: member_size,
                place: GroupPlace {
                    group_uuid,
                    member_index: index as u32,
                    member_count: count as u32,
                    stripe,
                },
                wrapped_dek: wrapped.clone(),
                reencryption: None,
            };
            header.check_geometry()?;
            Ok(header)
        })
        .collect()
}

/// Writes both copies of a new header (sequence 1 and 2) and flushes.
fn format_store(storage: &dyn Storage, header: &Header) -> Result<()> {
    let fail = |err| storage_error(storage, err);
    for slot in [0, 1] {
        let copy = Header { sequence: slot as u64 + 1, ..header.clone() };
        storage.write_at(&copy.encode(slot), HEADER_OFFSETS[slot]).map_err(fail)?;
    }
    storage.flush().map_err(fail)
}

impl Volume {
    /// Creates a new disk (VM mode, one path) or group (datastore mode, one path per member) of
    /// `member_size` data bytes per member, with a fresh DEK wrapped under a KEK from `provider`.
    /// Refuses existing paths. Each file appears complete or not at all; on any failure every file
    /// it created is removed. The data area is sparse: it takes no space until written.
    pub fn create(
        paths: &[PathBuf],
        mode: Mode,
        member_size: u64,
        options: &CreateOptions,
        provider: &dyn KeyProvider,
    ) -> Result<()> {
        // Checked before the provider makes a KEK (a key server would keep it); the link into place
        // refuses an existing file again, for one that appears meanwhile.
        for (i, path) in paths.iter().enumerate() {
            if paths[..i].contains(path) {
                return Err(disk_error(&path.display().to_string(), DiskFault::Mismatch, "is given twice"));
            }
            if std::fs::symlink_metadata(path).is_ok() {
                let name = path.display().to_string();
                return Err(disk_error(
                    &name,
                    DiskFault::AlreadyExists,
                    "already exists; refusing to overwrite it",
                ));
            }
        }
        let headers = new_headers(paths.len(), mode, member_size, options, provider)?;
        let mut files = Vec::with_capacity(paths.len());
        for (path, header) in paths.iter().zip(&headers) {
            let file = AtomicFile::create(path, Overwrite::Refuse, 0o666)?;
            let fail = |err| crate::Error::io(path.display().to_string(), err);
            file.file().set_len(DATA_OFFSET + member_size).map_err(fail)?;
            let clone = file.file().try_clone().map_err(fail)?;
            format_store(&FileStorage::from_file(path, clone, true), header)?;
            files.push(file);
        }
        let mut linked: Vec<&PathBuf> = Vec::new();
        for (file, path) in files.into_iter().zip(paths) {
            if let Err(err) = file.commit() {
                for path in linked {
                    let _ = std::fs::remove_file(path);
                }
                return Err(err);
            }
            linked.push(path);
        }
        Ok(())
    }

    /// Formats caller-supplied stores as a new disk (one store) or group (one per member), each at
    /// least 1 MiB + `member_size` bytes. Whatever the stores held before is lost.
    pub fn create_on(
        stores: &[&dyn Storage],
        mode: Mode,
        member_size: u64,
        options: &CreateOptions,
        provider: &dyn KeyProvider,
    ) -> Result<()> {
        let headers = new_headers(stores.len(), mode, member_size, options, provider)?;
        for store in stores {
            let len = store.size().map_err(|err| storage_error(*store, err))?;
            if len < DATA_OFFSET + member_size {
                return Err(disk_error(
                    store.name(),
                    DiskFault::InvalidLayout,
                    format!("holds {len} bytes, a member of this size needs {}", DATA_OFFSET + member_size),
                ));
            }
        }
        for (store, header) in stores.iter().zip(&headers) {
            format_store(*store, header)?;
        }
        Ok(())
    }

    /// Opens a disk or a complete group of files, unwrapping its DEK with `provider`.
    pub fn open(
        paths: &[PathBuf],
        mode: Mode,
        provider: &dyn KeyProvider,
        options: OpenOptions,
    ) -> Result<Volume> {
        let members = open_paths(paths, mode, &options)?;
        Volume::open_members(members, provider, options)
    }

    /// Opens a disk or a complete group on caller-supplied stores (one per member, any order).
    pub fn open_on(
        stores: Vec<Box<dyn Storage>>,
        mode: Mode,
        provider: &dyn KeyProvider,
        options: OpenOptions,
    ) -> Result<Volume> {
        let mut members = stores
            .into_iter()
            .map(|store| Member::open(store, options.writable))
            .collect::<Result<Vec<_>>>()?;
        check_members(&mut members, mode, options.writable)?;
        Volume::open_members(members, provider, options)
    }

    fn open_members(
        members: Vec<Member>,
        provider: &dyn KeyProvider,
        options: OpenOptions,
    ) -> Result<Volume> {
        let keys = super::rekey::open_keys(&members, provider, options.backend)?;
        let volume = Volume::from_members(members, keys, options, false)?;
        if volume.is_writable() {
            // Units a crashed deep rekey left between the keys are re-encrypted before any write.
            volume.settle()?;
        }
        Ok(volume)
    }

    /// The benchmark baseline: the volume on the same data path (staging, io_uring, O_DIRECT, pieces,
    /// locks) but with the cipher left out, so a benchmark can measure what encryption adds. Needs no
    /// key. What it writes is **plaintext**, so never point it at a disk that holds data; only the
    /// `unencrypted-baseline` feature, which the CLI's workload benchmark enables, has it.
    #[cfg(feature = "unencrypted-baseline")]
    pub fn open_unencrypted_baseline(paths: &[PathBuf], mode: Mode, options: OpenOptions) -> Result<Volume> {
        let members = open_paths(paths, mode, &options)?;
        let throwaway = Dek::generate(members[0].header().cipher)?;
        let xts = crate::xts::Xts::new(throwaway.xts_key(), options.backend)?;
        let count = members.len();
        Volume::from_members(members, super::keyed::Keys::at_rest(xts, count), options, true)
    }
}

fn open_paths(paths: &[PathBuf], mode: Mode, options: &OpenOptions) -> Result<Vec<Member>> {
    let mut members = paths
        .iter()
        .map(|p| open_file_member(p, options.writable, options.direct))
        .collect::<Result<Vec<_>>>()?;
    check_members(&mut members, mode, options.writable)?;
    Ok(members)
}

/// Shallow rekey: the DEK re-wrapped under a new KEK (`new_key_id`, or a fresh id) in every member's
/// header, generation + 1. No data is rewritten. Returns the old and new KEK references.
pub fn rekey_shallow(
    paths: &[PathBuf],
    mode: Mode,
    provider: &dyn KeyProvider,
    new_key_id: Option<&str>,
) -> Result<(KeyRef, KeyRef)> {
    let mut members =
        open_paths(paths, mode, &OpenOptions { writable: true, direct: false, ..OpenOptions::default() })?;
    let current = members[0].header().clone();
    // One new KEK wraps the DEK, and the new DEK of a deep rekey in progress too.
    let old_kek = provider.get_kek(current.wrapped_dek.key_ref())?;
    let new_ref = provider.create_kek(new_key_id)?;
    if new_ref == *current.wrapped_dek.key_ref() {
        return Err(Error::SameKek(new_ref.to_string()));
    }
    let new_kek = provider.get_kek(&new_ref)?;
    let rewrapped = current.wrapped_dek.rewrap(&old_kek, &new_kek, &new_ref)?;
    let record = match &current.reencryption {
        Some(record) => {
            let kek = provider.get_kek(record.new_dek.key_ref())?;
            Some(super::format::Reencryption {
                new_dek: record.new_dek.rewrap(&kek, &new_kek, &new_ref)?,
                ..record.clone()
            })
        }
        None => None,
    };
    for (index, member) in members.iter_mut().enumerate() {
        let mut header = Header {
            generation: current.generation + 1,
            wrapped_dek: rewrapped.clone(),
            ..member.header().clone()
        };
        if let (Some(mine), Some(record)) = (header.reencryption.as_mut(), &record) {
            mine.new_dek = record.new_dek.clone();
        }
        match member.write_pair(&header) {
            // The members before this one have the new key: the group is part-way, `repair` ends it.
            Err(cause) if index > 0 && !matches!(cause, Error::Unfinished { .. }) => {
                let path = member.name().to_owned();
                return Err(Error::Unfinished { path, what: "the group rekey", cause: Box::new(cause) });
            }
            other => other?,
        }
    }
    Ok((current.wrapped_dek.key_ref().clone(), new_ref))
}

/// Rewrites damaged or stale header copies from the current one, and (in a group) brings members left
/// behind by an interrupted rekey to the newest key generation. Needs no key. Returns what it did.
pub fn repair(paths: &[PathBuf], mode: Mode) -> Result<Vec<String>> {
    let mut actions = Vec::new();
    let mut members = Vec::new();
    for path in paths {
        let member = open_file_member(path, true, false)?;
        if member.header().mode != mode {
            let name = path.display().to_string();
            return Err(disk_error(
                &name,
                DiskFault::Mismatch,
                format!("is not a {}-mode disk", mode.name()),
            ));
        }
        members.push(member);
    }
    for member in &mut members {
        for (slot, problem) in member.headers.problems().into_iter().enumerate() {
            if let Some(problem) = problem {
                let mut header = member.header().clone();
                header.sequence = max_sequence(&member.headers) + 1;
                member.write_copy(&header, slot)?;
                actions.push(format!("{}: rewrote header copy {slot} ({problem})", member.name()));
            }
        }
        member.reread()?;
    }
    // An interrupted group rekey: members at an older generation take the newest wrapped key.
    let newest = members.iter().map(|m| m.header().clone()).max_by_key(|h| h.generation);
    if let Some(newest) = newest {
        for member in &mut members {
            let header = member.header().clone();
            if header.generation < newest.generation && header.place.group_uuid == newest.place.group_uuid {
                let updated = Header {
                    generation: newest.generation,
                    wrapped_dek: newest.wrapped_dek.clone(),
                    reencryption: newest.reencryption.clone(),
                    ..header.clone()
                };
                member.write_pair(&updated)?;
                actions.push(format!(
                    "{}: key generation {} -> {} (finished an interrupted rekey)",
                    member.name(),
                    header.generation,
                    newest.generation
                ));
            }
        }
    }
    members.sort_by_key(|m| m.header().place.member_index);
    check_group(&members)?;
    Ok(actions)
}

fn max_sequence(pair: &HeaderPair) -> u64 {
    pair.copies
        .iter()
        .filter_map(|c| match c {
            CopyState::Valid(h) => Some(h.sequence),
            CopyState::Damaged(_) => None,
        })
        .max()
        .unwrap_or(0)
}

/// The DEK of a disk or group, for interop checks. Anyone holding it can decrypt the data without the
/// key provider: only the explicitly named hazmat command exposes it.
pub fn hazmat_unwrap_dek(
    paths: &[PathBuf],
    mode: Mode,
    provider: &dyn KeyProvider,
) -> Result<(Dek, WrappedDek)> {
    let members = open_paths(paths, mode, &OpenOptions { direct: false, ..OpenOptions::default() })?;
    let wrapped = members[0].header().wrapped_dek.clone();
    Ok((provider.unwrap_dek(&wrapped)?, wrapped))
}
