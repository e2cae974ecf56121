//! The VAES-256 kernel's `asm!` blocks for the streamed path ([`crate::stream`]).
//!
//! A group is sixteen blocks in eight ymm registers (ymm0-ymm7), each register two consecutive blocks
//! and their two tweaks, read as one 256-bit value from the ring. The data load folds into the XOR
//! with the first round key (ymm15), each round key is broadcast from its 128-bit copy once per round
//! into ymm13, and the last round key sits in ymm14. The sixteen tweaks of the group four ahead are made
//! spread evenly through the rounds' instructions by `sarx` (BMI2, which every CPU with VAES has),
//! `and`, `add`, `adc` and `xor`, and stored as 64-bit halves.

use crate::stream::{Groups, Pointers, for_variant, then};
use core::arch::asm;
use core::arch::x86_64::*;

/// The VAES-256 width of the streamed path.
pub(crate) struct Ymm;

impl Groups for Ymm {
    #[cfg(test)]
    const BACKEND: crate::Backend = crate::Backend::Vaes256;
    const BLOCKS: usize = 16;

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
        // SAFETY: the caller guarantees the features and the memory.
        unsafe { prime(tweaks, base, power) }
    }
}

/// [`Groups::prime`]: eight registers of two tweaks, each pair `base * x^(power + 2r)` and the next.
///
/// # Safety
/// The CPU must support AVX2 and VPCLMULQDQ; `tweaks` holds 256 bytes.
#[target_feature(enable = "avx,avx2,vpclmulqdq,pclmulqdq")]
#[inline]
unsafe fn prime(tweaks: *mut u8, base: __m128i, power: i32) {
    let base = _mm256_broadcastsi128_si256(base);
    for r in 0..8 {
        let k = i64::from(power) + 2 * r as i64;
        // SAFETY: the caller guarantees the features; the store is inside the 256 bytes.
        unsafe {
            let pair = super::mul_x_pow(base, _mm256_set_epi64x(k + 1, k + 1, k, k));
            _mm256_storeu_si256(tweaks.add(32 * r).cast(), pair);
        }
    }
}

/// Stores tweak `$j` of a group being made (at `$at`, a template expression) after doubling
/// `(lo, hi)`: `t * x` is `t + t` across both halves, with `0x87` XORed into the low byte when bit
/// 127 falls off (`sarx` makes the mask, so no branch depends on the tweak).
#[rustfmt::skip]
macro_rules! double {
    ($at:literal, $j:literal) => {
        concat!(
            "sarx {t}, {hi}, {c63}\n", "and {t:e}, 0x87\n",
            "add {lo}, {lo}\n", "adc {hi}, {hi}\n", "xor {lo}, {t}\n",
            "mov [", $at, " + 16*", $j, "], {lo}\n",
            "mov [", $at, " + 16*", $j, " + 8], {hi}\n",
        )
    };
}

/// Middle round `$r` over the eight registers, each instruction followed by what its slot says
/// ([`then`]).
#[rustfmt::skip]
macro_rules! round {
    ($op:literal, $r:literal, $at:literal, $s0:tt $s1:tt $s2:tt $s3:tt $s4:tt $s5:tt $s6:tt $s7:tt) => {
        concat!(
            "vbroadcasti128 ymm13, [{rk} + 16*", $r, "]\n",
            $op, " ymm0, ymm0, ymm13\n", then!($at, $s0), $op, " ymm1, ymm1, ymm13\n", then!($at, $s1),
            $op, " ymm2, ymm2, ymm13\n", then!($at, $s2), $op, " ymm3, ymm3, ymm13\n", then!($at, $s3),
            $op, " ymm4, ymm4, ymm13\n", then!($at, $s4), $op, " ymm5, ymm5, ymm13\n", then!($at, $s5),
            $op, " ymm6, ymm6, ymm13\n", then!($at, $s6), $op, " ymm7, ymm7, ymm13\n", then!($at, $s7),
        )
    };
}

