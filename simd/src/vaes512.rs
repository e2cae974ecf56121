//! XTS with VAES and VPCLMULQDQ on 512-bit registers (AVX-512).
//!
//! A register holds four consecutive blocks and their four tweaks. Eight registers, thirty-two blocks
//! (512 bytes), are in flight within a unit; sixteen tweak registers cover two such groups. Lane `l`
//! of tweak register `j` holds `T0 * x^(4j + l)`; after each pair of groups every tweak register jumps
//! ahead by `x^64`. Those carry-less multiplies compete with VAES for the same vector pipes, so they
//! are spread between the rounds of the other group of the pair, one register per round, and the next
//! pair's cache lines are prefetched (with the rounds that dense, its loads would otherwise reach memory
//! late). The round keys are broadcast to all four lanes once per call.
//!
//! 512-byte units (one group each) go through in pairs the same way: the second unit's tweak registers
//! are computed between the first unit's rounds, the next pair's first unit's between the second's,
//! and the tweaks themselves are encrypted a pair ahead. The blocks of a unit left after its full
//! groups go through one more group whose loads and stores are byte-masked (AVX-512BW), so an
//! odd-sized unit never falls back to one block at a time.

use crate::aesni;
use crate::keys::RoundKeys;
use core::arch::x86_64::*;

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
    buf: &mut [u8],
    unit_len: usize,
    first: u128,
    step: u128,
) {
    // SAFETY: this function enables every feature `units` needs.
    unsafe {
        crate::for_direction_and_rounds!(units, decrypt, keys.rounds, (keys, buf, unit_len, first, step))
    }
}

/// Registers in flight within a unit: eight, thirty-two blocks, 512 bytes. Sixteen measured slower
/// here: with fifteen round keys the states no longer fit the thirty-two registers.
const W: usize = 8;
/// Bytes per group within a unit.
const GROUP: usize = W * 64;
/// How far ahead of the pair being encrypted its successor's lines are prefetched.
const PREFETCH_AHEAD: usize = 2 * PAIR;
/// Two 512-byte units, one group each, go through together.
const PAIR: usize = 2 * GROUP;

/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
unsafe fn units<const DEC: bool, const NR: usize>(
    keys: &RoundKeys,
    buf: &mut [u8],
    unit_len: usize,
    first: u128,
    step: u128,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let rk128 = aesni::load_keys(if DEC { &keys.dec } else { &keys.enc });
        let tk = aesni::load_keys(&keys.tweak);
        let mut rk = [_mm512_setzero_si512(); 15];
        for (wide, key) in rk.iter_mut().zip(&rk128) {
            *wide = _mm512_broadcast_i32x4(*key);
        }
        let mut number = first;
        let mut rest = buf;
        if unit_len == GROUP {
            // A 512-byte unit alone leaves the AES pipes half idle while its tweak is encrypted and
            // its group drains: pair units up so two independent groups overlap.
            let pair_count = rest.len() / PAIR;
            let mut pairs = rest.chunks_exact_mut(PAIR);
            // Unit A of a pair runs while unit B's tweak registers are computed between its rounds,
            // and unit B while the next pair's unit A's are: the same overlap as within a long unit.
            // The tweaks themselves (serial AES chains) are encrypted one pair ahead.
            let mut tw_a = [_mm512_setzero_si512(); W];
            let mut tw_b = [_mm512_setzero_si512(); W];
            let mut t_b = _mm_setzero_si128();
            if pair_count > 0 {
                first_tweaks(&mut tw_a, aesni::encrypt_tweak::<NR>(&tk, number), 0);
                t_b = aesni::encrypt_tweak::<NR>(&tk, number.wrapping_add(step));
            }
            for (i, pair) in (&mut pairs).enumerate() {
                number = number.wrapping_add(step.wrapping_mul(2));
                let last = i + 1 == pair_count;
                let (mut t_a_next, mut t_b_next) = (_mm_setzero_si128(), _mm_setzero_si128());
                if !last {
                    t_a_next = aesni::encrypt_tweak::<NR>(&tk, number);
                    t_b_next = aesni::encrypt_tweak::<NR>(&tk, number.wrapping_add(step));
                }
                let (a, b) = pair.split_at_mut(GROUP);
                let first_b = _mm512_broadcast_i32x4(t_b);
                crypt_group_then::<DEC, NR>(&rk, a, &tw_a, &mut tw_b, |j, _| tweak_register(first_b, 4 * j));
                if last {
                    crypt_group::<DEC, NR, W>(&rk, b, &tw_b);
                } else {
                    let first_a = _mm512_broadcast_i32x4(t_a_next);
                    crypt_group_then::<DEC, NR>(&rk, b, &tw_b, &mut tw_a, |j, _| {
                        tweak_register(first_a, 4 * j)
                    });
                }
                t_b = t_b_next;
            }
            rest = pairs.into_remainder();
        }
        let mut t0 = aesni::encrypt_tweak::<NR>(&tk, number);
        for unit in rest.chunks_mut(unit_len.max(16)) {
            number = number.wrapping_add(step);
            let next = aesni::encrypt_tweak::<NR>(&tk, number);
            one_unit::<DEC, NR>(&rk, &rk128, unit, t0);
            t0 = next;
        }
    }
}

