//! Which backend `auto` takes: the fastest this CPU runs.
//!
//! Each wider instruction set's kernel beats the narrower ones wherever it runs, except that a CPU
//! with AVX-512 may deliver no more bytes per cycle with 512-bit VAESENC than with 256-bit: Zen 4 runs
//! a 512-bit VAESENC as two 256-bit halves, and the Intel Xeon of issue 19 measured the same bytes per
//! cycle at both widths. There the kernel that wastes less beside the rounds wins, and that depends on
//! the core: on Zen 4 VAES-256 measured 4-8% faster (`docs/PERFORMANCE.md`), while on Intel cores the
//! general-purpose work that VAES-256 does beside its rounds shares ports with the vector units.
//!
//! So on a CPU with both, the first call times the two kernels, AES-128 over sixteen 4 KiB units (a
//! typical request of a VM disk) in a buffer of its own, in alternation, and keeps the faster:
//! VAES-512 unless VAES-256 beats its best time by more than 1%, so a tie settles on the wider kernel.
//! The time stamp counter is the clock: it needs no operating system and ticks at one rate for both
//! kernels. The choice is cached for the life of the process (two threads that ask first at once may
//! each time the kernels; either answer is a correct kernel).

extern crate alloc;

use crate::{Backend, UnitLayout, XtsEngine};
use core::sync::atomic::{AtomicU8, Ordering};

/// The cached choice: 0 until the first call, else the index of the backend in [`Backend::ALL`] plus one.
static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Rounds of timing, each kernel once per round; the best round of each counts.
const ROUNDS: usize = 9;

/// Calls per kernel per round.
const CALLS: usize = 2;

/// The fastest backend this CPU runs (see the module documentation).
pub(crate) fn fastest() -> Backend {
    let cached = CHOICE.load(Ordering::Relaxed);
    if let Some(backend) = Backend::ALL.get(usize::from(cached).wrapping_sub(1)) {
        return *backend;
    }
    let widest = Backend::supported().last().unwrap_or(Backend::Portable);
    let choice =
        if widest == Backend::Vaes512 && Backend::Vaes256.is_supported() { faster_vaes() } else { widest };
    let index = Backend::ALL.iter().position(|b| *b == choice).unwrap_or(0);
    CHOICE.store(index as u8 + 1, Ordering::Relaxed);
    choice
}

/// VAES-256 or VAES-512, whichever encrypts faster here.
#[cfg(target_arch = "x86_64")]
fn faster_vaes() -> Backend {
    let engines = [Backend::Vaes512, Backend::Vaes256].map(|b| XtsEngine::new(b, &[0x5a; 16], &[0xa5; 16]));
    let [Ok(wide), Ok(narrow)] = engines else {
        return Backend::Vaes512;
    };
    // Page-aligned, as the buffers of disk I/O are: a 32-byte access that straddles two cache lines
    // costs VAES-256 more than VAES-512 (`docs/PERFORMANCE.md`).
    let mut storage = alloc::vec![0u8; 17 * 4096];
    let start = storage.as_ptr().align_offset(4096).min(4096);
    let buf = &mut storage[start..start + 16 * 4096];
    let layout = UnitLayout { unit_len: 4096, first: 0, step: 1 };
    let mut best = [u64::MAX; 2];
    for _ in 0..ROUNDS {
        for (engine, best) in [&wide, &narrow].into_iter().zip(&mut best) {
            // SAFETY: RDTSC exists on every x86-64 CPU and has no preconditions.
            let start = unsafe { core::arch::x86_64::_rdtsc() };
            for _ in 0..CALLS {
                // A buffer of whole units always fits the layout.
                let _ = engine.encrypt(buf, layout);
            }
            // SAFETY: as above.
            let ticks = unsafe { core::arch::x86_64::_rdtsc() }.wrapping_sub(start);
            *best = (*best).min(ticks);
        }
    }
    core::hint::black_box(&*buf);
    if best[1].saturating_mul(101) < best[0].saturating_mul(100) {
        Backend::Vaes256
    } else {
        Backend::Vaes512
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn faster_vaes() -> Backend {
    Backend::Portable
}
