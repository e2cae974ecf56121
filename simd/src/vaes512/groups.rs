//! Group helpers: load, whiten, encrypt or decrypt and store a group of registers of blocks, with
//! byte-masked loads and stores for a unit's last, partial group.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The `N` registers of states in the first `64 * N` bytes of `group`'s input.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(super) unsafe fn load_states<const N: usize>(group: &Span<'_>) -> [__m512i; N] {
    assert!(group.len() >= 64 * N);
    let p = group.src();
    // SAFETY: register j covers bytes 64j..64j+64 of the 64 * N bytes checked above; the caller
    // guarantees the features.
    unsafe {
        let mut s = [_mm512_setzero_si512(); N];
        for (j, state) in s.iter_mut().enumerate() {
            *state = _mm512_loadu_si512(p.add(64 * j).cast());
        }
        s
    }
}

/// Writes the `N` registers of states `s` to the first `64 * N` bytes of `group`'s output.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(super) unsafe fn store_states<const N: usize>(group: &Span<'_>, s: &[__m512i; N]) {
    assert!(group.len() >= 64 * N);
    let p = group.dst();
    // SAFETY: register j covers bytes 64j..64j+64 of the 64 * N bytes checked above; the caller
    // guarantees the features.
    unsafe {
        for (j, state) in s.iter().enumerate() {
            _mm512_storeu_si512(p.add(64 * j).cast(), *state);
        }
    }
}

/// Each state XORed with its tweak register and the first round key, in one three-way XOR (0x96 is
/// the truth table of `a ^ b ^ c`).
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(super) unsafe fn whiten<const N: usize>(rk: &WideKeys, s: &mut [__m512i; N], tw: &[__m512i; N]) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        for (state, t) in s.iter_mut().zip(tw) {
            *state = _mm512_ternarylogic_epi64::<0x96>(*state, *t, rk.first);
        }
    }
}

/// One full group of `N` registers: `64 * N` bytes at the start of `group` (nothing if it is shorter).
///
/// # Safety
/// The CPU must support AVX-512F and VAES.
#[inline(always)]
pub(super) unsafe fn crypt_group<const DEC: bool, const NR: usize, const N: usize>(
    rk: &WideKeys,
    group: &Span<'_>,
    tw: &[__m512i; N],
) {
    if group.len() < 64 * N {
        return;
    }
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut s = load_states::<N>(group);
        crypt::<DEC, NR, N>(rk, &mut s, tw);
        store_states(group, &s);
    }
}

/// One full group of `W` registers with tweaks `tw`, replacing register `j` of `later` by
/// `next(j, later[j])` after round `j + 1`, so that tweak work overlaps the rounds.
///
/// # Safety
/// The CPU must support AVX-512F, VAES and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn crypt_group_then<const DEC: bool, const NR: usize, const W: usize>(
    rk: &WideKeys,
    group: &Span<'_>,
    tw: &[__m512i; W],
    later: &mut [__m512i; W],
    next: impl Fn(usize, &[__m512i; W]) -> __m512i,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut s = load_states::<W>(group);
        whiten(rk, &mut s, tw);
        crate::for_each_middle_round!(NR, |r| {
            for state in s.iter_mut() {
                *state = if DEC {
                    _mm512_aesdec_epi128(*state, rk.rounds[r])
                } else {
                    _mm512_aesenc_epi128(*state, rk.rounds[r])
                };
            }
            if r - 1 < W {
                later[r - 1] = next(r - 1, later);
            }
        });
        for (state, t) in s.iter_mut().zip(tw) {
            let last = rk.last_round::<NR>(*t);
            *state = if DEC {
                _mm512_aesdeclast_epi128(*state, last)
            } else {
                _mm512_aesenclast_epi128(*state, last)
            };
        }
        store_states(group, &s);
    }
}

/// The AES rounds over `W` registers of four blocks each, with the tweak XORs folded into the first
/// and last round keys.
///
/// # Safety
/// The CPU must support AVX-512F and VAES.
#[inline(always)]
pub(super) unsafe fn crypt<const DEC: bool, const NR: usize, const W: usize>(
    rk: &WideKeys,
    s: &mut [__m512i; W],
    tw: &[__m512i; W],
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        whiten(rk, s, tw);
        for key in &rk.rounds[1..NR] {
            for state in s.iter_mut() {
                *state =
                    if DEC { _mm512_aesdec_epi128(*state, *key) } else { _mm512_aesenc_epi128(*state, *key) };
            }
        }
        for (state, t) in s.iter_mut().zip(tw) {
            let last = rk.last_round::<NR>(*t);
            *state = if DEC {
                _mm512_aesdeclast_epi128(*state, last)
            } else {
                _mm512_aesenclast_epi128(*state, last)
            };
        }
    }
}
