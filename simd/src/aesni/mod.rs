//! XTS with AES-NI and PCLMULQDQ on 128-bit registers.
//!
//! Eight blocks are in flight: AESENC has a latency of four cycles on Zen 4 and the core starts two
//! per cycle, so eight independent blocks keep the AES units busy. Calls of at least sixteen groups
//! of eight blocks (2 KiB) whose data units are whole groups (every disk layout's) take the streamed
//! path ([`crate::stream`], this width's `asm!` in [`stream`]): general-purpose registers make the
//! tweaks four groups ahead, into memory, so the vector pipes do little beside the rounds. Other calls
//! (a short call, odd unit lengths) take the path below, which holds a unit's eight tweaks in
//! registers and makes the next group's from a chain of doublings ([`double`]: a shuffle, a shift, an
//! AND, an add and an XOR): with AES-128 one per round, between the rounds of the group before
//! ([`crypt_eight_stepping`]); with AES-256, whose round keys leave no registers to pin them with,
//! after each group. Each middle round takes all eight blocks through one `asm!` block
//! ([`round_of_eight`]): from intrinsics the compiler took two blocks at a time through every round,
//! leaving too few rounds in flight. Neither path uses PCLMULQDQ in its main loop: on Zen 4 it competes
//! with AESENC for the same units (`docs/PERFORMANCE.md`).
//!
//! The data key's first round key is folded into the tweak before the first XOR, and the tweak into
//! the last round key (`AESENCLAST(s, k) ^ t == AESENCLAST(s, k ^ t)`) or XORed after it, so each
//! block costs one or two XORs beyond the cipher itself.
//!
//! The wider kernels reuse this file's 128-bit helpers for what is left of a data unit after their
//! wide loop and for ciphertext stealing.

use crate::keys::RoundKeys;
use crate::span::Span;
use core::arch::x86_64::*;

mod stream;

/// Runs XTS over `buf` (in place or from a source) cut into units of `unit_len` bytes, numbered from
/// `first` by `step`.
///
/// # Safety
/// The CPU must support AES-NI, PCLMULQDQ and SSE4.1 (`Backend::AesNi.is_supported()`).
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1")]
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
/// The CPU must support AES-NI, PCLMULQDQ and SSE4.1.
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
        let rk = load_keys(round_keys);
        let tk = load_keys(&keys.tweak);
        let unit_len = unit_len.max(16);
        // A short last unit after the stream goes through the path below.
        let last = |rest, number| one_unit::<DEC, NR>(&rk, rest, encrypt_tweak::<NR>(&tk, number));
        let Some(buf) = crate::stream::whole_units::<stream::Xmm, DEC, NR>(
            round_keys, &tk, buf, unit_len, first, step, last,
        ) else {
            return;
        };
        #[cfg(test)]
        crate::reached::hit(crate::Backend::AesNi, crate::reached::Path::InRegisters, NR);
        if buf.len() <= unit_len {
            one_unit::<DEC, NR>(&rk, buf, encrypt_tweak::<NR>(&tk, first));
            return;
        }
        // First tweaks four units at a time, four independent chains, the next four issued before
        // this four's blocks so the core overlaps them: one serial chain per unit, waited for at
        // each unit's start, cost small units a fifth of their time.
        let mut number = first;
        let mut batch = encrypt_four_tweaks::<NR>(&tk, number, step);
        for four in buf.chunks(4 * unit_len) {
            number = number.wrapping_add(step.wrapping_mul(4));
            let ahead = encrypt_four_tweaks::<NR>(&tk, number, step);
            for (t0, unit) in batch.into_iter().zip(four.chunks(unit_len)) {
                one_unit::<DEC, NR>(&rk, unit, t0);
            }
            batch = ahead;
        }
    }
}

