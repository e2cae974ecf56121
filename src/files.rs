//! Files as a storage tool must treat them: written completely or not at all, and opened without
//! hanging on a FIFO or reading a device until memory runs out.
//!
//! [`AtomicFile`] fills a file that has no name yet (`O_TMPFILE`), syncs it, and only then gives it its
//! name: with `linkat`, which fails if the name exists ([`Overwrite::Refuse`]), or by linking it under a
//! temporary name and renaming that over the target ([`Overwrite::Replace`]); then it syncs the
//! directory so the name itself survives a power cut. A process killed before the commit leaves
//! nothing behind, since an unnamed file vanishes with its last descriptor. Where the file system has
//! no `O_TMPFILE` (or `/proc` is not mounted) a hidden named temporary file takes its place; it is
//! removed when the `AtomicFile` is dropped, and [`remove_unfinished`] removes every one still open, for
//! a program's signal handler.
//!
//! [`open_file`] opens with `O_NONBLOCK` and checks the file type before anything reads, so a FIFO or
//! a socket is refused at once instead of blocking; [`read_small`] reads a file that must be small
//! (a key, a passphrase, a wrapped key) and refuses one that is larger than its bound.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Named temporary files not yet committed or removed, for [`remove_unfinished`].
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// What [`AtomicFile::commit`] does when the target exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail, and leave the existing file as it is.
    Refuse,
    /// Replace it in one step: readers see the old file or the new one, never a mix.
    Replace,
}

/// A new file that appears at its path complete and synced, or not at all.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    dir: PathBuf,
    target: PathBuf,
    /// The hidden name of the fallback temporary file; `None` while the file is unnamed.
    named: Option<PathBuf>,
    overwrite: Overwrite,
}

fn io_err(path: &Path, err: impl Into<io::Error>) -> Error {
    Error::io(path.display().to_string(), err.into())
}

fn exists_error(path: &Path) -> Error {
    io_err(path, io::Error::new(io::ErrorKind::AlreadyExists, "already exists; refusing to overwrite it"))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// A hidden name in `dir` that nothing uses yet is likely; `create_new` settles it.
fn temp_name(dir: &Path) -> Result<PathBuf> {
    let mut random = [0u8; 8];
    crate::keys::random_bytes(&mut random)?;
    Ok(dir.join(format!(".sectorcrypt-{}.tmp", hex::encode(random))))
}

fn register(path: &Path) {
    UNFINISHED.lock().unwrap_or_else(|p| p.into_inner()).push(path.to_owned());
}

fn unregister(path: &Path) {
    UNFINISHED.lock().unwrap_or_else(|p| p.into_inner()).retain(|p| p != path);
}

/// Removes every named temporary file an [`AtomicFile`] of this process still holds. For a signal
/// handler: after it, the process should exit without committing.
pub fn remove_unfinished() {
    let paths = std::mem::take(&mut *UNFINISHED.lock().unwrap_or_else(|p| p.into_inner()));
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

impl AtomicFile {
    /// Starts a new file for `target` with permission bits `mode` (before the umask). With
    /// [`Overwrite::Refuse`], an existing target is refused here already, so no work is wasted.
    pub fn create(target: &Path, overwrite: Overwrite, mode: u32) -> Result<AtomicFile> {
        if let Ok(meta) = std::fs::symlink_metadata(target) {
            if meta.is_dir() {
                return Err(io_err(target, io::Error::new(io::ErrorKind::IsADirectory, "is a directory")));
            }
            if overwrite == Overwrite::Refuse {
                return Err(exists_error(target));
            }
        }
        let dir = parent_dir(target);
        let unnamed = Path::new("/proc/self/fd").is_dir().then(|| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .mode(mode)
                .custom_flags(libc::O_TMPFILE)
                .open(&dir)
        });
        let (file, named) = match unnamed {
            Some(Ok(file)) => (file, None),
            // No O_TMPFILE here (EOPNOTSUPP, EISDIR on old kernels, ...): a hidden named file.
            _ => {
                let path = temp_name(&dir)?;
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&path)
                    .map_err(|err| io_err(&dir, err))?;
                register(&path);
                (file, Some(path))
            }
        };
        Ok(AtomicFile { file, dir, target: target.to_owned(), named, overwrite })
    }

    /// The file to write.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path the file will have.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Syncs the file, gives it its name and syncs the directory. On an error the target is as it was.
    pub fn commit(mut self) -> Result<()> {
        self.file.sync_all().map_err(|err| io_err(&self.target, err))?;
        let result = match self.named.take() {
            None => self.name_unnamed(),
            Some(temp) => self.name_named(&temp),
        };
        result?;
        sync_dir(&self.dir).map_err(|err| io_err(&self.dir, err))
    }

    fn name_unnamed(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        let link = |to: &Path| {
            rustix::fs::linkat(
                rustix::fs::CWD,
                proc_path.as_str(),
                rustix::fs::CWD,
                to,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            )
        };
        match self.overwrite {
            Overwrite::Refuse => link(&self.target).map_err(|err| match err {
                rustix::io::Errno::EXIST => exists_error(&self.target),
                err => io_err(&self.target, err),
            }),
            Overwrite::Replace => {
                let temp = temp_name(&self.dir)?;
                link(&temp).map_err(|err| io_err(&self.target, err))?;
                register(&temp);
                self.name_named(&temp)
            }
        }
    }

    /// Moves the named temporary file `temp` to the target; it is gone afterwards either way.
    fn name_named(&self, temp: &Path) -> Result<()> {
        let result = match self.overwrite {
            Overwrite::Replace => {
                std::fs::rename(temp, &self.target).map_err(|err| io_err(&self.target, err))
            }
            Overwrite::Refuse => match std::fs::hard_link(temp, &self.target) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(exists_error(&self.target)),
                // A file system without hard links: check, then rename (a narrow race, no loss of data).
                Err(_) if std::fs::symlink_metadata(&self.target).is_err() => {
                    std::fs::rename(temp, &self.target).map_err(|err| io_err(&self.target, err))
                }
                Err(_) => Err(exists_error(&self.target)),
            },
        };
        let _ = std::fs::remove_file(temp);
        unregister(temp);
        result
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(temp) = self.named.take() {
            let _ = std::fs::remove_file(&temp);
            unregister(&temp);
        }
    }
}

