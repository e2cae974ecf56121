//! Stores that are not files: bytes in memory, and functions the caller supplies.

use super::Storage;
use std::io;
use std::sync::RwLock;

/// Bytes in memory, for tests and fuzzing. Concurrent reads share the lock; writes take it alone.
#[derive(Debug)]
pub struct MemStorage {
    name: String,
    bytes: RwLock<Vec<u8>>,
}

impl MemStorage {
    /// `len` zero bytes.
    pub fn new(name: impl Into<String>, len: usize) -> MemStorage {
        MemStorage::from_bytes(name, vec![0; len])
    }

    /// A store holding `bytes`.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> MemStorage {
        MemStorage { name: name.into(), bytes: RwLock::new(bytes) }
    }

    /// A copy of the bytes as they are now.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The range `offset..offset + len` of a store of `size` bytes, or the error for a range past its end.
fn range(offset: u64, len: usize, size: usize) -> io::Result<core::ops::Range<usize>> {
    usize::try_from(offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(len)?))
        .filter(|r| r.end <= size)
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the end of the store"))
}

impl Storage for MemStorage {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.bytes.read().unwrap_or_else(|p| p.into_inner()).len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let bytes = self.bytes.read().unwrap_or_else(|p| p.into_inner());
        buf.copy_from_slice(&bytes[range(offset, buf.len(), bytes.len())?]);
        Ok(())
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let mut bytes = self.bytes.write().unwrap_or_else(|p| p.into_inner());
        let at = range(offset, data.len(), bytes.len())?;
        bytes[at].copy_from_slice(data);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

type ReadFn = dyn Fn(&mut [u8], u64) -> io::Result<()> + Send + Sync;
type WriteFn = dyn Fn(&[u8], u64) -> io::Result<()> + Send + Sync;
type FlushFn = dyn Fn() -> io::Result<()> + Send + Sync;
type DiscardFn = dyn Fn(u64, u64) -> io::Result<()> + Send + Sync;

/// A store made of the caller's functions, such as the next layer's pread and pwrite in a storage
/// filter. Each must be safe to call from several threads at once.
pub struct CallbackStorage {
    name: String,
    size: u64,
    read: Box<ReadFn>,
    write: Box<WriteFn>,
    flush: Box<FlushFn>,
    discard: Option<Box<DiscardFn>>,
}

impl core::fmt::Debug for CallbackStorage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CallbackStorage").field("name", &self.name).field("size", &self.size).finish()
    }
}

impl CallbackStorage {
    /// A store of `size` bytes named `name`, read, written and flushed by the given functions.
    pub fn new(
        name: impl Into<String>,
        size: u64,
        read: impl Fn(&mut [u8], u64) -> io::Result<()> + Send + Sync + 'static,
        write: impl Fn(&[u8], u64) -> io::Result<()> + Send + Sync + 'static,
        flush: impl Fn() -> io::Result<()> + Send + Sync + 'static,
    ) -> CallbackStorage {
        CallbackStorage {
            name: name.into(),
            size,
            read: Box::new(read),
            write: Box::new(write),
            flush: Box::new(flush),
            discard: None,
        }
    }

    /// Adds a function that deallocates a range (trim); without one, discarding writes zeros.
    pub fn with_discard(
        mut self,
        discard: impl Fn(u64, u64) -> io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.discard = Some(Box::new(discard));
        self
    }
}

impl Storage for CallbackStorage {
    fn name(&self) -> &str {
        &self.name
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.size)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (self.read)(buf, offset)
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        (self.write)(data, offset)
    }

    fn flush(&self) -> io::Result<()> {
        (self.flush)()
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        match &self.discard {
            Some(discard) => discard(offset, len),
            None => super::zero_fill(self, offset, len),
        }
    }
}
