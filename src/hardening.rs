//! Keeping key material out of places it could leak from.
//!
//! A process that holds a DEK or a KEK must not write its memory to a core dump: a crash would leave
//! the key on disk, readable by whoever collects the dump. [`disable_core_dumps`] marks the process
//! not dumpable (`PR_SET_DUMPABLE` 0, which also keeps other users' debuggers out) and sets its core
//! size limit to zero. The CLI calls it first thing; an embedder decides for its own process.
//!
//! An embedder that keeps core dumps on (a hypervisor debugging its own crashes) still gets no cipher
//! keys in them: every `Xts` engine keeps its expanded key schedule on pages of its own marked
//! `MADV_DONTDUMP` (in `sectorcrypt-simd`), whatever this module is asked.

use crate::error::{Error, Result};

/// Turns core dumps off for the whole process, for good (the limit cannot be raised again).
pub fn disable_core_dumps() -> Result<()> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|err| Error::io("prctl(PR_SET_DUMPABLE)", err.into()))?;
    let zero = rustix::process::Rlimit { current: Some(0), maximum: Some(0) };
    rustix::process::setrlimit(rustix::process::Resource::Core, zero)
        .map_err(|err| Error::io("setrlimit(RLIMIT_CORE)", err.into()))
}