/// Makes a directory's entries durable. File systems that cannot sync a directory say EINVAL.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// Which kinds of file [`open_file`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKinds {
    /// Regular files only.
    Regular,
    /// Regular files and block devices.
    RegularOrBlockDevice,
}

fn type_name(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading (and writing if `writable`) without blocking, and refuses it unless it is
/// one of `kinds`. The descriptor is in blocking mode when returned.
pub fn open_file(path: &Path, writable: bool, kinds: FileKinds) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| io_err(path, err))?;
    let file_type = file.metadata().map_err(|err| io_err(path, err))?.file_type();
    let accepted =
        file_type.is_file() || (kinds == FileKinds::RegularOrBlockDevice && file_type.is_block_device());
    if !accepted {
        let wanted = match kinds {
            FileKinds::Regular => "a regular file",
            FileKinds::RegularOrBlockDevice => "a regular file or a block device",
        };
        let reason = format!("is {}, not {wanted}", type_name(file_type));
        return Err(io_err(path, io::Error::new(io::ErrorKind::InvalidInput, reason)));
    }
    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty()).map_err(|err| io_err(path, err))?;
    Ok(file)
}

/// Reads a regular file of at most `max_len` bytes (a key, a passphrase, a wrapped key) into memory
/// that is zeroized when dropped. A larger file is refused before it is read.
pub fn read_small(path: &Path, max_len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let file = open_file(path, false, FileKinds::Regular)?;
    read_bounded(file, max_len, &path.display().to_string())
}

/// Reads at most `max_len` bytes from `reader` (named `name` in errors) into memory that is zeroized
/// when dropped; more is refused, with at most one byte past the bound read.
pub fn read_bounded(reader: impl Read, max_len: usize, name: &str) -> Result<Zeroizing<Vec<u8>>> {
    // Room for everything up front: a growing vector would leave unzeroized copies behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(max_len + 1));
    reader.take(max_len as u64 + 1).read_to_end(&mut bytes).map_err(|err| Error::io(name, err))?;
    if bytes.len() > max_len {
        let reason = format!("holds more than the {max_len} bytes such input can have");
        return Err(Error::io(name, io::Error::new(io::ErrorKind::InvalidData, reason)));
    }
    Ok(bytes)
}
