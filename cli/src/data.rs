//! The commands that move data between a volume and files (`read`, `write`, `import`, `export`,
//! `discard`), shared by `disk`, `group` and `luks`: each names its volume and how to open it through
//! a [`Target`], and streams in chunks with a progress bar on a terminal.

use super::input::{Source, fill};
use super::output::{Inputs, Output, OutputArgs};
use super::size::parse_size;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sectorcrypt::disk::Volume;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Bytes moved per step by import, export, read and write.
const CHUNK: usize = 16 << 20;

/// A volume named on the command line, with what opening it needs.
pub(crate) trait Target {
    /// Opens it (for writing if `writable`), telling its notices on stderr.
    fn open(&self, writable: bool) -> Result<Volume>;
    /// The files an output of a command on it must not overwrite.
    fn inputs(&self) -> Inputs;
}

#[derive(clap::Args, Debug)]
pub(crate) struct DiscardArgs<D: clap::Args> {
    /// Logical byte offset.
    #[arg(long, value_parser = parse_size)]
    offset: u64,
    /// Bytes to give back.
    #[arg(long, value_parser = parse_size)]
    length: u64,
    #[command(flatten)]
    pub(crate) data_path: D,
}

#[derive(clap::Args, Debug)]
pub(crate) struct WriteArgs<D: clap::Args> {
    /// Logical byte offset.
    #[arg(long, value_parser = parse_size)]
    offset: u64,
    /// The file whose bytes to write (- for standard input).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    #[command(flatten)]
    pub(crate) data_path: D,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ReadArgs<D: clap::Args> {
    /// Logical byte offset.
    #[arg(long, value_parser = parse_size)]
    offset: u64,
    /// Bytes to read.
    #[arg(long, value_parser = parse_size)]
    length: u64,
    /// Where to write them: a new file, a device, or - for standard output.
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    pub(crate) data_path: D,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs<D: clap::Args> {
    /// The raw image (at most the disk's size; the rest of the disk is left as it is; - for standard
    /// input).
    #[arg(long, value_name = "RAW")]
    from: PathBuf,
    #[command(flatten)]
    pub(crate) data_path: D,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ExportArgs<D: clap::Args> {
    /// Where to write the raw image: a new file, a device, or - for standard output.
    #[arg(long, value_name = "RAW")]
    to: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    pub(crate) data_path: D,
}

pub(crate) fn write_from<D: clap::Args>(target: &dyn Target, args: &WriteArgs<D>) -> Result<()> {
    let mut source = Source::open(&args.from)?;
    let volume = target.open(true)?;
    let len = stream_in(&volume, args.offset, &mut source, &args.from, "write")?;
    outln!("wrote {len} bytes at offset {}", args.offset);
    Ok(())
}

pub(crate) fn read_to<D: clap::Args>(target: &dyn Target, args: &ReadArgs<D>) -> Result<()> {
    let volume = target.open(false)?;
    check_range(&volume, args.offset, args.length)?;
    let output = Output::open(&args.to, &args.output, &target.inputs())?;
    stream_out(&volume, args.offset, args.length, output, "read")?;
    report(
        &args.to,
        format_args!("read {} bytes at offset {} into {}", args.length, args.offset, args.to.display()),
    );
    Ok(())
}

pub(crate) fn import_raw<D: clap::Args>(target: &dyn Target, args: &ImportArgs<D>) -> Result<()> {
    let mut source = Source::open(&args.from)?;
    let volume = target.open(true)?;
    if let Some(len) = source.len.filter(|&len| len > volume.size()) {
        bail!("{} is {len} bytes, larger than the disk ({} bytes)", args.from.display(), volume.size());
    }
    let started = std::time::Instant::now();
    let len = stream_in(&volume, 0, &mut source, &args.from, "import")?;
    let seconds = started.elapsed().as_secs_f64();
    outln!(
        "imported {len} bytes from {} in {seconds:.2} s ({:.0} MB/s, {}, {})",
        args.from.display(),
        len as f64 / seconds / 1e6,
        volume.io_engine_name()?,
        volume.backend().name()
    );
    Ok(())
}

pub(crate) fn export_raw<D: clap::Args>(target: &dyn Target, args: &ExportArgs<D>) -> Result<()> {
    let volume = target.open(false)?;
    let output = Output::open(&args.to, &args.output, &target.inputs())?;
    let started = std::time::Instant::now();
    stream_out(&volume, 0, volume.size(), output, "export")?;
    let seconds = started.elapsed().as_secs_f64();
    report(
        &args.to,
        format_args!(
            "exported {} bytes to {} in {seconds:.2} s ({:.0} MB/s)",
            volume.size(),
            args.to.display(),
            volume.size() as f64 / seconds / 1e6
        ),
    );
    Ok(())
}

pub(crate) fn discard_cmd<D: clap::Args>(target: &dyn Target, args: &DiscardArgs<D>) -> Result<()> {
    let volume = target.open(true)?;
    let freed = volume.discard(args.offset, args.length)?;
    volume.flush()?;
    outln!(
        "discarded {} bytes at offset {} ({freed} bytes of whole data units deallocated)",
        args.length,
        args.offset
    );
    Ok(())
}

pub(crate) fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style =
        ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

fn check_range(volume: &Volume, offset: u64, len: u64) -> Result<()> {
    if offset.checked_add(len).is_none_or(|end| end > volume.size()) {
        return Err(sectorcrypt::Error::OutOfRange { offset, len, size: volume.size() }.into());
    }
    Ok(())
}

/// Streams `source` into the volume at `offset`, to its end; returns the bytes written. A source of
/// known length is checked against the volume before anything is written; a stream that runs past
/// the end of the volume stops with an error there.
fn stream_in(
    volume: &Volume,
    offset: u64,
    source: &mut Source,
    from: &std::path::Path,
    what: &str,
) -> Result<u64> {
    if let Some(len) = source.len {
        check_range(volume, offset, len)?;
    }
    let bar = progress(source.len.unwrap_or(volume.size() - offset.min(volume.size())), what);
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n =
            fill(&mut source.reader, &mut buf).with_context(|| format!("cannot read {}", from.display()))?;
        if n == 0 {
            break;
        }
        check_range(volume, offset + done, n as u64)
            .with_context(|| format!("{} is larger than the space after offset {offset}", from.display()))?;
        volume.write_at(offset + done, &buf[..n])?;
        done += n as u64;
        bar.set_position(done);
    }
    volume.flush()?;
    bar.finish_and_clear();
    Ok(done)
}

/// Streams `len` bytes at `offset` out of the volume into `output`.
fn stream_out(volume: &Volume, offset: u64, len: u64, mut output: Output, what: &str) -> Result<()> {
    check_range(volume, offset, len)?;
    let bar = progress(len, what);
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut done = 0u64;
    {
        let mut writer = output.writer();
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            volume.read_at(offset + done, &mut buf[..n])?;
            writer.write_all(&buf[..n]).context("cannot write the output")?;
            done += n as u64;
            bar.set_position(done);
        }
    }
    bar.finish_and_clear();
    output.commit()
}

/// Where a command that writes an output reports: stderr when the data itself goes to stdout.
fn report(to: &std::path::Path, line: std::fmt::Arguments<'_>) {
    if to.as_os_str() == "-" {
        eprintln!("{line}");
    } else {
        super::outln(line);
    }
}
