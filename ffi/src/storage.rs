//! `sc_storage`: a store made of the caller's functions (the next layer's pread and pwrite in a storage
//! filter), which a disk or each member of a group is opened on.

use crate::args::optional_text;
use crate::error::Failure;
use sectorcrypt::storage::Storage;
use std::ffi::{c_char, c_int, c_void};
use std::io;

/// Reads `len` bytes at `offset` into `buf`. Returns 0, or an errno value (its sign is ignored).
pub type sc_read_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, buf: *mut c_void, len: usize, offset: u64) -> c_int>;
/// Writes `len` bytes from `buf` at `offset`. Returns 0, or an errno value (its sign is ignored).
pub type sc_write_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, buf: *const c_void, len: usize, offset: u64) -> c_int>;
/// Makes completed writes durable. Returns 0, or an errno value.
pub type sc_flush_fn = Option<unsafe extern "C" fn(ctx: *mut c_void) -> c_int>;
/// Makes `len` bytes at `offset` read as zeros, deallocating them if it can. Returns 0, or an errno.
pub type sc_discard_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, offset: u64, len: u64) -> c_int>;

/// One store: a disk, or one member of a group. The functions may be called from several threads at
/// once, each call with a whole range (never a short read or write: a store that cannot move all the
/// bytes returns an error). sectorcrypt copies this struct; `ctx` and `name` must stay valid until the
/// volume is closed.
#[repr(C)]
pub struct sc_storage {
    /// Passed to every function as its first argument.
    pub ctx: *mut c_void,
    /// A name for messages (NULL: `"storage"`).
    pub name: *const c_char,
    /// The store's length in bytes (header and data area).
    pub size: u64,
    /// Required.
    pub read_at: sc_read_fn,
    /// Required for volumes opened for writing, and for creation.
    pub write_at: sc_write_fn,
    /// NULL: the store has nothing to flush.
    pub flush: sc_flush_fn,
    /// NULL: discarding writes zeros through `write_at`.
    pub discard: sc_discard_fn,
}

/// The caller's store behind the `Storage` trait.
pub(crate) struct CStorage {
    name: String,
    ctx: *mut c_void,
    size: u64,
    read: unsafe extern "C" fn(*mut c_void, *mut c_void, usize, u64) -> c_int,
    write: sc_write_fn,
    flush: sc_flush_fn,
    discard: sc_discard_fn,
}

// SAFETY: `sc_storage` documents that its functions may be called from several threads at once with
// its `ctx`, which is all `CStorage` does with the pointer.
unsafe impl Send for CStorage {}
// SAFETY: as for `Send`.
unsafe impl Sync for CStorage {}

impl core::fmt::Debug for CStorage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CStorage").field("name", &self.name).field("size", &self.size).finish_non_exhaustive()
    }
}

impl CStorage {
    /// Copies what `storage` describes.
    ///
    /// # Safety
    /// `storage.name` is NULL or a NUL-terminated string; the functions and `ctx` satisfy the contract
    /// of [`sc_storage`] until the store is dropped.
    pub(crate) unsafe fn new(storage: &sc_storage, index: usize) -> Result<CStorage, Failure> {
        // SAFETY: the caller's guarantee.
        let name = unsafe { optional_text(storage.name, "storage name")? }.unwrap_or("storage");
        let read = storage
            .read_at
            .ok_or_else(|| Failure::invalid(format!("storage {index} ({name}) has no read_at function")))?;
        Ok(CStorage {
            name: name.to_owned(),
            ctx: storage.ctx,
            size: storage.size,
            read,
            write: storage.write_at,
            flush: storage.flush,
            discard: storage.discard,
        })
    }
}

/// `EIO` on Linux and the BSDs: what an errno that has no absolute value (`INT_MIN`) is taken as.
const EIO: c_int = 5;

/// An errno value returned by a callback as an `io::Error`.
fn result(code: c_int) -> io::Result<()> {
    match code {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(code.checked_abs().unwrap_or(EIO))),
    }
}

impl Storage for CStorage {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        // SAFETY: `buf` is valid for its length of writes; the callback's contract is the caller's.
        result(unsafe { (self.read)(self.ctx, buf.as_mut_ptr().cast(), buf.len(), offset) })
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let Some(write) = self.write else {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the store has no write_at function",
            ));
        };
        // SAFETY: `data` is valid for its length of reads; the callback's contract is the caller's.
        result(unsafe { write(self.ctx, data.as_ptr().cast(), data.len(), offset) })
    }

    fn flush(&self) -> io::Result<()> {
        match self.flush {
            // SAFETY: the callback's contract is the caller's.
            Some(flush) => result(unsafe { flush(self.ctx) }),
            None => Ok(()),
        }
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        match self.discard {
            // SAFETY: the callback's contract is the caller's.
            Some(discard) => result(unsafe { discard(self.ctx, offset, len) }),
            None => sectorcrypt::storage::zero_fill(self, offset, len),
        }
    }
}
