//! What a volume is stored on: a small trait, and the stores that implement it.
//!
//! A disk or a group member is a run of bytes: two header copies at the start, then the data area of
//! XTS ciphertext. The volume needs only to read and write such bytes at an offset, make them durable,
//! know their length, and (for thin provisioning) give back a range it no longer needs. [`Storage`] is
//! exactly that, so the same data path serves:
//!
//! * [`FileStorage`]: a regular file or a block device. Header I/O goes through the page cache; bulk
//!   data moves through a second descriptor opened with O_DIRECT where the file system takes it,
//!   handed to the data path by [`Storage::direct_fd`] so io_uring can queue transfers on it.
//! * [`MemStorage`]: bytes in memory, for tests and fuzzing.
//! * [`CallbackStorage`]: functions the caller supplies, such as the next layer's pread/pwrite in a
//!   storage filter (the C ABI and the nbdkit filter build on it).
//!
//! Errors are `std::io::Error`s, so the OS error code of a failure reaches the caller of the volume.

mod file;
mod memory;
pub(crate) mod uring;

pub use file::FileStorage;
pub use memory::{CallbackStorage, MemStorage};
pub use uring::{IO_ENGINE_ENV, IoEngine};

use std::io;
use std::os::fd::BorrowedFd;

/// Bytes moved per step by the default [`Storage::discard`], which writes zeros.
const ZERO_CHUNK: usize = 1 << 20;

/// A byte store that holds one disk or one group member.
///
/// Reads and writes are positional and may run concurrently from several threads: a store must
/// serialise internally whatever cannot run in parallel. A read past the end is an error
/// ([`io::ErrorKind::UnexpectedEof`]), never a short read.
pub trait Storage: Send + Sync + core::fmt::Debug {
    /// A name for messages: the path of a file, or whatever the caller calls its store.
    fn name(&self) -> &str;

    /// The length in bytes.
    fn size(&self) -> io::Result<u64>;

    /// Fills `buf` from byte `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `data` at byte `offset`.
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;

    /// Makes every completed write durable.
    fn flush(&self) -> io::Result<()>;

    /// Gives back `len` bytes at `offset`: afterwards they read as zeros. A store that can deallocate
    /// (punch a hole, TRIM, UNMAP) does; the default writes zeros.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        zero_fill(self, offset, len)
    }

    /// Bytes of backing store in use, where the store can tell (a sparse file's allocated blocks).
    fn allocated(&self) -> Option<u64> {
        None
    }

    /// Takes the store's advisory lock, exclusive for a writer and shared for readers; an error of
    /// kind [`io::ErrorKind::WouldBlock`] when another holder conflicts. Stores without locks succeed.
    fn lock(&self, exclusive: bool) -> io::Result<()> {
        let _ = exclusive;
        Ok(())
    }

    /// A descriptor through which bulk data may move directly (pread/pwrite or io_uring on it), and
    /// whether it is open with O_DIRECT. Stores without one move every byte through `read_at` and
    /// `write_at`.
    fn direct_fd(&self) -> Option<(BorrowedFd<'_>, bool)> {
        None
    }
}

/// Writes `len` zero bytes at `offset`, a chunk at a time: the default [`Storage::discard`], for stores
/// that can deallocate only some ranges and write zeros over the rest.
pub fn zero_fill<S: Storage + ?Sized>(storage: &S, offset: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(ZERO_CHUNK as u64) as usize;
        storage.write_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// A store shared with the caller (who may keep a handle to look at it, as tests do) is a store.
impl<S: Storage + ?Sized> Storage for std::sync::Arc<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_at(buf, offset)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        (**self).write_at(data, offset)
    }
    fn flush(&self) -> io::Result<()> {
        (**self).flush()
    }
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        (**self).discard(offset, len)
    }
    fn allocated(&self) -> Option<u64> {
        (**self).allocated()
    }
    fn lock(&self, exclusive: bool) -> io::Result<()> {
        (**self).lock(exclusive)
    }
    fn direct_fd(&self) -> Option<(BorrowedFd<'_>, bool)> {
        (**self).direct_fd()
    }
}
