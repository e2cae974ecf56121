//! The AES-NI kernel's `asm!` blocks for the streamed path ([`crate::stream`]).
//!
//! A group is eight blocks in xmm0-xmm7. Each block is loaded, XORed with the first round key
//! (xmm15) and its tweak from the ring (legacy SSE takes a memory operand only when it is aligned,
//! which the ring is and the caller's data need not be); each round key is loaded once per round into
//! xmm13, and the last round key sits in xmm14. The eight tweaks of the group four ahead are made one
//! per round, spread through the rounds' instructions, by `mov`, `sar`, `and`, `add`, `adc` and
//! `xor` (no BMI2: CPUs with AES-NI but without it run this kernel), and stored as 64-bit halves.

use super::mul_x_pow;
use crate::stream::{Groups, Pointers, for_variant, then};
use core::arch::asm;
use core::arch::x86_64::*;

/// The AES-NI width of the streamed path.
pub(crate) struct Xmm;

impl Groups for Xmm {
    #[cfg(test)]
    const BACKEND: crate::Backend = crate::Backend::AesNi;
    const BLOCKS: usize = 8;

    #[inline(always)]
    unsafe fn four<const DEC: bool, const NR: usize>(p: &Pointers, lo: u64, hi: u64) -> (u64, u64) {
        // SAFETY: the caller guarantees the features and the memory.
        unsafe { blocks::<DEC, NR, true>(p, lo, hi) }
    }

    #[inline(always)]
    unsafe fn one<const DEC: bool, const NR: usize>(p: &Pointers, lo: u64, hi: u64) -> (u64, u64) {
        // SAFETY: the caller guarantees the features and the memory.
        unsafe { blocks::<DEC, NR, false>(p, lo, hi) }
    }

    #[inline(always)]
    unsafe fn prime(tweaks: *mut u8, base: __m128i, power: i32) {
        for j in 0..8 {
            // SAFETY: the caller guarantees the features; the store is inside the 128 bytes.
            unsafe { _mm_storeu_si128(tweaks.add(16 * j).cast(), mul_x_pow(base, power + j as i32)) };
        }
    }
}

/// Stores tweak `$j` of a group being made (at `$at`, a template expression) after doubling
/// `(lo, hi)`: `t * x` is `t + t` across both halves, with `0x87` XORed into the low byte when bit
/// 127 falls off (`sar` makes the mask, so no branch depends on the tweak).
#[rustfmt::skip]
macro_rules! double {
    ($at:literal, $j:literal) => {
        concat!(
            "mov {t}, {hi}\n", "sar {t}, 63\n", "and {t:e}, 0x87\n",
            "add {lo}, {lo}\n", "adc {hi}, {hi}\n", "xor {lo}, {t}\n",
            "mov [", $at, " + 16*", $j, "], {lo}\n",
            "mov [", $at, " + 16*", $j, " + 8], {hi}\n",
        )
    };
}

/// Middle round `$r` over the eight blocks, each instruction followed by what its slot says.
#[rustfmt::skip]
macro_rules! round {
    ($op:literal, $r:literal, $at:literal, $s0:tt $s1:tt $s2:tt $s3:tt $s4:tt $s5:tt $s6:tt $s7:tt) => {
        concat!(
            "movdqu xmm13, [{rk} + 16*", $r, "]\n",
            $op, " xmm0, xmm13\n", then!($at, $s0), $op, " xmm1, xmm13\n", then!($at, $s1),
            $op, " xmm2, xmm13\n", then!($at, $s2), $op, " xmm3, xmm13\n", then!($at, $s3),
            $op, " xmm4, xmm13\n", then!($at, $s4), $op, " xmm5, xmm13\n", then!($at, $s5),
            $op, " xmm6, xmm13\n", then!($at, $s6), $op, " xmm7, xmm13\n", then!($at, $s7),
        )
    };
}

/// The middle rounds with the eight tweaks of the group being made (at `$at`) spread evenly between
/// their instructions: AES-128's nine, AES-256's thirteen.
#[rustfmt::skip]
macro_rules! rounds {
    ($op:literal, 10, $at:literal) => {
        concat!(
            round!($op, 1, $at, 0 - - - - - - -), round!($op, 2, $at, - 1 - - - - - -),
            round!($op, 3, $at, - - 2 - - - - -), round!($op, 4, $at, - - - 3 - - - -),
            round!($op, 5, $at, - - - - 4 - - -), round!($op, 6, $at, - - - - - 5 - -),
            round!($op, 7, $at, - - - - - - 6 -), round!($op, 8, $at, - - - - - - - 7),
            round!($op, 9, $at, - - - - - - - -),
        )
    };
    ($op:literal, 14, $at:literal) => {
        concat!(
            round!($op, 1, $at, 0 - - - - - - -), round!($op, 2, $at, - - - - - 1 - -),
            round!($op, 3, $at, - - - - - - - -), round!($op, 4, $at, - - 2 - - - - -),
            round!($op, 5, $at, - - - - - - - 3), round!($op, 6, $at, - - - - - - - -),
            round!($op, 7, $at, - - - - 4 - - -), round!($op, 8, $at, - - - - - - - -),
            round!($op, 9, $at, - 5 - - - - - -), round!($op, 10, $at, - - - - - - 6 -),
            round!($op, 11, $at, - - - - - - - -), round!($op, 12, $at, - - - 7 - - - -),
            round!($op, 13, $at, - - - - - - - -),
        )
    };
}

