//! Argument parsing and the subcommands.

mod bench;
mod chart;
mod demo;
mod disk;
mod keys;
mod openssl_rows;
mod raw;
mod workload;

use anyhow::Result;
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

pub(crate) fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Backends { json } => backends(json),
        Command::Raw { direction } => raw::run(direction),
        Command::Disk { command } => disk::run_disk(command),
        Command::Group { command } => disk::run_group(command),
        Command::Keys { command } => keys::run(command),
        Command::Bench { what } => bench::run(what),
        Command::Demo(args) => demo::run(args),
    }
}

fn backends(json: bool) -> Result<()> {
    let auto = Backend::fastest();
    if json {
        let list: Vec<_> = Backend::ALL
            .iter()
            .map(|b| serde_json::json!({ "name": b.name(), "supported": b.is_supported(), "auto": *b == auto }))
            .collect();
        println!("{}", serde_json::json!({ "auto": auto.name(), "backends": list }));
    } else {
        for b in Backend::ALL {
            let state = if b.is_supported() { "supported" } else { "not supported by this CPU" };
            let marker = if b == auto { "  <- auto" } else { "" };
            println!("{:<10} {state}{marker}", b.name());
        }
    }
    Ok(())
}

/// A rayon pool of `threads` workers (0: one per core).
pub(crate) fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(threads).build()?)
}
