//! [`FileStorage`]: a regular file or a block device, with a second O_DIRECT descriptor for bulk data.

use super::Storage;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// A regular file or a block device.
///
/// The descriptor opened by [`open`](Self::open) goes through the page cache and serves header I/O and
/// the advisory lock. [`open_direct`](Self::open_direct) adds a descriptor with O_DIRECT for the data
/// area, which the data path reaches through [`Storage::direct_fd`]; O_DIRECT needs every transfer
/// aligned to the device's logical block, which whole data units of 4 KiB or more always are.
#[derive(Debug)]
pub struct FileStorage {
    name: String,
    meta: File,
    data: Option<File>,
    writable: bool,
    block_device: bool,
}

impl FileStorage {
    /// Opens `path` for reading, and for writing if `writable`.
    pub fn open(path: &Path, writable: bool) -> io::Result<FileStorage> {
        let meta = std::fs::OpenOptions::new().read(true).write(writable).open(path)?;
        Ok(FileStorage::from_file(path, meta, writable))
    }

    /// A store over a file the caller has opened (`writable` as it was opened).
    pub fn from_file(path: &Path, file: File, writable: bool) -> FileStorage {
        let block_device =
            file.metadata().is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()));
        FileStorage { name: path.display().to_string(), meta: file, data: None, writable, block_device }
    }

    /// Opens the data descriptor with O_DIRECT, where the file system accepts it and is not tmpfs
    /// (which takes O_DIRECT since Linux 6.6 but serves it from memory like any other I/O). Returns
    /// whether it did; where it did not, data moves through the page cache.
    pub fn open_direct(&mut self, path: &Path) -> bool {
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(self.writable)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        match opened {
            Ok(file) if !is_tmpfs(&file) => {
                self.data = Some(file);
                true
            }
            // EINVAL: the file system does not do O_DIRECT; buffered I/O it is.
            _ => false,
        }
    }
}

fn is_tmpfs(file: &File) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    // `f_type` is i64 on x86_64 but narrower elsewhere.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstatfs(file).is_ok_and(|stat| stat.f_type as i64 == TMPFS_MAGIC)
}

impl Storage for FileStorage {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> io::Result<u64> {
        // Seeking works for block devices too, whose metadata length is 0. Nothing here uses the file
        // position: every transfer is positional.
        (&self.meta).seek(SeekFrom::End(0))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.meta.read_exact_at(buf, offset)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.meta.write_all_at(data, offset)
    }

    fn flush(&self) -> io::Result<()> {
        // fdatasync works on the inode, so it covers what went through the O_DIRECT descriptor too
        // (and flushes the device's write cache).
        self.meta.sync_data()
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::FallocateFlags;
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&self.meta, flags, offset, len) {
            Ok(()) => Ok(()),
            // A file system (or device) that cannot deallocate: zeros read the same.
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS) => {
                super::zero_fill(self, offset, len)
            }
            Err(err) => Err(err.into()),
        }
    }

    fn allocated(&self) -> Option<u64> {
        if self.block_device {
            return None;
        }
        self.meta.metadata().ok().map(|m| m.blocks() * 512)
    }

    fn lock(&self, exclusive: bool) -> io::Result<()> {
        let locked = if exclusive { self.meta.try_lock() } else { self.meta.try_lock_shared() };
        locked.map_err(|err| match err {
            std::fs::TryLockError::WouldBlock => io::ErrorKind::WouldBlock.into(),
            std::fs::TryLockError::Error(err) => err,
        })
    }

    fn direct_fd(&self) -> Option<(BorrowedFd<'_>, bool)> {
        Some(match &self.data {
            Some(data) => (data.as_fd(), true),
            None => (self.meta.as_fd(), false),
        })
    }
}