/// # Safety
/// The CPU must support AES-NI, PCLMULQDQ and SSE4.1.
#[inline(always)]
unsafe fn one_unit<const DEC: bool, const NR: usize>(rk: &[__m128i; 15], unit: Span<'_>, t0: __m128i) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let (body, stolen) = split_for_stealing(unit);
        let mut tw = [t0; 8];
        for (j, t) in tw.iter_mut().enumerate() {
            // Independent of each other: a chain of doublings here would hold up each unit's start.
            *t = mul_x_pow(t0, j as i32);
        }
        let mut groups = body.chunks_exact(8 * 16);
        for group in &mut groups {
            // AES-128 steps the tweaks between its rounds; AES-256 between groups, where the two
            // pinned registers cost its fifteen round keys more than the overlap gains
            // (`docs/PERFORMANCE.md`).
            if NR == 10 {
                crypt_eight_stepping::<DEC, NR>(rk, &group, &mut tw);
            } else {
                crypt_eight::<DEC, NR>(rk, &group, &tw);
                tw[0] = double(tw[7]);
                for j in 1..8 {
                    tw[j] = double(tw[j - 1]);
                }
            }
        }
        let next = blocks_in_xmm::<DEC, NR>(rk, groups.into_remainder(), tw[0]);
        steal::<DEC, NR>(rk, stolen, next);
    }
}

/// XTS over the eight blocks at the start of `group` (at least 128 bytes) with tweaks `tw`, each
/// middle round one `asm!` block over all eight states ([`round_of_eight`]).
///
/// # Safety
/// The CPU must support AES-NI and SSE2.
#[inline(always)]
unsafe fn crypt_eight<const DEC: bool, const NR: usize>(
    rk: &[__m128i; 15],
    group: &Span<'_>,
    tw: &[__m128i; 8],
) {
    assert!(group.len() >= 128);
    let (src, dst) = (group.src(), group.dst());
    // SAFETY: the loads and stores touch bytes 0..128 of `group`, checked above, all loads before any
    // store; the caller guarantees the features.
    unsafe {
        let mut s = [_mm_setzero_si128(); 8];
        for j in 0..8 {
            s[j] = _mm_xor_si128(_mm_loadu_si128(src.add(16 * j).cast()), _mm_xor_si128(tw[j], rk[0]));
        }
        for key in &rk[1..NR] {
            round_of_eight::<DEC>(&mut s, *key);
        }
        for j in 0..8 {
            _mm_storeu_si128(dst.add(16 * j).cast(), last_round::<DEC>(s[j], _mm_xor_si128(rk[NR], tw[j])));
        }
    }
}

/// As [`crypt_eight`], stepping each tweak to the next group's (`* x^8`) between the rounds, tweak `j`
/// between rounds `j + 1` and `j + 2`, held there by the pins of [`round_of_eight_pinned`].
///
/// # Safety
/// The CPU must support AES-NI, PCLMULQDQ and SSE2.
#[inline(always)]
unsafe fn crypt_eight_stepping<const DEC: bool, const NR: usize>(
    rk: &[__m128i; 15],
    group: &Span<'_>,
    tw: &mut [__m128i; 8],
) {
    assert!(group.len() >= 128);
    let (src, dst) = (group.src(), group.dst());
    // SAFETY: the loads and stores touch bytes 0..128 of `group`, checked above, all loads before any
    // store; the caller guarantees the features.
    unsafe {
        let mut s = [_mm_setzero_si128(); 8];
        let mut last = [_mm_setzero_si128(); 8];
        for j in 0..8 {
            s[j] = _mm_xor_si128(_mm_loadu_si128(src.add(16 * j).cast()), _mm_xor_si128(tw[j], rk[0]));
            last[j] = _mm_xor_si128(rk[NR], tw[j]);
        }
        crate::for_each_middle_round!(NR, |r| {
            let replaced = (r - 1).min(7);
            let ready = tw[(r + 6) % 8];
            round_of_eight_pinned::<DEC>(&mut s, rk[r], &mut tw[replaced], ready);
            if r <= 8 {
                tw[r - 1] = double(tw[(r + 6) % 8]);
            }
        });
        for j in 0..8 {
            _mm_storeu_si128(dst.add(16 * j).cast(), last_round::<DEC>(s[j], last[j]));
        }
    }
}

