//! XTS with VAES and VPCLMULQDQ on 256-bit registers (AVX2 machines with VAES: Zen 3 and later, Alder
//! Lake and later).
//!
//! A register holds two consecutive blocks and their two tweaks; eight registers, sixteen blocks, are
//! in flight. Calls of at least sixteen such groups (4 KiB) whose data units are whole groups take the
//! streamed path ([`crate::stream`], this width's `asm!` in [`stream`]): general-purpose registers make
//! the tweaks four groups ahead, into memory, with BMI2's `sarx`. Shorter calls and odd unit lengths
//! take the path below, each middle round one `asm!` block over all eight registers
//! ([`round_of_eight`], for the reason given in the AES-NI kernel). There lane `l` of tweak register
//! `j` holds `T0 * x^(2j + l)`, and every tweak register jumps ahead by `x^16` per group (a two-byte
//! shift and one carry-less multiply): with AES-128 one register per round, between the rounds
//! ([`crypt_stepping`]); with AES-256 after each group. AVX2 has only sixteen vector registers, so the
//! compiler keeps some tweaks on the stack. Fewer than sixteen blocks left at the end of a unit go
//! through the 128-bit helpers.

use crate::aesni;
use crate::keys::RoundKeys;
use crate::span::Span;
use core::arch::x86_64::*;

mod stream;

/// Runs XTS over `buf` cut into units of `unit_len` bytes, numbered from `first` by `step`.
///
/// # Safety
/// The CPU must support AVX2, BMI2, VAES, VPCLMULQDQ, AES-NI, PCLMULQDQ and SSE4.1
/// (`Backend::Vaes256.is_supported()`).
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,bmi2,vaes,vpclmulqdq")]
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

/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
unsafe fn units<const DEC: bool, const NR: usize>(
    keys: &RoundKeys,
    buf: Span<'_>,
    unit_len: usize,
    first: u128,
    step: u128,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let round_keys = if DEC { &keys.dec } else { &keys.enc };
        let rk128 = aesni::load_keys(round_keys);
        let tk = aesni::load_keys(&keys.tweak);
        let mut rk = [_mm256_setzero_si256(); 15];
        for (wide, key) in rk.iter_mut().zip(&rk128) {
            *wide = _mm256_broadcastsi128_si256(*key);
        }
        let unit_len = unit_len.max(16);
        // A short last unit after the stream goes through the path below.
        let last =
            |rest, number| one_unit::<DEC, NR>(&rk, &rk128, rest, aesni::encrypt_tweak::<NR>(&tk, number));
        let Some(buf) = crate::stream::whole_units::<stream::Ymm, DEC, NR>(
            round_keys, &tk, buf, unit_len, first, step, last,
        ) else {
            return;
        };
        #[cfg(test)]
        crate::reached::hit(crate::Backend::Vaes256, crate::reached::Path::InRegisters, NR);
        if buf.len() <= unit_len {
            one_unit::<DEC, NR>(&rk, &rk128, buf, aesni::encrypt_tweak::<NR>(&tk, first));
            return;
        }
        // First tweaks four units at a time, the next four issued early (as in the AES-NI kernel).
        let mut number = first;
        let mut batch = aesni::encrypt_four_tweaks::<NR>(&tk, number, step);
        for four in buf.chunks(4 * unit_len) {
            number = number.wrapping_add(step.wrapping_mul(4));
            let ahead = aesni::encrypt_four_tweaks::<NR>(&tk, number, step);
            for (t0, unit) in batch.into_iter().zip(four.chunks(unit_len)) {
                one_unit::<DEC, NR>(&rk, &rk128, unit, t0);
            }
            batch = ahead;
        }
    }
}