/// Fills `tw` so that lane `l` of register `j` holds `t0 * x^(start + 4j + l)`: the tweaks of the
/// unit's blocks from `start` on (`start + 4 * tw.len() <= 64`).
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
unsafe fn first_tweaks(tw: &mut [__m512i], t0: __m128i, start: usize) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let first = _mm512_broadcast_i32x4(t0);
        for (j, t) in tw.iter_mut().enumerate() {
            *t = tweak_register(first, start + 4 * j);
        }
    }
}

/// The register of tweaks `first * x^(k..k+4)`, from `first` broadcast to all lanes (`k + 3 <= 64`).
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
unsafe fn tweak_register(first: __m512i, k: usize) -> __m512i {
    let k = k as i64;
    // SAFETY: the caller guarantees the features.
    unsafe { mul_x_pow(first, _mm512_set_epi64(k + 3, k + 3, k + 2, k + 2, k + 1, k + 1, k, k)) }
}

/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
unsafe fn one_unit<const DEC: bool, const NR: usize>(
    rk: &[__m512i; 15],
    rk128: &[__m128i; 15],
    unit: &mut [u8],
    t0: __m128i,
) {
    // SAFETY: the caller guarantees the features; every load and store stays inside `unit` (see the
    // comments at each).
    unsafe {
        let (body, stolen) = aesni::split_for_stealing(unit);
        // Tweaks for the next two groups: stepping each register by x^64 costs one byte shift, one
        // carry-less multiply and one XOR (see `mul_x64`), a third less than stepping by x^32, and
        // these updates compete with the AES rounds for the same vector pipes.
        let mut tw = [[_mm512_setzero_si512(); W]; 2];
        first_tweaks(&mut tw[0], t0, 0);
        let first = _mm512_broadcast_i32x4(t0);
        let body_len = body.len();
        let pair_count = body_len / (2 * GROUP);
        let tail_follows = !body.len().is_multiple_of(2 * GROUP) || !stolen.is_empty();
        let mut pairs = body.chunks_exact_mut(2 * GROUP);
        for (i, pair) in (&mut pairs).enumerate() {
            // The rounds below keep the vector schedulers so full that, with the tweak work in among
            // them, the next pair's loads would reach memory late: ask for its lines now.
            let ahead = pair.as_ptr().wrapping_add(PREFETCH_AHEAD);
            for line in 0..2 * GROUP / 64 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast());
            }
            let (low, high) = pair.split_at_mut(GROUP);
            let [tw_low, tw_high] = &mut tw;
            // Carry-less multiplies compete with the AES rounds for the same vector pipes, so each
            // half's tweak work runs between the other half's rounds, one register per round: the
            // low half computes the high half's tweaks (the first ones, or the previous pair's times
            // x^64), the high half steps the low half's by x^64. Nothing is stepped that no block
            // will use.
            if i == 0 {
                crypt_group_then::<DEC, NR>(rk, low, tw_low, tw_high, |j, _| {
                    tweak_register(first, 4 * (W + j))
                });
            } else {
                crypt_group_then::<DEC, NR>(rk, low, tw_low, tw_high, |_, t| mul_x64(t));
            }
            if i + 1 == pair_count && !tail_follows {
                crypt_group::<DEC, NR, W>(rk, high, tw_high);
            } else {
                crypt_group_then::<DEC, NR>(rk, high, tw_high, tw_low, |_, t| mul_x64(t));
            }
        }
        if pair_count == 0 && (body_len > GROUP || (body_len == GROUP && !stolen.is_empty())) {
            // A second 512-byte piece, or a stolen block after a whole first one, needs them.
            first_tweaks(&mut tw[1], t0, 4 * W);
        } else if pair_count > 0 && tail_follows {
            for t in &mut tw[1] {
                *t = mul_x64(*t);
            }
        }
        // Fewer than 64 blocks remain. Each 512-byte piece takes the next eight tweak registers; a
        // short piece is one group whose loads and stores are byte-masked to the bytes that exist, so
        // all of its blocks are still in flight together.
        let rest = pairs.into_remainder();
        let done = rest.len() / 16;
        for (piece, tw_piece) in rest.chunks_mut(GROUP).zip(&tw) {
            if piece.len() == GROUP {
                crypt_group::<DEC, NR, W>(rk, piece, tw_piece);
                continue;
            }
            let p = piece.as_mut_ptr();
            let mut masks = [0u64; W];
            let mut s = [_mm512_setzero_si512(); W];
            for (j, (mask, state)) in masks.iter_mut().zip(&mut s).enumerate() {
                let present = piece.len().saturating_sub(64 * j).min(64);
                *mask = if present == 0 { 0 } else { u64::MAX >> (64 - present) };
                // Masked-off bytes are neither read nor written, so a register past the end (mask 0)
                // touches no memory; `wrapping_add` keeps the pointer arithmetic itself defined.
                *state = _mm512_maskz_loadu_epi8(*mask, p.wrapping_add(64 * j).cast());
            }
            crypt::<DEC, NR, W>(rk, &mut s, tw_piece);
            for (j, (mask, state)) in masks.iter().zip(&s).enumerate() {
                _mm512_mask_storeu_epi8(p.wrapping_add(64 * j).cast(), *mask, *state);
            }
        }
        if !stolen.is_empty() {
            // The stolen block's tweak is the one after the last block done: lane done % 4 of register
            // done / 4 of the sixteen (done < 64).
            let mut lanes = [0u8; 64];
            _mm512_storeu_si512(lanes.as_mut_ptr().cast(), tw[(done / (4 * W)) % 2][(done / 4) % W]);
            let lane = 16 * (done % 4);
            let t = _mm_loadu_si128(lanes[lane..lane + 16].as_ptr().cast());
            aesni::steal::<DEC, NR>(rk128, stolen, t);
        }
    }
}