/// One `asm!` block applying the round instruction `$op` to the eight states `$s` with the key in
/// operand 8, then the template line `$extra` and the operands after the key.
#[rustfmt::skip]
macro_rules! eight_rounds {
    ($op:literal, $extra:literal, [$($s:expr),+], $($operands:tt)*) => {
        core::arch::asm!(
            concat!($op, " {0}, {8}\n", $op, " {1}, {8}\n", $op, " {2}, {8}\n", $op, " {3}, {8}\n"),
            concat!($op, " {4}, {8}\n", $op, " {5}, {8}\n", $op, " {6}, {8}\n", $op, " {7}, {8}"),
            $extra,
            $(inout(xmm_reg) *$s,)+
            $($operands)*
        )
    };
}

/// One middle round over eight states with round key `key`, in one `asm!` block so that all eight go
/// through each round together: written with intrinsics, the compiler took two states at a time
/// through all the rounds (fewer registers live, too few rounds in flight).
///
/// # Safety
/// The CPU must support AES-NI.
#[inline(always)]
unsafe fn round_of_eight<const DEC: bool>(s: &mut [__m128i; 8], key: __m128i) {
    let [s0, s1, s2, s3, s4, s5, s6, s7] = s;
    // SAFETY: the caller guarantees AES-NI; the instructions touch only the eight state registers.
    unsafe {
        if DEC {
            eight_rounds!("aesdec", "", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(xmm_reg) key, options(pure, nomem, nostack, preserves_flags));
        } else {
            eight_rounds!("aesenc", "", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(xmm_reg) key, options(pure, nomem, nostack, preserves_flags));
        }
    }
}

/// [`round_of_eight`] that also counts as changing `replaced` and reading `ready`, though it emits no
/// instruction for them: the pins keep a tweak's step after this round and the previous step before
/// it, rather than wherever the compiler would put them.
///
/// # Safety
/// The CPU must support AES-NI.
#[inline(always)]
unsafe fn round_of_eight_pinned<const DEC: bool>(
    s: &mut [__m128i; 8],
    key: __m128i,
    replaced: &mut __m128i,
    ready: __m128i,
) {
    let [s0, s1, s2, s3, s4, s5, s6, s7] = s;
    // SAFETY: the caller guarantees AES-NI; the instructions touch only the eight state registers
    // (the pins appear in a comment only).
    unsafe {
        if DEC {
            eight_rounds!("aesdec", "/* pins: {9} {10} */", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(xmm_reg) key, inout(xmm_reg) *replaced, in(xmm_reg) ready,
                options(pure, nomem, nostack, preserves_flags));
        } else {
            eight_rounds!("aesenc", "/* pins: {9} {10} */", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(xmm_reg) key, inout(xmm_reg) *replaced, in(xmm_reg) ready,
                options(pure, nomem, nostack, preserves_flags));
        }
    }
}

/// Splits a data unit into the blocks processed normally and the part that needs ciphertext stealing:
/// empty when the length is a multiple of 16, else the last full block and the partial one.
#[inline(always)]
pub(crate) fn split_for_stealing(unit: Span<'_>) -> (Span<'_>, Span<'_>) {
    let tail = unit.len() % 16;
    let body = if tail == 0 { unit.len() } else { unit.len().saturating_sub(16 + tail) };
    unit.split_at(body)
}

/// Loads all fifteen round-key slots (AES-128 leaves the last four zero).
///
/// # Safety
/// The CPU must support SSE2.
#[inline(always)]
pub(crate) unsafe fn load_keys(keys: &[[u8; 16]; 15]) -> [__m128i; 15] {
    // SAFETY: each load reads one 16-byte array; the caller guarantees SSE2.
    unsafe {
        let mut rk = [_mm_setzero_si128(); 15];
        for (reg, key) in rk.iter_mut().zip(keys) {
            *reg = _mm_loadu_si128(key.as_ptr().cast());
        }
        rk
    }
}