/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
unsafe fn one_unit<const DEC: bool, const NR: usize>(
    rk: &[__m256i; 15],
    rk128: &[__m128i; 15],
    unit: Span<'_>,
    t0: __m128i,
) {
    // SAFETY: the caller guarantees the features; the loads and stores stay inside each 256-byte group.
    unsafe {
        let (body, stolen) = aesni::split_for_stealing(unit);
        let first = _mm256_broadcastsi128_si256(t0);
        let mut tw = [first; 8];
        for (j, t) in tw.iter_mut().enumerate() {
            let k = 2 * j as i64;
            *t = mul_x_pow(first, _mm256_set_epi64x(k + 1, k + 1, k, k));
        }
        let mut groups = body.chunks_exact(16 * 16);
        for group in &mut groups {
            let (src, dst) = (group.src(), group.dst());
            let mut s = [_mm256_setzero_si256(); 8];
            for (j, state) in s.iter_mut().enumerate() {
                *state = _mm256_loadu_si256(src.add(32 * j).cast());
            }
            // AES-128 steps the tweaks between its rounds; AES-256 between groups, as in the AES-NI
            // kernel (`docs/PERFORMANCE.md`).
            if NR == 10 {
                crypt_stepping::<DEC, NR>(rk, &mut s, &mut tw);
            } else {
                crypt::<DEC, NR>(rk, &mut s, &tw);
                for t in &mut tw {
                    *t = mul_x16(*t);
                }
            }
            for (j, state) in s.iter().enumerate() {
                _mm256_storeu_si256(dst.add(32 * j).cast(), *state);
            }
        }
        let next =
            aesni::blocks_in_xmm::<DEC, NR>(rk128, groups.into_remainder(), _mm256_castsi256_si128(tw[0]));
        aesni::steal::<DEC, NR>(rk128, stolen, next);
    }
}

/// Both lanes `t * x^k`, with `k` per 64-bit half in `k` (both halves of a lane equal, `0 <= k <= 56`);
/// the same reduction as [`aesni::mul_x_pow`], two lanes at once.
///
/// # Safety
/// The CPU must support AVX2 and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn mul_x_pow(t: __m256i, k: __m256i) -> __m256i {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let down = _mm256_sub_epi64(_mm256_set1_epi64x(64), k);
        let carried_up = _mm256_srlv_epi64(_mm256_bslli_epi128::<8>(t), down);
        let shifted = _mm256_or_si256(_mm256_sllv_epi64(t, k), carried_up);
        let overflow = _mm256_srlv_epi64(_mm256_bsrli_epi128::<8>(t), down);
        let reduced = _mm256_clmulepi64_epi128::<0x00>(overflow, _mm256_set1_epi64x(0x87));
        _mm256_xor_si256(shifted, reduced)
    }
}

/// Both lanes `t * x^16`: the lane moves up two bytes, and the two bytes that fall off the top come
/// back times `x^7 + x^2 + x + 1` (a product of at most 23 bits, so one reduction is enough).
///
/// # Safety
/// The CPU must support AVX2 and VPCLMULQDQ.
#[inline(always)]
unsafe fn mul_x16(t: __m256i) -> __m256i {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let overflow = _mm256_bsrli_epi128::<14>(t);
        let reduced = _mm256_clmulepi64_epi128::<0x00>(overflow, _mm256_set1_epi64x(0x87));
        _mm256_xor_si256(_mm256_bslli_epi128::<2>(t), reduced)
    }
}

/// The AES rounds over eight registers of two blocks each, with the tweak XORs folded into the first
/// and last round keys; each middle round one `asm!` block over all eight ([`round_of_eight`]).
///
/// # Safety
/// The CPU must support AVX2 and VAES.
#[inline(always)]
unsafe fn crypt<const DEC: bool, const NR: usize>(
    rk: &[__m256i; 15],
    s: &mut [__m256i; 8],
    tw: &[__m256i; 8],
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        for (state, t) in s.iter_mut().zip(tw) {
            *state = _mm256_xor_si256(*state, _mm256_xor_si256(*t, rk[0]));
        }
        for key in &rk[1..NR] {
            round_of_eight::<DEC>(s, *key);
        }
        for (state, t) in s.iter_mut().zip(tw) {
            let last = _mm256_xor_si256(rk[NR], *t);
            *state = if DEC {
                _mm256_aesdeclast_epi128(*state, last)
            } else {
                _mm256_aesenclast_epi128(*state, last)
            };
        }
    }
}

