//! The `sectorcrypt` command line: argument parsing, the subcommands, and the benchmark engines.

#![forbid(unsafe_code)]

/// `println!` that ends the program quietly on a closed stdout: see [`outln`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::outln(format_args!($($arg)*))
    };
}

mod authority;
mod bench;
mod data;
mod demo;
mod disk;
mod host;
mod input;
mod keys;
mod kmip;
mod luks;
mod output;
mod raw;
mod signals;
mod size;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use sectorcrypt::{Backend, BackendChoice};

/// AES-XTS encryption of virtual disks at the speed of the hardware.
#[derive(Parser, Debug)]
#[command(name = "sectorcrypt", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the cipher backends this CPU supports and the one `auto` picks.
    Backends {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Encrypt or decrypt a raw file as consecutive XTS data units (no header; key in hex or wrapped).
    Raw {
        #[command(subcommand)]
        direction: raw::Direction,
    },
    /// Encrypted virtual disks (VM mode: one data key per disk).
    Disk {
        #[command(subcommand)]
        command: disk::DiskCommand,
    },
    /// Encrypted disk groups (datastore mode: one data key per group, striped over its members).
    Group {
        #[command(subcommand)]
        command: disk::GroupCommand,
    },
    /// Key management: the native key provider's KDK and wrapped data keys.
    Keys {
        #[command(subcommand)]
        command: keys::Command,
    },
    /// The attestation authority: attests hosts' TPMs and releases keys only to hosts running a known
    /// base image; and the admin commands that edit its policy.
    Authority {
        #[command(subcommand)]
        command: authority::AuthorityCommand,
    },
    /// A host's side of attestation: describing the base image it booted.
    Host {
        #[command(subcommand)]
        command: host::HostCommand,
    },
    /// LUKS1 and LUKS2 volumes (cryptsetup's, QEMU's), opened in user space with a passphrase.
    Luks {
        #[command(subcommand)]
        command: luks::LuksCommand,
    },
    /// Measure throughput.
    Bench {
        #[command(subcommand)]
        what: bench::What,
    },
    /// Encrypt and decrypt a generated sample through this CLI with a built-in demo key, check the round
    /// trip and print the throughput. Needs no key server and no configuration.
    Demo(demo::Args),
}

/// `--io`, shared by the subcommands that move data through a disk.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct IoArg {
    /// I/O engine: auto (io_uring for O_DIRECT files, else pread/pwrite), uring or sync.
    #[arg(long, env = sectorcrypt::disk::IO_ENGINE_ENV, default_value = "auto", value_name = "ENGINE",
          value_parser = clap::builder::PossibleValuesParser::new(sectorcrypt::disk::IoEngine::ALL.map(|e| e.name())))]
    io: String,
}

impl IoArg {
    pub(crate) fn engine(&self) -> sectorcrypt::disk::IoEngine {
        sectorcrypt::disk::IoEngine::from_name(&self.io).expect("clap accepts only engine names")
    }
}

/// `--backend`, shared by the subcommands that run the cipher.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct BackendArg {
    /// Cipher backend: auto (fastest this CPU has), portable, aesni, vaes256 or vaes512.
    #[arg(long, env = sectorcrypt::BACKEND_ENV, default_value = "auto", value_name = "NAME")]
    backend: String,
}

impl BackendArg {
    pub(crate) fn choice(&self) -> Result<BackendChoice> {
        Ok(self.backend.parse::<BackendChoice>()?)
    }
}

fn run() -> Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version.
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return Ok(());
        }
        // A usage error: one line and exit status 1, like every other error.
        Err(err) => {
            let text = err.render().to_string();
            // The message is the paragraph before the usage and the tip; one line of it.
            let message = text.split("\n\n").next().unwrap_or("invalid arguments");
            let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
            bail!("{} (see --help)", message.trim_start_matches("error: "));
        }
    };
    match cli.command {
        Command::Backends { json } => backends(json),
        Command::Raw { direction } => raw::run(direction),
        Command::Disk { command } => disk::run_disk(command),
        Command::Group { command } => disk::run_group(command),
        Command::Keys { command } => keys::run(command),
        Command::Authority { command } => authority::run(command),
        Command::Host { command } => host::run(command),
        Command::Luks { command } => luks::run(command),
        Command::Bench { what } => bench::run(what),
        Command::Demo(args) => demo::run(args),
    }
}

/// Prints a line on stdout. A closed stdout (`sectorcrypt ... | head -1`) ends the program quietly
/// with the status a Unix tool killed by SIGPIPE has, 141, removing any unfinished output file.
pub(crate) fn outln(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(format_args!("{line}\n")).and_then(|()| out.flush()) {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            sectorcrypt::files::remove_unfinished();
            std::process::exit(141);
        }
        eprintln!("sectorcrypt: error: cannot write to standard output: {err}");
        std::process::exit(1);
    }
}

fn backends(json: bool) -> Result<()> {
    let auto = Backend::fastest();
    if json {
        let list: Vec<_> = Backend::ALL
            .iter()
            .map(|b| serde_json::json!({ "name": b.name(), "supported": b.is_supported(), "auto": *b == auto }))
            .collect();
        outln!("{}", serde_json::json!({ "auto": auto.name(), "backends": list }));
    } else {
        for b in Backend::ALL {
            let state = if b.is_supported() { "supported" } else { "not supported by this CPU" };
            let marker = if b == auto { "  <- auto" } else { "" };
            outln!("{:<10} {state}{marker}", b.name());
        }
    }
    Ok(())
}

/// A rayon pool of `threads` workers (0: one per core).
pub(crate) fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(threads).build()?)
}

/// libtss2, the TPM stack that key persistence links, logs its own warnings and errors to stderr
/// unless `TSS2_LOG` says otherwise, so a TPM that is down would print C-library lines before the one
/// line this program prints about it. Setting the variable from within needs `unsafe` (another thread
/// could be reading the environment), so the program re-executes itself once with `TSS2_LOG=all+NONE`
/// (as systemd quiets the TSS for its TPM2 support). A `TSS2_LOG` the user set is kept, for debugging.
fn quiet_tss() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("TSS2_LOG").is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let Some(argv0) = args.next() else { return };
    // `exec` returns only when it fails; then the TSS may log, and nothing else changes.
    let _ = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .env("TSS2_LOG", "all+NONE")
        .exec();
}

fn main() -> std::process::ExitCode {
    quiet_tss();
    // The DEK and KEKs live in this process's memory: no core dump may carry them.
    if let Err(err) = sectorcrypt::hardening::disable_core_dumps() {
        eprintln!("sectorcrypt: warning: cannot turn core dumps off: {err}");
    }
    signals::remove_unfinished_outputs_on_signal();
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` puts the whole context chain on one line.
            eprintln!("sectorcrypt: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