/// Every lane `t * x^64`: the low half moves up, and the high half falls off the top and comes back
/// times `x^7 + x^2 + x + 1`. Its product with 0x87 has at most 71 bits; the bits past 63 land in the
/// high half, where they belong, so no second reduction is needed.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
unsafe fn mul_x64(t: __m512i) -> __m512i {
    // SAFETY: the caller guarantees the features.
    unsafe {
        // Immediate 0x01: the high 64 bits of `t` times the low 64 bits of the constant.
        let reduced = _mm512_clmulepi64_epi128::<0x01>(t, _mm512_set1_epi64(0x87));
        _mm512_xor_si512(_mm512_bslli_epi128::<8>(t), reduced)
    }
}

/// One full group of `N` registers: `64 * N` bytes at the start of `group` (nothing if it is shorter).
///
/// # Safety
/// The CPU must support AVX-512F and VAES.
#[inline(always)]
unsafe fn crypt_group<const DEC: bool, const NR: usize, const N: usize>(
    rk: &[__m512i; 15],
    group: &mut [u8],
    tw: &[__m512i; N],
) {
    if group.len() < 64 * N {
        return;
    }
    let p = group.as_mut_ptr();
    // SAFETY: register j covers bytes 64j..64j+64 of the 64 * N bytes checked above; the caller
    // guarantees the features.
    unsafe {
        let mut s = [_mm512_setzero_si512(); N];
        for (j, state) in s.iter_mut().enumerate() {
            *state = _mm512_loadu_si512(p.add(64 * j).cast());
        }
        crypt::<DEC, NR, N>(rk, &mut s, tw);
        for (j, state) in s.iter().enumerate() {
            _mm512_storeu_si512(p.add(64 * j).cast(), *state);
        }
    }
}