/// The middle rounds with the sixteen tweaks of the group being made (at `$at`) spread evenly between
/// their instructions, the first right after the first (bunched two to a round, AES-128 measured 7
/// points lower): AES-128's nine, AES-256's thirteen.
#[rustfmt::skip]
macro_rules! rounds {
    ($op:literal, 10, $at:literal) => {
        concat!(
            round!($op, 1, $at, 0 - - - 1 - - -), round!($op, 2, $at, - 2 - - - 3 - -),
            round!($op, 3, $at, - - 4 - - - 5 -), round!($op, 4, $at, - - - 6 - - - 7),
            round!($op, 5, $at, - - - - 8 - - -), round!($op, 6, $at, 9 - - - - 10 - -),
            round!($op, 7, $at, - 11 - - - - 12 -), round!($op, 8, $at, - - 13 - - - - 14),
            round!($op, 9, $at, - - - 15 - - - -),
        )
    };
    ($op:literal, 14, $at:literal) => {
        concat!(
            round!($op, 1, $at, 0 - - - - - 1 -), round!($op, 2, $at, - - - - - 2 - -),
            round!($op, 3, $at, - - - 3 - - - -), round!($op, 4, $at, - - 4 - - - - -),
            round!($op, 5, $at, - 5 - - - - - 6), round!($op, 6, $at, - - - - - - 7 -),
            round!($op, 7, $at, - - - - 8 - - -), round!($op, 8, $at, - - - 9 - - - -),
            round!($op, 9, $at, - 10 - - - - - 11), round!($op, 10, $at, - - - - - 12 - -),
            round!($op, 11, $at, - - - - 13 - - -), round!($op, 12, $at, - - 14 - - - - -),
            round!($op, 13, $at, 15 - - - - - - -),
        )
    };
}

/// Register `$j` of group `$k`: its data XORed with the first round key and its tweaks.
#[rustfmt::skip]
macro_rules! whiten {
    ($k:literal, $j:literal) => {
        concat!(
            "vpxor ymm", $j, ", ymm15, [{src} + 256*", $k, " + 32*", $j, "]\n",
            "vpxor ymm", $j, ", ymm", $j, ", [{cur} + 256*", $k, " + 32*", $j, "]\n",
        )
    };
}

/// Register `$j` of group `$k`: the last round, its tweaks, stored.
#[rustfmt::skip]
macro_rules! finish {
    ($last:literal, $k:literal, $j:literal) => {
        concat!(
            $last, " ymm", $j, ", ymm", $j, ", ymm14\n",
            "vpxor ymm", $j, ", ymm", $j, ", [{cur} + 256*", $k, " + 32*", $j, "]\n",
            "vmovdqu [{dst} + 256*", $k, " + 32*", $j, "], ymm", $j, "\n",
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

/// The first and last round keys into ymm15 and ymm14 (`$nr` the rounds).
macro_rules! keys {
    (10) => {
        "vbroadcasti128 ymm15, [{rk}]\nvbroadcasti128 ymm14, [{rk} + 16*10]\n"
    };
    (14) => {
        "vbroadcasti128 ymm15, [{rk}]\nvbroadcasti128 ymm14, [{rk} + 16*14]\n"
    };
}

/// Four groups (`$four` true) or one.
#[rustfmt::skip]
macro_rules! block {
    ($op:literal, $last:literal, $nr:tt, true) => {
        concat!(
            keys!($nr),
            group!($op, $last, $nr, 0, "{ahead}"), group!($op, $last, $nr, 1, "{ahead} + 256"),
            group!($op, $last, $nr, 2, "{ahead} + 512"), group!($op, $last, $nr, 3, "{ahead} + 768"),
        )
    };
    ($op:literal, $last:literal, $nr:tt, false) => {
        concat!(keys!($nr), group!($op, $last, $nr, 0, "{ahead}"))
    };
}

/// One `asm!` block over four groups (`FOUR`) or one; see [`Groups::four`].
///
/// # Safety
/// The CPU must support AVX2, VAES and BMI2; the pointers hold what [`Pointers`] says.
#[target_feature(enable = "avx,avx2,vaes,bmi2")]
#[inline]
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
                rk = in(reg) p.rk, c63 = in(reg) 63u64,
                lo = inout(reg) lo, hi = inout(reg) hi, t = out(reg) _,
                out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                out("ymm13") _, out("ymm14") _, out("ymm15") _,
                options(nostack),
            )
        };
    }
    // SAFETY: the caller guarantees the features and the memory each template touches: the groups'
    // bytes at `src` (read) and `dst` (written), their tweaks at `cur` (read), the tweaks made at
    // `ahead` (written) and the round keys (read).
    unsafe {
        for_variant!(run, block, DEC, NR, FOUR, ["vaesenc", "vaesenclast", "vaesdec", "vaesdeclast"]);
    }
    (lo, hi)
}
