//! Where a command's input comes from: `-` (standard input), a FIFO or character device read as a
//! stream, a regular file or a block device with its length. Nothing here blocks on opening a FIFO.

use anyhow::{Context, Result, bail};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// An open source, and its length when it has one (a stream has none).
pub(crate) struct Source {
    pub(crate) reader: Box<dyn Read>,
    pub(crate) len: Option<u64>,
}

impl Source {
    pub(crate) fn open(path: &Path) -> Result<Source> {
        if path.as_os_str() == "-" {
            return Ok(Source { reader: Box::new(std::io::stdin()), len: None });
        }
        // O_NONBLOCK: a FIFO with no writer opens at once (and reads as empty) instead of hanging.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let kind = file.metadata().with_context(|| format!("cannot read {}", path.display()))?.file_type();
        if !(kind.is_file() || kind.is_block_device() || kind.is_fifo() || kind.is_char_device()) {
            bail!("{} is not a file, a device or a FIFO", path.display());
        }
        rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty())?;
        if kind.is_fifo() || kind.is_char_device() {
            return Ok(Source { reader: Box::new(file), len: None });
        }
        // Seeking gives a block device's length too, which its metadata does not.
        let len = file.seek(SeekFrom::End(0)).and_then(|len| file.seek(SeekFrom::Start(0)).map(|_| len))?;
        Ok(Source { reader: Box::new(file), len: Some(len) })
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}