/// One full group of `W` registers with tweaks `tw`, replacing register `j` of `later` by
/// `next(j, later[j])` after round `j + 1`, so that tweak work overlaps the rounds.
///
/// # Safety
/// The CPU must support AVX-512F, VAES and VPCLMULQDQ.
#[inline(always)]
unsafe fn crypt_group_then<const DEC: bool, const NR: usize>(
    rk: &[__m512i; 15],
    group: &mut [u8],
    tw: &[__m512i; W],
    later: &mut [__m512i; W],
    next: impl Fn(usize, __m512i) -> __m512i,
) {
    assert!(group.len() >= GROUP);
    let p = group.as_mut_ptr();
    // SAFETY: register j covers bytes 64j..64j+64 of the GROUP bytes checked above; the caller
    // guarantees the features.
    unsafe {
        let mut s = [_mm512_setzero_si512(); W];
        for (j, state) in s.iter_mut().enumerate() {
            *state = _mm512_loadu_si512(p.add(64 * j).cast());
        }
        for (state, t) in s.iter_mut().zip(tw) {
            *state = _mm512_ternarylogic_epi64::<0x96>(*state, *t, rk[0]);
        }
        for (round, key) in rk[1..NR].iter().enumerate() {
            for state in s.iter_mut() {
                *state =
                    if DEC { _mm512_aesdec_epi128(*state, *key) } else { _mm512_aesenc_epi128(*state, *key) };
            }
            if round < W {
                later[round] = next(round, later[round]);
            }
        }
        for (state, t) in s.iter_mut().zip(tw) {
            let last = _mm512_xor_si512(rk[NR], *t);
            *state = if DEC {
                _mm512_aesdeclast_epi128(*state, last)
            } else {
                _mm512_aesenclast_epi128(*state, last)
            };
        }
        for (j, state) in s.iter().enumerate() {
            _mm512_storeu_si512(p.add(64 * j).cast(), *state);
        }
    }
}

/// Every lane `t * x^k`, with `k` per 64-bit half in `k` (both halves of a lane equal, `0 <= k <= 64`);
/// the reduction of [`aesni::mul_x_pow`], four lanes at once. For `k > 57` the product of the
/// overflow and 0x87 reaches past bit 63 of the low half; the 128-bit carry-less product puts those
/// bits in the high half, where they belong, so the result is still exact.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
unsafe fn mul_x_pow(t: __m512i, k: __m512i) -> __m512i {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let down = _mm512_sub_epi64(_mm512_set1_epi64(64), k);
        let carried_up = _mm512_srlv_epi64(_mm512_bslli_epi128::<8>(t), down);
        let shifted = _mm512_or_si512(_mm512_sllv_epi64(t, k), carried_up);
        let overflow = _mm512_srlv_epi64(_mm512_bsrli_epi128::<8>(t), down);
        let reduced = _mm512_clmulepi64_epi128::<0x00>(overflow, _mm512_set1_epi64(0x87));
        _mm512_xor_si512(shifted, reduced)
    }
}

/// The AES rounds over `W` registers of four blocks each, with the tweak XORs folded into the first
/// and last round keys.
///
/// # Safety
/// The CPU must support AVX-512F and VAES.
#[inline(always)]
unsafe fn crypt<const DEC: bool, const NR: usize, const W: usize>(
    rk: &[__m512i; 15],
    s: &mut [__m512i; W],
    tw: &[__m512i; W],
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        for (state, t) in s.iter_mut().zip(tw) {
            // 0x96 is the truth table of a ^ b ^ c.
            *state = _mm512_ternarylogic_epi64::<0x96>(*state, *t, rk[0]);
        }
        for key in &rk[1..NR] {
            for state in s.iter_mut() {
                *state =
                    if DEC { _mm512_aesdec_epi128(*state, *key) } else { _mm512_aesenc_epi128(*state, *key) };
            }
        }
        for (state, t) in s.iter_mut().zip(tw) {
            let last = _mm512_xor_si512(rk[NR], *t);
            *state = if DEC {
                _mm512_aesdeclast_epi128(*state, last)
            } else {
                _mm512_aesenclast_epi128(*state, last)
            };
        }
    }
}