/// Block `$j` of group `$k`: loaded, XORed with the first round key and its tweak.
#[rustfmt::skip]
macro_rules! whiten {
    ($k:literal, $j:literal) => {
        concat!(
            "movdqu xmm", $j, ", [{src} + 128*", $k, " + 16*", $j, "]\n",
            "pxor xmm", $j, ", xmm15\n",
            "pxor xmm", $j, ", [{cur} + 128*", $k, " + 16*", $j, "]\n",
        )
    };
}

/// Block `$j` of group `$k`: the last round, its tweak, stored.
#[rustfmt::skip]
macro_rules! finish {
    ($last:literal, $k:literal, $j:literal) => {
        concat!(
            $last, " xmm", $j, ", xmm14\n",
            "pxor xmm", $j, ", [{cur} + 128*", $k, " + 16*", $j, "]\n",
            "movdqu [{dst} + 128*", $k, " + 16*", $j, "], xmm", $j, "\n",
        )
    };
}

/// Group `$k` of a block, making the group four ahead of it at `$at`.
#[rustfmt::skip]
macro_rules! group {
    ($op:literal, $last:literal, $nr:tt, $k:literal, $at:literal) => {
        concat!(
            whiten!($k, 0), whiten!($k, 1), whiten!($k, 2), whiten!($k, 3),
            whiten!($k, 4), whiten!($k, 5), whiten!($k, 6), whiten!($k, 7),
            rounds!($op, $nr, $at),
            finish!($last, $k, 0), finish!($last, $k, 1), finish!($last, $k, 2), finish!($last, $k, 3),
            finish!($last, $k, 4), finish!($last, $k, 5), finish!($last, $k, 6), finish!($last, $k, 7),
        )
    };
}

/// The first and last round keys into xmm15 and xmm14 (`$nr` the rounds).
macro_rules! keys {
    (10) => {
        "movdqu xmm15, [{rk}]\nmovdqu xmm14, [{rk} + 16*10]\n"
    };
    (14) => {
        "movdqu xmm15, [{rk}]\nmovdqu xmm14, [{rk} + 16*14]\n"
    };
}

/// Four groups (`true`) or one.
#[rustfmt::skip]
macro_rules! block {
    ($op:literal, $last:literal, $nr:tt, true) => {
        concat!(
            keys!($nr),
            group!($op, $last, $nr, 0, "{ahead}"), group!($op, $last, $nr, 1, "{ahead} + 128"),
            group!($op, $last, $nr, 2, "{ahead} + 256"), group!($op, $last, $nr, 3, "{ahead} + 384"),
        )
    };
    ($op:literal, $last:literal, $nr:tt, false) => {
        concat!(keys!($nr), group!($op, $last, $nr, 0, "{ahead}"))
    };
}

/// One `asm!` block over four groups (`FOUR`) or one; see [`Groups::four`].
///
/// # Safety
/// The CPU must support AES-NI and SSE2; the pointers hold what [`Pointers`] says.
#[inline(always)]
unsafe fn blocks<const DEC: bool, const NR: usize, const FOUR: bool>(
    p: &Pointers,
    mut lo: u64,
    mut hi: u64,
) -> (u64, u64) {
    macro_rules! run {
        ($template:expr) => {
            asm!(
                $template,
                src = in(reg) p.src, dst = in(reg) p.dst, cur = in(reg) p.cur, ahead = in(reg) p.ahead,
                rk = in(reg) p.rk,
                lo = inout(reg) lo, hi = inout(reg) hi, t = out(reg) _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                out("xmm13") _, out("xmm14") _, out("xmm15") _,
                options(nostack),
            )
        };
    }
    // SAFETY: the caller guarantees the features and the memory each template touches: the groups'
    // bytes at `src` (read) and `dst` (written), their tweaks at `cur` (read), the tweaks made at
    // `ahead` (written) and the round keys (read).
    unsafe {
        for_variant!(run, block, DEC, NR, FOUR, ["aesenc", "aesenclast", "aesdec", "aesdeclast"]);
    }
    (lo, hi)
}