/// [`crypt`] over eight registers, stepping each tweak register to the next group's (`* x^16`) between
/// the rounds, register `j` between rounds `j + 1` and `j + 2`, held there by the pins of
/// [`round_of_eight_pinned`].
///
/// # Safety
/// The CPU must support AVX2, VAES and VPCLMULQDQ.
#[inline(always)]
unsafe fn crypt_stepping<const DEC: bool, const NR: usize>(
    rk: &[__m256i; 15],
    s: &mut [__m256i; 8],
    tw: &mut [__m256i; 8],
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut last = [_mm256_setzero_si256(); 8];
        for j in 0..8 {
            s[j] = _mm256_xor_si256(s[j], _mm256_xor_si256(tw[j], rk[0]));
            last[j] = _mm256_xor_si256(rk[NR], tw[j]);
        }
        crate::for_each_middle_round!(NR, |r| {
            let replaced = (r - 1).min(7);
            let ready = tw[(r + 6) % 8];
            round_of_eight_pinned::<DEC>(s, rk[r], &mut tw[replaced], ready);
            if r <= 8 {
                tw[r - 1] = mul_x16(tw[r - 1]);
            }
        });
        for j in 0..8 {
            s[j] = if DEC {
                _mm256_aesdeclast_epi128(s[j], last[j])
            } else {
                _mm256_aesenclast_epi128(s[j], last[j])
            };
        }
    }
}

/// One `asm!` block applying the round instruction `$op` to the eight registers `$s` with the key in
/// operand 8, then the template line `$extra` and the operands after the key.
#[rustfmt::skip]
macro_rules! eight_rounds {
    ($op:literal, $extra:literal, [$($s:expr),+], $($operands:tt)*) => {
        core::arch::asm!(
            concat!($op, " {0}, {0}, {8}\n", $op, " {1}, {1}, {8}\n", $op, " {2}, {2}, {8}\n"),
            concat!($op, " {3}, {3}, {8}\n", $op, " {4}, {4}, {8}\n", $op, " {5}, {5}, {8}\n"),
            concat!($op, " {6}, {6}, {8}\n", $op, " {7}, {7}, {8}"),
            $extra,
            $(inout(ymm_reg) *$s,)+
            $($operands)*
        )
    };
}

/// One middle round over eight registers of states with round key `key`, in one `asm!` block so that
/// all eight go through each round together: written with intrinsics, the compiler took two states at
/// a time through all the rounds (fewer registers live, too few rounds in flight).
///
/// A helper with `#[target_feature]` because `asm!` takes 256-bit registers only in a function that
/// enables AVX; its callers are inlined into the kernel, which enables a superset.
///
/// # Safety
/// The CPU must support AVX and VAES.
#[target_feature(enable = "avx,vaes")]
#[inline]
unsafe fn round_of_eight<const DEC: bool>(s: &mut [__m256i; 8], key: __m256i) {
    let [s0, s1, s2, s3, s4, s5, s6, s7] = s;
    // SAFETY: the caller guarantees the features; the instructions touch only the eight state
    // registers.
    unsafe {
        if DEC {
            eight_rounds!("vaesdec", "", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(ymm_reg) key, options(pure, nomem, nostack, preserves_flags));
        } else {
            eight_rounds!("vaesenc", "", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(ymm_reg) key, options(pure, nomem, nostack, preserves_flags));
        }
    }
}

/// [`round_of_eight`] that also counts as changing `replaced` and reading `ready`, though it emits no
/// instruction for them: the pins keep a tweak register's step after this round and the previous
/// step before it.
///
/// # Safety
/// The CPU must support AVX and VAES.
#[target_feature(enable = "avx,vaes")]
#[inline]
unsafe fn round_of_eight_pinned<const DEC: bool>(
    s: &mut [__m256i; 8],
    key: __m256i,
    replaced: &mut __m256i,
    ready: __m256i,
) {
    let [s0, s1, s2, s3, s4, s5, s6, s7] = s;
    // SAFETY: the caller guarantees the features; the instructions touch only the eight state
    // registers (the pins appear in a comment only).
    unsafe {
        if DEC {
            eight_rounds!("vaesdec", "/* pins: {9} {10} */", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(ymm_reg) key, inout(ymm_reg) *replaced, in(ymm_reg) ready,
                options(pure, nomem, nostack, preserves_flags));
        } else {
            eight_rounds!("vaesenc", "/* pins: {9} {10} */", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(ymm_reg) key, inout(ymm_reg) *replaced, in(ymm_reg) ready,
                options(pure, nomem, nostack, preserves_flags));
        }
    }
}
