//! XTS with VAES and VPCLMULQDQ on 512-bit registers (AVX-512).
//!
//! A register holds four consecutive blocks and their four tweaks. Eight registers, thirty-two blocks
//! (512 bytes, one whole 512-byte sector), are in flight: enough independent VAESENCs to cover their
//! latency on the two 512-bit AES pipes of recent cores. Lane `l` of tweak register `j` holds
//! `T0 * x^(4j + l)`; after each group every tweak register jumps ahead by `x^32`. The round keys are
//! broadcast to all four lanes once per call. Blocks left after the wide loop go through the same
//! rounds with byte-masked loads and stores (AVX-512BW), four blocks per register, so an odd-sized unit
//! never falls back to one block at a time.

use crate::aesni;
use crate::keys::RoundKeys;
use core::arch::x86_64::*;

/// Runs XTS over `buf` cut into units of `unit_len` bytes, numbered from `first` by `step`.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL, VAES, VPCLMULQDQ, AES-NI, PCLMULQDQ and SSE4.1
/// (`Backend::Vaes512.is_supported()`).
#[target_feature(enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,avx512vl,vaes,vpclmulqdq")]
pub(crate) unsafe fn xts(keys: &RoundKeys, decrypt: bool, buf: &mut [u8], unit_len: usize, first: u128, step: u128) {
    // SAFETY: this function enables every feature `units` needs.
    unsafe {
        match (decrypt, keys.rounds) {
            (false, 10) => units::<false, 10>(keys, buf, unit_len, first, step),
            (false, _) => units::<false, 14>(keys, buf, unit_len, first, step),
            (true, 10) => units::<true, 10>(keys, buf, unit_len, first, step),
            (true, _) => units::<true, 14>(keys, buf, unit_len, first, step),
        }
    }
}

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
        let mut t0 = aesni::encrypt_tweak::<NR>(&tk, number);
        for unit in buf.chunks_mut(unit_len.max(16)) {
            number = number.wrapping_add(step);
            // Issued first so the core overlaps this serial AES chain with the unit's blocks.
            let next = aesni::encrypt_tweak::<NR>(&tk, number);
            one_unit::<DEC, NR>(&rk, &rk128, unit, t0);
            t0 = next;
        }
    }
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
        let first = _mm512_broadcast_i32x4(t0);
        let mut tw = [first; 8];
        for (j, t) in tw.iter_mut().enumerate() {
            let k = 4 * j as i64;
            *t = mul_x_pow(first, _mm512_set_epi64(k + 3, k + 3, k + 2, k + 2, k + 1, k + 1, k, k));
        }
        let mut groups = body.chunks_exact_mut(32 * 16);
        for group in &mut groups {
            let p = group.as_mut_ptr();
            let mut s = [_mm512_setzero_si512(); 8];
            for (j, state) in s.iter_mut().enumerate() {
                // In bounds: the group is 512 bytes and register j covers bytes 64j..64j+64.
                *state = _mm512_loadu_si512(p.add(64 * j).cast());
            }
            crypt::<DEC, NR, 8>(rk, &mut s, &tw);
            for (j, state) in s.iter().enumerate() {
                _mm512_storeu_si512(p.add(64 * j).cast(), *state);
            }
            let step = _mm512_set1_epi64(32);
            for t in &mut tw {
                *t = mul_x_pow(*t, step);
            }
        }
        // Fewer than 32 blocks remain: at most eight registers' worth, each with its own tweaks.
        let rest = groups.into_remainder();
        let done = rest.len() / 16;
        for (piece, t) in rest.chunks_mut(64).zip(&tw) {
            // `piece` is 16, 32, 48 or 64 bytes: the mask covers exactly its bytes, and masked-off
            // bytes are neither read nor written.
            let mask: __mmask64 = u64::MAX >> (64 - piece.len());
            let p = piece.as_mut_ptr();
            let mut s = [_mm512_maskz_loadu_epi8(mask, p.cast())];
            crypt::<DEC, NR, 1>(rk, &mut s, &[*t]);
            _mm512_mask_storeu_epi8(p.cast(), mask, s[0]);
        }
        if !stolen.is_empty() {
            // The stolen block's tweak is the one after the last block done: lane done % 4 of register
            // done / 4 (done < 32, so the register exists).
            let mut lanes = [0u8; 64];
            _mm512_storeu_si512(lanes.as_mut_ptr().cast(), tw[(done / 4) % 8]);
            let lane = 16 * (done % 4);
            let t = _mm_loadu_si128(lanes[lane..lane + 16].as_ptr().cast());
            aesni::steal::<DEC, NR>(rk128, stolen, t);
        }
    }
}

/// Every lane `t * x^k`, with `k` per 64-bit half in `k` (both halves of a lane equal, `0 <= k <= 56`);
/// the same reduction as [`aesni::mul_x_pow`], four lanes at once.
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
                *state = if DEC { _mm512_aesdec_epi128(*state, *key) } else { _mm512_aesenc_epi128(*state, *key) };
            }
        }
        for (state, t) in s.iter_mut().zip(tw) {
            let last = _mm512_xor_si512(rk[NR], *t);
            *state = if DEC { _mm512_aesdeclast_epi128(*state, last) } else { _mm512_aesenclast_epi128(*state, last) };
        }
    }
}
