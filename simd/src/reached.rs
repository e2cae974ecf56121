//! Which kernel paths ran on this thread (unit tests only): a test names the path each of its cases is
//! meant for, and checks that the case reached it rather than only that the output was right.

use crate::Backend;
use std::cell::RefCell;
use std::vec::Vec;

/// A way through the AES-NI or VAES-256 kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Streamed, four groups per `asm!` block (units of a multiple of four groups).
    StreamOfFours,
    /// Streamed, one group per `asm!` block (other units of whole groups).
    StreamOfOnes,
    /// Unit by unit with the tweaks in registers (short calls, odd unit lengths).
    InRegisters,
}

std::thread_local! {
    static HITS: RefCell<Vec<(Backend, Path, usize)>> = const { RefCell::new(Vec::new()) };
}

/// Records that `backend`'s path `path` ran with `rounds` rounds.
pub(crate) fn hit(backend: Backend, path: Path, rounds: usize) {
    HITS.with(|hits| {
        let mut hits = hits.borrow_mut();
        if !hits.contains(&(backend, path, rounds)) {
            hits.push((backend, path, rounds));
        }
    });
}

/// The paths recorded on this thread since the last call, cleared.
pub(crate) fn take() -> Vec<(Backend, Path, usize)> {
    HITS.with(|hits| core::mem::take(&mut *hits.borrow_mut()))
}
