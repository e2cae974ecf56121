//! Encrypted disks (VM mode: one DEK per disk) and disk groups (datastore mode: one DEK per group,
//! striped RAID-0 over its members), over any [`Storage`](crate::storage::Storage): files and block
//! devices through io_uring, memory, or the caller's functions.
//!
//! Each disk or member starts with two copies of a checksummed header ([`format`]) that carry the
//! layout and the wrapped DEK; the data area after them holds only XTS ciphertext. [`Volume`] opens one
//! disk or a complete group, unwraps the DEK through a key provider and serves reads and writes at any
//! offset and length; [`EncryptedDisk`] and [`DiskGroup`] are the two ways to open one from files.
//!
//! The modules follow the jobs: `members` opens stores and reads, writes and checks their header
//! pairs; `options` is how a volume is opened; `datapath` is the open volume's reads, writes and
//! discards; `lifecycle` creates, opens, rekeys and repairs.

mod datapath;
pub mod format;
mod keyed;
mod lifecycle;
mod members;
mod options;
mod rekey;
mod thin;

pub use crate::storage::{IO_ENGINE_ENV, IoEngine};
pub(crate) use datapath::Layout;
pub use datapath::{IoRequest, Volume};
pub use format::{CopyState, Header, HeaderPair, Mode, uuid_string};
pub(crate) use keyed::Keys;
pub use lifecycle::{CreateOptions, hazmat_unwrap_dek, rekey_shallow, repair};
pub use members::read_headers;
pub(crate) use members::{disk_error, lock, storage_error};
pub use options::{DEFAULT_QUEUE_DEPTH, Notice, OpenOptions};
pub use rekey::{DeepRekey, RekeyProgress};

use crate::error::Result;
use crate::keys::KeyProvider;
use std::path::{Path, PathBuf};

/// A VM-mode encrypted disk: one file, one DEK.
#[derive(Debug)]
pub struct EncryptedDisk(Volume);

impl EncryptedDisk {
    /// Creates a disk of `size` data bytes at `path` (which must not exist).
    pub fn create(path: &Path, size: u64, options: &CreateOptions, provider: &dyn KeyProvider) -> Result<()> {
        Volume::create(&[path.to_owned()], Mode::Vm, size, options, provider)
    }

    /// Opens a disk, unwrapping its DEK through `provider`.
    pub fn open(path: &Path, provider: &dyn KeyProvider, options: OpenOptions) -> Result<EncryptedDisk> {
        Volume::open(&[path.to_owned()], Mode::Vm, provider, options).map(EncryptedDisk)
    }
}

/// A datastore-mode disk group: members striped into one address space, one DEK for all.
#[derive(Debug)]
pub struct DiskGroup(Volume);

impl DiskGroup {
    /// Creates a group of `members` (none may exist) with `size_per_member` data bytes each.
    pub fn create(
        members: &[PathBuf],
        size_per_member: u64,
        options: &CreateOptions,
        provider: &dyn KeyProvider,
    ) -> Result<()> {
        Volume::create(members, Mode::Datastore, size_per_member, options, provider)
    }

    /// Opens a group; every member must be given (in any order) and agree with the others.
    pub fn open(members: &[PathBuf], provider: &dyn KeyProvider, options: OpenOptions) -> Result<DiskGroup> {
        Volume::open(members, Mode::Datastore, provider, options).map(DiskGroup)
    }
}

impl core::ops::Deref for EncryptedDisk {
    type Target = Volume;
    fn deref(&self) -> &Volume {
        &self.0
    }
}

impl core::ops::Deref for DiskGroup {
    type Target = Volume;
    fn deref(&self) -> &Volume {
        &self.0
    }
}