/// `AES_Key2(tweak value)`: the first tweak of a data unit. The value is a little-endian 128-bit
/// integer; plain64 is a data-unit number below 2^64.
///
/// # Safety
/// The CPU must support AES-NI and SSE2.
#[inline(always)]
pub(crate) unsafe fn encrypt_tweak<const NR: usize>(tk: &[__m128i; 15], value: u128) -> __m128i {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut t = _mm_xor_si128(_mm_set_epi64x((value >> 64) as i64, value as i64), tk[0]);
        for key in &tk[1..NR] {
            t = _mm_aesenc_si128(t, *key);
        }
        _mm_aesenclast_si128(t, tk[NR])
    }
}

/// [`encrypt_tweak`] of `number`, `number + step`, `number + 2 step` and `number + 3 step` (wrapping),
/// as four independent chains.
///
/// # Safety
/// The CPU must support AES-NI and SSE2.
#[inline(always)]
pub(crate) unsafe fn encrypt_four_tweaks<const NR: usize>(
    tk: &[__m128i; 15],
    number: u128,
    step: u128,
) -> [__m128i; 4] {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut t = [_mm_setzero_si128(); 4];
        let mut value = number;
        for state in &mut t {
            *state = _mm_xor_si128(_mm_set_epi64x((value >> 64) as i64, value as i64), tk[0]);
            value = value.wrapping_add(step);
        }
        for key in &tk[1..NR] {
            for state in &mut t {
                *state = _mm_aesenc_si128(*state, *key);
            }
        }
        t.map(|state| _mm_aesenclast_si128(state, tk[NR]))
    }
}

/// `t * x^k` in GF(2^128) with XTS's bit order, for `0 <= k <= 56`.
///
/// The tweak is a little-endian 128-bit integer: shift it left by `k` and fold the `k` bits that fall
/// off the top back in as `bits * (x^7 + x^2 + x + 1)`; that product has at most `k + 7 < 64` bits, so
/// one 64-bit carry-less multiply by 0x87 reduces it completely.
///
/// # Safety
/// The CPU must support PCLMULQDQ and SSE2.
#[inline(always)]
pub(crate) unsafe fn mul_x_pow(t: __m128i, k: i32) -> __m128i {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let up = _mm_cvtsi32_si128(k);
        let down = _mm_cvtsi32_si128(64 - k);
        // A shift count of 64 yields zero, which makes k = 0 the identity.
        let shifted = _mm_or_si128(_mm_sll_epi64(t, up), _mm_srl_epi64(_mm_slli_si128::<8>(t), down));
        let overflow = _mm_srl_epi64(_mm_srli_si128::<8>(t), down);
        _mm_xor_si128(shifted, _mm_clmulepi64_si128::<0x00>(overflow, _mm_cvtsi32_si128(0x87)))
    }
}

/// `t * x`: every 64-bit half doubled, the bit that leaves the low half carried into the high one,
/// and the bit that leaves the top folded back in as `x^7 + x^2 + x + 1`. No carry-less multiply.
///
/// # Safety
/// The CPU must support SSE2.
#[inline(always)]
unsafe fn double(t: __m128i) -> __m128i {
    // SAFETY: the caller guarantees SSE2.
    unsafe {
        // Dword 0 takes the sign of dword 3 (bit 127), dword 2 the sign of dword 1 (bit 63).
        let carries = _mm_srai_epi32::<31>(_mm_shuffle_epi32::<0x13>(t));
        _mm_xor_si128(_mm_add_epi64(t, t), _mm_and_si128(carries, _mm_set_epi32(0, 1, 0, 0x87)))
    }
}

/// One middle round in the kernel's direction.
///
/// # Safety
/// The CPU must support AES-NI.
#[inline(always)]
unsafe fn round<const DEC: bool>(state: __m128i, key: __m128i) -> __m128i {
    // SAFETY: the caller guarantees AES-NI.
    unsafe { if DEC { _mm_aesdec_si128(state, key) } else { _mm_aesenc_si128(state, key) } }
}

/// The last round in the kernel's direction.
///
/// # Safety
/// The CPU must support AES-NI.
#[inline(always)]
unsafe fn last_round<const DEC: bool>(state: __m128i, key: __m128i) -> __m128i {
    // SAFETY: the caller guarantees AES-NI.
    unsafe { if DEC { _mm_aesdeclast_si128(state, key) } else { _mm_aesenclast_si128(state, key) } }
}

