//! The tweak algebra of the VAES-512 kernel: the broadcast round keys and the form of the tweak
//! registers ([`WideKeys`]), the first tweaks of units, and the steps that multiply a register of four
//! tweaks by `x^k` with carry-less multiplies.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The round keys of one direction broadcast to all four lanes, and the form of the tweak registers.
///
/// With AES-128, tweak registers hold each tweak XORed with the last round key `K`: the last round
/// then takes them as its key as they are (`aesenclast(s, K ^ T)` is the last round followed by the
/// tweak's XOR), one XOR fewer per register of blocks. Making them costs nothing extra: the XOR of `K`
/// rides on the three-way XOR that ends every tweak multiply (with a constant per step size, made
/// once with the key schedule rather than per call). AES-256 keeps plain tweaks: with wide groups the
/// extra constant needs a register where none is left (`docs/PERFORMANCE.md`).
pub(super) struct WideKeys {
    pub(super) rounds: [__m512i; 15],
    /// Whether tweak registers hold `T ^ K` rather than `T`.
    pub(super) holds_last: bool,
    /// What the tweak registers hold beyond `T`: `K` or zero.
    pub(super) offset: __m512i,
    /// The first round key, XORed with `offset`: the first XOR of a block, `P ^ T ^ key0`, is then
    /// `P ^ (T ^ offset) ^ (key0 ^ offset)`, still one three-way XOR.
    pub(super) first: __m512i,
    /// `K * x^(8m) ^ K` for steps of `m` = 1, 2, 4 and 8 bytes: a register `T ^ K` stepped by `x^(8m)`
    /// is `T * x^(8m) ^ K * x^(8m)` (the product is linear), and XORing this in gives `T * x^(8m) ^ K`.
    pub(super) step_fixes: [__m512i; 4],
}

impl WideKeys {
    /// Broadcasts `rk` (`NR + 1` round keys) and, when the tweak registers hold `T ^ K`, `last_steps`
    /// (see [`RoundKeys::last_key_steps`]).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[inline(always)]
    pub(super) unsafe fn new<const NR: usize>(rk: &[__m128i; 15], last_steps: &[[u8; 16]; 4]) -> Self {
        // SAFETY: the caller guarantees the features.
        unsafe {
            let rounds = broadcast_keys(rk);
            let holds_last = NR == 10;
            let offset = if holds_last { rounds[NR] } else { _mm512_setzero_si512() };
            Self {
                rounds,
                holds_last,
                offset,
                first: _mm512_xor_si512(rounds[0], offset),
                step_fixes: if holds_last {
                    // SAFETY: each is a 16-byte array, read unaligned.
                    last_steps.map(|fix| _mm512_broadcast_i32x4(_mm_loadu_si128(fix.as_ptr().cast())))
                } else {
                    [offset; 4]
                },
            }
        }
    }

    /// A tweak register stepped by `x^(8 * bytes)`, from the two terms of the product.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[inline(always)]
    pub(super) unsafe fn stepped(&self, terms: [__m512i; 2], bytes: usize) -> __m512i {
        let fix = match bytes {
            1 => self.step_fixes[0],
            2 => self.step_fixes[1],
            4 => self.step_fixes[2],
            _ => self.step_fixes[3],
        };
        // SAFETY: the caller guarantees the features.
        unsafe { self.sum_plus(terms, fix) }
    }

    /// A tweak register made from the two terms of `T`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[inline(always)]
    pub(super) unsafe fn tweak_of_terms(&self, terms: [__m512i; 2]) -> __m512i {
        // SAFETY: the caller guarantees the features.
        unsafe { self.sum_plus(terms, self.offset) }
    }

    /// `a ^ b`, and `plus` with it when the registers hold `T ^ K` (with plain tweaks the XOR alone
    /// needs no register of zeros).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[inline(always)]
    pub(super) unsafe fn sum_plus(&self, [a, b]: [__m512i; 2], plus: __m512i) -> __m512i {
        // SAFETY: the caller guarantees the features.
        unsafe {
            if self.holds_last {
                _mm512_ternarylogic_epi64::<0x96>(a, b, plus)
            } else {
                _mm512_xor_si512(a, b)
            }
        }
    }

    /// The key of the last round of blocks whose tweak register is `tw`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[inline(always)]
    pub(super) unsafe fn last_round<const NR: usize>(&self, tw: __m512i) -> __m512i {
        // SAFETY: the caller guarantees the features.
        unsafe { if self.holds_last { tw } else { _mm512_xor_si512(self.rounds[NR], tw) } }
    }

