//! XTS with VAES and VPCLMULQDQ on 512-bit registers (AVX-512).
//!
//! A register holds four consecutive blocks and their four tweaks; lane `l` of tweak register `j`
//! holds `T0 * x^(4j + l)` (with AES-128, XORed with the last round key: see [`WideKeys`]). Blocks go
//! through in groups of `W` registers (eight, [`WIDE`], or four for AES-128 units of more than one
//! wide group, [`NARROW`]), and a group's tweak registers times `x^(4W)` are the next group's: a
//! whole number of bytes, so one byte shift, one carry-less multiply and one XOR. Those multiplies
//! compete with VAES for the same vector pipes, so they are spread between the rounds of another
//! group, one register per round, and the cache lines two kilobytes ahead are prefetched (with the
//! rounds that dense, the loads would otherwise reach memory late). The round keys are broadcast to
//! all four lanes once per call.
//!
//! A unit goes through in pairs of groups, the first group of a pair making the second's tweak
//! registers and the second the next pair's. When a call holds several units, the units' first
//! tweaks (`T0`, serial chains of AES rounds under Key2) are encrypted four units at a time, one per
//! lane, while the four units before them run, and no unit waits for its first tweak registers:
//! - AES-128 units of whole pairs of groups (1 KiB and up) chain: a unit's last group makes the next
//!   unit's between its rounds ([`chained_units`]);
//! - AES-256 units of whole wide groups (1 KiB and up) go through one group after another instead of
//!   in pairs ([`streamed_units`]): each group replaces its own tweak registers by the next group's
//!   (or the next unit's first) between its rounds, and the last round's keys (`K ^ T`) wait in
//!   memory, so that only one group's tweak registers are live;
//! - 512-byte units (one wide group each) go through in pairs of units, each unit making the
//!   other's.
//!
//! The blocks of a unit left after its full groups go through one more group whose loads and stores
//! are byte-masked (AVX-512BW), so an odd-sized unit never falls back to one block at a time.
//!
//! Which path a call takes ([`schedule::units`] decides; `tests::vaes512_reaches_every_path` runs each
//! against the portable kernel):
//!
//! | key size | unit size | units in the call | path |
//! |---|---|---|---|
//! | any | any | one | `one_unit_of`: wide groups; narrow for AES-128 units over 512 B |
//! | AES-256 | a multiple of 512 B, over 512 B | several | `streamed_units` |
//! | AES-128 | a multiple of 512 B, over 512 B | several | `chained_units` |
//! | any | 512 B | several | `unit_pair` per two units; an odd last unit alone |
//! | any | anything else (under 512 B, or not a multiple of it) | several | four at a time, `one_unit_of` each |
//!
//! Within a unit, a length that is not a multiple of 16 ends in ciphertext stealing.
//!
//! The code is split by concern: `tweaks` (the tweak algebra and the broadcast keys), `groups`
//! (loading, whitening, rounds and storing of a group), `asm` (the rounds written in `asm!`) and
//! `schedule` (the strategies above).

use crate::aesni;
use crate::keys::RoundKeys;
use crate::span::Span;
use core::arch::x86_64::*;

mod asm;
mod groups;
mod schedule;
mod tweaks;

use asm::*;
use groups::*;
use schedule::*;
use tweaks::*;

/// Runs XTS over `buf` cut into units of `unit_len` bytes, numbered from `first` by `step`.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL, VAES, VPCLMULQDQ, AES-NI, PCLMULQDQ and SSE4.1
/// (`Backend::Vaes512.is_supported()`).
#[target_feature(
    enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,avx512vl,vaes,vpclmulqdq"
)]
pub(crate) unsafe fn xts(
    keys: &RoundKeys,
    decrypt: bool,
    buf: Span<'_>,
    unit_len: usize,
    first: u128,
    step: u128,
) {
    // SAFETY: this function enables every feature `units` needs.
    unsafe {
        crate::for_direction_and_rounds!(units, decrypt, keys.rounds, (keys, buf, unit_len, first, step))
    }
}

/// Registers per group: eight, thirty-two blocks, 512 bytes. In pairs of groups with AES-256, fifteen
/// round keys and two groups of states and their tweaks already overflow the thirty-two registers,
/// and sixteen per group spill more.
const WIDE: usize = 8;
/// Registers per group for AES-128 units in pairs of groups: four. With eight, eleven round keys and
/// two groups of eight states and tweaks spill to the stack, while four fit,
/// and with rounds this short the core overlaps consecutive groups well enough to keep the AES pipes
/// full.
const NARROW: usize = 4;
/// Two 512-byte units, one group of eight registers each, go through together.
const UNIT_PAIR: usize = 2 * 64 * WIDE;
/// How far ahead of the group or pair of groups being encrypted the next lines are prefetched.
const PREFETCH_AHEAD: usize = 2048;
