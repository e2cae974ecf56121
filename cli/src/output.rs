//! Where a command's output goes, and what it may never overwrite.
//!
//! `--to -` is standard output. A block device, a character device or a FIFO is written through, as
//! `dd` would (a block device only after a confirmation, or with `--batch`). A regular file is written
//! as a new file that replaces the target only when complete and synced (`sectorcrypt::files`), and an
//! existing one is refused unless `--force`: the output is usually plaintext and the files around are
//! disks and keys, so the safe default of `cp -n` wins over `qemu-img convert`'s overwrite. Whatever
//! the kind, an output that is one of the command's inputs (a disk, a member, the KDK, a source) is
//! refused before anything is opened for writing.

use anyhow::{Context, Result, bail};
use sectorcrypt::ErrorKind;
use sectorcrypt::files::{AtomicFile, Overwrite};
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// `--force` and `--batch`, for every command that writes an output file.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct OutputArgs {
    /// Replace an existing regular output file (otherwise refused).
    #[arg(long)]
    pub(crate) force: bool,
    /// Never ask: write to a block device without confirmation.
    #[arg(long)]
    pub(crate) batch: bool,
}

/// The files a command reads or holds: its output may be none of them.
#[derive(Debug, Default)]
pub(crate) struct Inputs(Vec<PathBuf>);

impl Inputs {
    pub(crate) fn new() -> Inputs {
        Inputs(Vec::new())
    }

    pub(crate) fn add(&mut self, path: &Path) -> &mut Inputs {
        self.0.push(path.to_owned());
        self
    }

    /// Adds the files a key provider spec names (the KDK of `native:PATH`).
    pub(crate) fn add_provider(&mut self, spec: Option<&str>) -> &mut Inputs {
        self.0.extend(spec.map(sectorcrypt::keys::provider_files).unwrap_or_default());
        self
    }

    /// Refuses `to` if it is the same file (same device and inode, through any link) as an input.
    pub(crate) fn check(&self, to: &Path) -> Result<()> {
        let Ok(target) = std::fs::metadata(to) else { return Ok(()) };
        for input in &self.0 {
            if let Ok(meta) = std::fs::metadata(input)
                && meta.dev() == target.dev()
                && meta.ino() == target.ino()
            {
                bail!(
                    "{}: is {} (an input of this command); refusing to write the output over it",
                    to.display(),
                    input.display()
                );
            }
        }
        Ok(())
    }
}

/// An open output.
pub(crate) enum Output {
    Stdout(std::io::Stdout),
    /// A device or FIFO, written through.
    Through(File, PathBuf),
    /// A new regular file.
    Atomic(AtomicFile),
}

impl Output {
    /// Opens `to` under the rules above.
    pub(crate) fn open(to: &Path, args: &OutputArgs, inputs: &Inputs) -> Result<Output> {
        if to.as_os_str() == "-" {
            return Ok(Output::Stdout(std::io::stdout()));
        }
        inputs.check(to)?;
        // Follow a link to what it names (`/dev/stdout` -> the terminal, pipe or file), so the link is
        // never replaced by a file.
        let target = match std::fs::symlink_metadata(to) {
            Ok(meta) if meta.file_type().is_symlink() => {
                std::fs::canonicalize(to).unwrap_or_else(|_| to.to_owned())
            }
            _ => to.to_owned(),
        };
        if let Ok(meta) = std::fs::metadata(&target) {
            let kind = meta.file_type();
            if kind.is_block_device() {
                confirm_device(&target, args)?;
            }
            if kind.is_block_device() || kind.is_char_device() || kind.is_fifo() {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .with_context(|| format!("cannot write {}", target.display()))?;
                return Ok(Output::Through(file, target));
            }
        }
        // Mode 0600, as before: the output is usually plaintext.
        Ok(Output::Atomic(new_file(&target, args.force, 0o600)?))
    }

    /// Where the bytes go.
    pub(crate) fn writer(&mut self) -> Box<dyn Write + '_> {
        match self {
            Output::Stdout(out) => Box::new(out.lock()),
            Output::Through(file, _) => Box::new(&*file),
            Output::Atomic(file) => Box::new(file.file()),
        }
    }

    /// Finishes: syncs a device, commits a new file.
    pub(crate) fn commit(self) -> Result<()> {
        match self {
            Output::Stdout(out) => out.lock().flush().context("cannot write to standard output"),
            Output::Through(file, path) => {
                let kind = file.metadata().map(|m| m.file_type());
                if kind.is_ok_and(|k| k.is_block_device()) {
                    file.sync_all().with_context(|| format!("cannot sync {}", path.display()))?;
                }
                Ok(())
            }
            Output::Atomic(file) => Ok(file.commit()?),
        }
    }
}

/// A new regular file at `path` (see `sectorcrypt::files::AtomicFile`); an existing one is refused
/// unless `force`, with a message that names --force.
pub(crate) fn new_file(path: &Path, force: bool, mode: u32) -> Result<AtomicFile> {
    let overwrite = if force { Overwrite::Replace } else { Overwrite::Refuse };
    match AtomicFile::create(path, overwrite, mode) {
        Ok(file) => Ok(file),
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {
            bail!("{} already exists; refusing to overwrite it (--force replaces it)", path.display())
        }
        Err(err) => Err(err.into()),
    }
}

/// Asks before a block device is overwritten, unless `--batch`; refuses where nobody can answer.
fn confirm_device(path: &Path, args: &OutputArgs) -> Result<()> {
    if args.batch {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{} is a block device: add --batch to write it without confirmation", path.display());
    }
    eprint!("sectorcrypt: overwrite the block device {} with the output? Type yes: ", path.display());
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("{} left as it was", path.display());
    }
    Ok(())
}