    /// The tweak in a 128-bit lane taken from a tweak register.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[inline(always)]
    pub(super) unsafe fn plain_tweak(&self, lane: __m128i) -> __m128i {
        // SAFETY: the caller guarantees the features.
        unsafe { _mm_xor_si128(lane, _mm512_castsi512_si128(self.offset)) }
    }
}

/// Round keys broadcast to all four lanes.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(super) unsafe fn broadcast_keys(keys: &[__m128i; 15]) -> [__m512i; 15] {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut wide = [_mm512_setzero_si512(); 15];
        for (wide, key) in wide.iter_mut().zip(keys) {
            *wide = _mm512_broadcast_i32x4(*key);
        }
        wide
    }
}

/// Register `j` of a unit's first tweak registers from `first` (its first tweak in every lane), given
/// registers `j - 2` and below in `tw`: the first two by bit shifts, every later one from the one two
/// before by a byte shift (`x^8`), which costs fewer instructions.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn unit_tweak_register<const W: usize>(
    rk: &WideKeys,
    first: __m512i,
    tw: &[__m512i; W],
    j: usize,
) -> __m512i {
    // SAFETY: the caller guarantees the features.
    unsafe { if j < 2 { tweak_register(rk, first, 4 * j) } else { mul_x_bytes::<1, 15>(rk, tw[j - 2]) } }
}

/// Lane `L` of `v`.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(super) unsafe fn lane<const L: i32>(v: __m512i) -> __m128i {
    // SAFETY: the caller guarantees the features.
    unsafe { _mm512_extracti32x4_epi32::<L>(v) }
}

/// `AES_Key2` of the tweak values `number + i * step` in lane `i`, for `i` in 0..4.
///
/// # Safety
/// The CPU must support AVX-512F and VAES.
#[inline(always)]
pub(super) unsafe fn encrypt_four_tweaks<const NR: usize>(
    tk: &[__m512i; 15],
    number: u128,
    step: u128,
) -> __m512i {
    let value = |i: u128| number.wrapping_add(step.wrapping_mul(i));
    let (v0, v1, v2, v3) = (value(0), value(1), value(2), value(3));
    let half = |v: u128, high: bool| (if high { v >> 64 } else { v }) as u64 as i64;
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut t = _mm512_set_epi64(
            half(v3, true),
            half(v3, false),
            half(v2, true),
            half(v2, false),
            half(v1, true),
            half(v1, false),
            half(v0, true),
            half(v0, false),
        );
        t = _mm512_xor_si512(t, tk[0]);
        for key in &tk[1..NR] {
            t = _mm512_aesenc_epi128(t, *key);
        }
        _mm512_aesenclast_epi128(t, tk[NR])
    }
}

/// Fills `tw` so that lane `l` of register `j` holds `t0 * x^(4j + l)` (in the form of [`WideKeys`]):
/// the tweaks of a unit's first `4 * W` blocks. Each register comes from `t0` directly, so none waits
/// for another: a unit cannot start before these are ready.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn first_tweaks<const W: usize>(rk: &WideKeys, tw: &mut [__m512i; W], t0: __m128i) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let first = _mm512_broadcast_i32x4(t0);
        for (j, t) in tw.iter_mut().enumerate() {
            *t = tweak_register(rk, first, 4 * j);
        }
    }
}

/// The tweak register `t` stepped by `x^(8 * M)` (see [`product_x_bytes`]).
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn mul_x_bytes<const M: i32, const R: i32>(rk: &WideKeys, t: __m512i) -> __m512i {
    // SAFETY: the caller guarantees the features.
    unsafe { rk.stepped(product_x_bytes::<M, R>(t), M as usize) }
}

/// Every lane `t * x^(8 * M)` (`R == 16 - M`, `1 <= M <= 7`) as two terms to XOR: a byte shift, and
/// the `M` bytes that fall off the top folded back as `bytes * (x^7 + x^2 + x + 1)`, a product of under
/// 64 bits.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn product_x_bytes<const M: i32, const R: i32>(t: __m512i) -> [__m512i; 2] {
    debug_assert!(M + R == 16 && (1..=7).contains(&M));
    // SAFETY: the caller guarantees the features.
    unsafe {
        let overflow = _mm512_bsrli_epi128::<R>(t);
        [_mm512_bslli_epi128::<M>(t), _mm512_clmulepi64_epi128::<0x00>(overflow, _mm512_set1_epi64(0x87))]
    }
}

