//! How a volume is opened ([`OpenOptions`]), and what it tells the caller about itself once open
//! ([`Notice`]).

use crate::storage::IoEngine;
use crate::xts::BackendChoice;

/// Default number of requests in flight per worker.
pub const DEFAULT_QUEUE_DEPTH: usize = 32;

/// How to open a disk or group.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Open for writing (takes the exclusive advisory lock).
    pub writable: bool,
    /// Cipher backend.
    pub backend: BackendChoice,
    /// io_uring, pread/pwrite, or auto.
    pub io: IoEngine,
    /// Requests in flight per worker.
    pub queue_depth: usize,
    /// Try O_DIRECT (used where the file system accepts it and data units are 4 KiB or more).
    pub direct: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            writable: false,
            backend: BackendChoice::Auto,
            io: IoEngine::Auto,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            direct: true,
        }
    }
}

/// Something the caller may want to tell a person about an open volume; nothing here stops it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// A header copy is damaged or stale and the other copy is in use; `repair` rewrites it.
    HeaderCopy {
        /// The member.
        member: String,
        /// Which copy (0 or 1).
        copy: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// io_uring could not be set up, so pread/pwrite moves the data.
    IoUringUnavailable {
        /// What the kernel said.
        reason: String,
    },
}

impl core::fmt::Display for Notice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Notice::HeaderCopy { member, copy, problem } => {
                write!(
                    f,
                    "{member}: header copy {copy} is {problem}; the other copy is in use (run `repair`)"
                )
            }
            Notice::IoUringUnavailable { reason } => {
                write!(f, "io_uring is unavailable ({reason}); using pread/pwrite")
            }
        }
    }
}