/// XTS over exactly `W` blocks at the start of `blocks` with tweaks `tw`, all `W` in flight together.
/// Does nothing if `blocks` is shorter than `W` blocks.
///
/// # Safety
/// The CPU must support AES-NI and SSE2.
#[inline(always)]
pub(crate) unsafe fn crypt_blocks<const DEC: bool, const NR: usize, const W: usize>(
    rk: &[__m128i; 15],
    blocks: &Span<'_>,
    tw: &[__m128i; W],
) {
    if blocks.len() < 16 * W {
        return;
    }
    let (src, dst) = (blocks.src(), blocks.dst());
    // SAFETY: the loads and stores touch bytes 0..16 * W of `blocks`, checked above, all loads before
    // any store (which in place overwrites them); the caller guarantees the features.
    unsafe {
        let mut s = [_mm_setzero_si128(); W];
        for j in 0..W {
            let whitened = _mm_xor_si128(tw[j], rk[0]);
            s[j] = _mm_xor_si128(_mm_loadu_si128(src.add(16 * j).cast()), whitened);
        }
        for key in &rk[1..NR] {
            for state in &mut s {
                *state = round::<DEC>(*state, *key);
            }
        }
        for j in 0..W {
            let out = last_round::<DEC>(s[j], _mm_xor_si128(rk[NR], tw[j]));
            _mm_storeu_si128(dst.add(16 * j).cast(), out);
        }
    }
}

/// XTS over whole blocks (`blocks.len()` a multiple of 16; a partial block at the end is left alone)
/// starting with tweak `t`, four at a time, then one at a time. Returns the tweak of the block after.
///
/// # Safety
/// The CPU must support AES-NI, PCLMULQDQ and SSE2.
#[inline(always)]
pub(crate) unsafe fn blocks_in_xmm<const DEC: bool, const NR: usize>(
    rk: &[__m128i; 15],
    blocks: Span<'_>,
    mut t: __m128i,
) -> __m128i {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut quads = blocks.chunks_exact(4 * 16);
        for quad in &mut quads {
            let tw = [t, mul_x_pow(t, 1), mul_x_pow(t, 2), mul_x_pow(t, 3)];
            crypt_blocks::<DEC, NR, 4>(rk, &quad, &tw);
            t = mul_x_pow(t, 4);
        }
        for block in quads.into_remainder().chunks_exact(16) {
            crypt_blocks::<DEC, NR, 1>(rk, &block, &[t]);
            t = mul_x_pow(t, 1);
        }
        t
    }
}

/// Ciphertext stealing over `last`: the last full block of a unit and the 1..=15 bytes after it, where
/// `t` is that full block's tweak. Does nothing unless `last.len()` is 17..=31.
///
/// # Safety
/// The CPU must support AES-NI, PCLMULQDQ and SSE2.
#[inline(always)]
pub(crate) unsafe fn steal<const DEC: bool, const NR: usize>(rk: &[__m128i; 15], last: Span<'_>, t: __m128i) {
    if !(17..32).contains(&last.len()) {
        return;
    }
    let tail = last.len() - 16;
    let (mut full, mut partial) = last.split_at(16);
    // SAFETY: the caller guarantees the features.
    unsafe {
        let later = mul_x_pow(t, 1);
        // Encryption applies the block's own tweak first; decryption must undo the later one first.
        let (first_tweak, second_tweak) = if DEC { (later, t) } else { (t, later) };
        // Both input pieces are read before either output piece is written: in place they are the
        // same bytes.
        let mut stolen = [0u8; 16];
        full.read_into(0, &mut stolen);
        let mut merged = [0u8; 16];
        partial.read_into(0, &mut merged[..tail]);
        crypt_blocks::<DEC, NR, 1>(rk, &Span::in_place(&mut stolen), &[first_tweak]);
        merged[tail..].copy_from_slice(&stolen[tail..]);
        partial.write(0, &stolen[..tail]);
        crypt_blocks::<DEC, NR, 1>(rk, &Span::in_place(&mut merged), &[second_tweak]);
        full.write(0, &merged);
    }
}