/// The register of tweaks `first * x^(k..k+4)` (in the form of [`WideKeys`]), from `first` broadcast
/// to all lanes (`k + 3 <= 64`).
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn tweak_register(rk: &WideKeys, first: __m512i, k: usize) -> __m512i {
    let k = k as i64;
    // SAFETY: the caller guarantees the features.
    unsafe {
        let powers = _mm512_set_epi64(k + 3, k + 3, k + 2, k + 2, k + 1, k + 1, k, k);
        rk.tweak_of_terms(product_x_pow(first, powers))
    }
}

/// Puts tweak register `t` in `tw[j]` and its last round's key in `last_keys[j]`, the latter through
/// a volatile write: left to itself the compiler keeps those keys in registers, where they spill.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
pub(super) unsafe fn set_tweak_register<const NR: usize>(
    rk: &WideKeys,
    tw: &mut [__m512i; WIDE],
    last_keys: &mut [__m512i; WIDE],
    j: usize,
    t: __m512i,
) {
    // SAFETY: the caller guarantees the features; the pointer comes from a reference, so it is
    // valid and aligned.
    unsafe {
        tw[j] = t;
        core::ptr::write_volatile(&raw mut last_keys[j], rk.last_round::<NR>(t));
    }
}

/// Every lane `t * x^(4W)`: from one group's tweaks to the next group's.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn half_step<const W: usize>(rk: &WideKeys, t: __m512i) -> __m512i {
    // SAFETY: the caller guarantees the features.
    unsafe {
        const { assert!(W == NARROW || W == WIDE) };
        if W == NARROW { mul_x_bytes::<2, 14>(rk, t) } else { mul_x_bytes::<4, 12>(rk, t) }
    }
}

/// Every lane `t * x^(8W)`: from one pair of groups' tweaks to the next pair's.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn pair_step<const W: usize>(rk: &WideKeys, t: __m512i) -> __m512i {
    // SAFETY: the caller guarantees the features.
    unsafe {
        const { assert!(W == NARROW || W == WIDE) };
        if W == NARROW { mul_x_bytes::<4, 12>(rk, t) } else { mul_x64(rk, t) }
    }
}

/// The tweak register `t` stepped by `x^64` (see [`product_x64`]).
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn mul_x64(rk: &WideKeys, t: __m512i) -> __m512i {
    // SAFETY: the caller guarantees the features.
    unsafe { rk.stepped(product_x64(t), 8) }
}

/// Every lane `t * x^64` as two terms to XOR: the low half moves up, and the high half falls off the
/// top and comes back times `x^7 + x^2 + x + 1`. Its product with 0x87 has at most 71 bits; the bits
/// past 63 land in the high half, where they belong, so no second reduction is needed.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn product_x64(t: __m512i) -> [__m512i; 2] {
    // SAFETY: the caller guarantees the features.
    unsafe {
        // Immediate 0x01: the high 64 bits of `t` times the low 64 bits of the constant.
        [_mm512_bslli_epi128::<8>(t), _mm512_clmulepi64_epi128::<0x01>(t, _mm512_set1_epi64(0x87))]
    }
}

/// Every lane `t * x^k` as two terms to XOR, with `k` per 64-bit half in `k` (both halves of a lane
/// equal, `0 <= k <= 64`); the reduction of [`aesni::mul_x_pow`], four lanes at once. For `k > 57`
/// the product of the overflow and 0x87 reaches past bit 63 of the low half; the 128-bit carry-less
/// product puts those bits in the high half, where they belong, so the result is still exact.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn product_x_pow(t: __m512i, k: __m512i) -> [__m512i; 2] {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let down = _mm512_sub_epi64(_mm512_set1_epi64(64), k);
        let carried_up = _mm512_srlv_epi64(_mm512_bslli_epi128::<8>(t), down);
        let shifted = _mm512_or_si512(_mm512_sllv_epi64(t, k), carried_up);
        let overflow = _mm512_srlv_epi64(_mm512_bsrli_epi128::<8>(t), down);
        [shifted, _mm512_clmulepi64_epi128::<0x00>(overflow, _mm512_set1_epi64(0x87))]
    }
}
