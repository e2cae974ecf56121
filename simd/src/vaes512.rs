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

/// Registers per group: eight, thirty-two blocks, 512 bytes. In pairs of groups with AES-256, fifteen
/// round keys and two groups of states and their tweaks already overflow the thirty-two registers;
/// sixteen per group measured slower still.
const WIDE: usize = 8;
/// Registers per group for AES-128 units in pairs of groups: four. Eight measured 6-18% slower there:
/// eleven round keys and two groups of eight states and tweaks spill to the stack, while four fit,
/// and with rounds this short the core overlaps consecutive groups well enough to keep the AES pipes
/// full.
const NARROW: usize = 4;
/// Two 512-byte units, one group of eight registers each, go through together.
const UNIT_PAIR: usize = 2 * 64 * WIDE;
/// How far ahead of the group or pair of groups being encrypted the next lines are prefetched.
const PREFETCH_AHEAD: usize = 2048;

/// The round keys of one direction broadcast to all four lanes, and the form of the tweak registers.
///
/// With AES-128, tweak registers hold each tweak XORed with the last round key `K`: the last round
/// then takes them as its key as they are (`aesenclast(s, K ^ T)` is the last round followed by the
/// tweak's XOR), one XOR fewer per register of blocks. Making them costs nothing extra: the XOR of `K`
/// rides on the three-way XOR that ends every tweak multiply (with a constant per step size, made
/// with the key schedule: computed per call, they cost single 512-byte units 2-3%). A-B against plain
/// tweaks: AES-128 +0..+5% (4 KiB to 128 KiB units); AES-256 0% with narrow groups and 5-8% slower
/// with wide ones (one more constant where registers already run out), so AES-256 keeps plain tweaks.
struct WideKeys {
    rounds: [__m512i; 15],
    /// Whether tweak registers hold `T ^ K` rather than `T`.
    holds_last: bool,
    /// What the tweak registers hold beyond `T`: `K` or zero.
    offset: __m512i,
    /// The first round key, XORed with `offset`: the first XOR of a block, `P ^ T ^ key0`, is then
    /// `P ^ (T ^ offset) ^ (key0 ^ offset)`, still one three-way XOR.
    first: __m512i,
    /// `K * x^(8m) ^ K` for steps of `m` = 1, 2, 4 and 8 bytes: a register `T ^ K` stepped by `x^(8m)`
    /// is `T * x^(8m) ^ K * x^(8m)` (the product is linear), and XORing this in gives `T * x^(8m) ^ K`.
    step_fixes: [__m512i; 4],
}

impl WideKeys {
    /// Broadcasts `rk` (`NR + 1` round keys) and, when the tweak registers hold `T ^ K`, `last_steps`
    /// (see [`RoundKeys::last_key_steps`]).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[inline(always)]
    unsafe fn new<const NR: usize>(rk: &[__m128i; 15], last_steps: &[[u8; 16]; 4]) -> Self {
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
    unsafe fn stepped(&self, terms: [__m512i; 2], bytes: usize) -> __m512i {
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
    unsafe fn tweak_of_terms(&self, terms: [__m512i; 2]) -> __m512i {
        // SAFETY: the caller guarantees the features.
        unsafe { self.sum_plus(terms, self.offset) }
    }

    /// `a ^ b`, and `plus` with it when the registers hold `T ^ K` (with plain tweaks the XOR alone
    /// needs no register of zeros).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[inline(always)]
    unsafe fn sum_plus(&self, [a, b]: [__m512i; 2], plus: __m512i) -> __m512i {
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
    unsafe fn last_round<const NR: usize>(&self, tw: __m512i) -> __m512i {
        // SAFETY: the caller guarantees the features.
        unsafe { if self.holds_last { tw } else { _mm512_xor_si512(self.rounds[NR], tw) } }
    }

    /// The tweak in a 128-bit lane taken from a tweak register.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    #[inline(always)]
    unsafe fn plain_tweak(&self, lane: __m128i) -> __m128i {
        // SAFETY: the caller guarantees the features.
        unsafe { _mm_xor_si128(lane, _mm512_castsi512_si128(self.offset)) }
    }
}

/// Round keys broadcast to all four lanes.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
unsafe fn broadcast_keys(keys: &[__m128i; 15]) -> [__m512i; 15] {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut wide = [_mm512_setzero_si512(); 15];
        for (wide, key) in wide.iter_mut().zip(keys) {
            *wide = _mm512_broadcast_i32x4(*key);
        }
        wide
    }
}

/// The kernel for one direction and key size. A function of its own for each, not inlined into
/// [`xts`]: in one function the four share a stack frame and a register allocation, and apart they
/// measured up to 21% faster (AES-256 512-byte units in 64 KiB calls; one AES-128 unit per call 2-8%).
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[target_feature(
    enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,avx512vl,vaes,vpclmulqdq"
)]
#[inline(never)]
unsafe fn units<const DEC: bool, const NR: usize>(
    keys: &RoundKeys,
    buf: &mut [u8],
    unit_len: usize,
    first: u128,
    step: u128,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let unit_len = unit_len.max(16);
        if buf.len() > unit_len && streams::<NR>(unit_len) {
            streamed_units::<DEC, NR>(keys, buf, unit_len, first, step);
            return;
        }
        let (rk128, tk, rk) = call_keys::<DEC, NR>(keys);
        if buf.len() <= unit_len {
            // One unit: nothing to overlap its tweak's encryption with, and the 128-bit chain is the
            // shortest.
            let t0 = aesni::encrypt_tweak::<NR>(&tk, first);
            one_unit_of::<DEC, NR>(&rk, &rk128, buf, t0);
            return;
        }
        let tk512 = broadcast_keys(&tk);
        let mut number = first;
        let mut tweaks = encrypt_four_tweaks::<NR>(&tk512, number, step);
        let mut rest = buf;
        // The pairs keep their own batches, with each lane named where it is used: fed one unit at a
        // time from `UnitFirstTweaks`, with its branch per unit, 512-byte units measured 6-10% slower.
        if unit_len == UNIT_PAIR / 2 && rest.len() >= UNIT_PAIR {
            // A 512-byte unit alone leaves the AES pipes half idle while its group drains: pair units
            // up so two independent groups overlap. Unit A of a pair runs while unit B's tweak
            // registers are computed between its rounds, and unit B while the next pair's unit A's
            // are: the same overlap as within a long unit.
            let pair_count = rest.len() / UNIT_PAIR;
            let mut tw_a = [_mm512_setzero_si512(); WIDE];
            let mut tw_b = [_mm512_setzero_si512(); WIDE];
            first_tweaks(&rk, &mut tw_a, lane::<0>(tweaks));
            let mut quads = rest.chunks_exact_mut(2 * UNIT_PAIR);
            let quad_count = quads.len();
            for (i, quad) in (&mut quads).enumerate() {
                number = number.wrapping_add(step.wrapping_mul(4));
                let ahead = encrypt_four_tweaks::<NR>(&tk512, number, step);
                let (first_pair, second_pair) = quad.split_at_mut(UNIT_PAIR);
                unit_pair::<DEC, NR>(
                    &rk,
                    first_pair,
                    &mut tw_a,
                    &mut tw_b,
                    lane::<1>(tweaks),
                    Some(lane::<2>(tweaks)),
                );
                let more = i + 1 < quad_count || pair_count % 2 == 1;
                let next_a = if more { Some(lane::<0>(ahead)) } else { None };
                unit_pair::<DEC, NR>(&rk, second_pair, &mut tw_a, &mut tw_b, lane::<3>(tweaks), next_a);
                tweaks = ahead;
            }
            rest = quads.into_remainder();
            if pair_count % 2 == 1 {
                let (pair, after) = rest.split_at_mut(UNIT_PAIR);
                number = number.wrapping_add(step.wrapping_mul(2));
                unit_pair::<DEC, NR>(&rk, pair, &mut tw_a, &mut tw_b, lane::<1>(tweaks), None);
                // Lanes 2 and 3 move down to 0 and 1: the tweaks of the at most two units (under
                // 1 KiB) left after the pairs.
                tweaks = _mm512_alignr_epi64::<4>(tweaks, tweaks);
                rest = after;
            }
        }
        if chains::<NR>(unit_len) {
            let mut firsts = UnitFirstTweaks::<NR>::new(&tk512, number, step, tweaks);
            chained_units::<DEC, NR>(&rk, &rk128, rest, unit_len, lane::<0>(tweaks), &mut firsts);
            return;
        }
        for four in rest.chunks_mut(4 * unit_len) {
            number = number.wrapping_add(step.wrapping_mul(4));
            let ahead = encrypt_four_tweaks::<NR>(&tk512, number, step);
            let t0s = [lane::<0>(tweaks), lane::<1>(tweaks), lane::<2>(tweaks), lane::<3>(tweaks)];
            for (t0, unit) in t0s.into_iter().zip(four.chunks_mut(unit_len)) {
                one_unit_of::<DEC, NR>(&rk, &rk128, unit, t0);
            }
            tweaks = ahead;
        }
    }
}

/// The keys of one call: the round keys of the direction and of the tweak key on 128-bit registers,
/// and the direction's broadcast to all four lanes.
///
/// # Safety
/// The CPU must support AVX-512F and AES-NI.
#[inline(always)]
unsafe fn call_keys<const DEC: bool, const NR: usize>(
    keys: &RoundKeys,
) -> ([__m128i; 15], [__m128i; 15], WideKeys) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let rk128 = aesni::load_keys(if DEC { &keys.dec } else { &keys.enc });
        let rk = WideKeys::new::<NR>(&rk128, &keys.last_key_steps[usize::from(DEC)]);
        (rk128, aesni::load_keys(&keys.tweak), rk)
    }
}

/// One data unit, with as many registers per group as suit the key size (see [`NARROW`]); a unit of
/// one wide group or less takes the wide path, which runs it all at once.
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
unsafe fn one_unit_of<const DEC: bool, const NR: usize>(
    rk: &WideKeys,
    rk128: &[__m128i; 15],
    unit: &mut [u8],
    t0: __m128i,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        if NR == 10 && unit.len() > 64 * WIDE {
            one_unit::<DEC, NR, NARROW>(rk, rk128, unit, t0);
        } else {
            one_unit::<DEC, NR, WIDE>(rk, rk128, unit, t0);
        }
    }
}

/// Two 512-byte units, `tw_a` holding the first one's tweak registers: the second's are computed from
/// `t_b` between the first's rounds, and, when `next_a` is given, the next pair's first unit's from it
/// between the second's.
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
unsafe fn unit_pair<const DEC: bool, const NR: usize>(
    rk: &WideKeys,
    pair: &mut [u8],
    tw_a: &mut [__m512i; WIDE],
    tw_b: &mut [__m512i; WIDE],
    t_b: __m128i,
    next_a: Option<__m128i>,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let (a, b) = pair.split_at_mut(UNIT_PAIR / 2);
        group_then_tweaks_of::<DEC, NR, WIDE>(rk, a, tw_a, tw_b, t_b);
        match next_a {
            Some(t_a) => group_then_tweaks_of::<DEC, NR, WIDE>(rk, b, tw_b, tw_a, t_a),
            None => crypt_group::<DEC, NR, WIDE>(rk, b, tw_b),
        }
    }
}

/// A unit's last group of `W` registers (a whole 512-byte unit when `W` is [`WIDE`]) with tweak
/// registers `tw`, computing into `later`, between its rounds, the first tweak registers of the unit
/// whose first tweak is `t0`.
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
unsafe fn group_then_tweaks_of<const DEC: bool, const NR: usize, const W: usize>(
    rk: &WideKeys,
    group: &mut [u8],
    tw: &[__m512i; W],
    later: &mut [__m512i; W],
    t0: __m128i,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let first = _mm512_broadcast_i32x4(t0);
        crypt_group_then::<DEC, NR, W>(
            rk,
            group,
            tw,
            later,
            #[inline(always)]
            |j, tw| unit_tweak_register(rk, first, tw, j),
        );
    }
}

/// Register `j` of a unit's first tweak registers from `first` (its first tweak in every lane), given
/// registers `j - 2` and below in `tw`: the first two by bit shifts, every later one from the one two
/// before by a byte shift (`x^8`), which costs fewer instructions.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
unsafe fn unit_tweak_register<const W: usize>(
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
unsafe fn lane<const L: i32>(v: __m512i) -> __m128i {
    // SAFETY: the caller guarantees the features.
    unsafe { _mm512_extracti32x4_epi32::<L>(v) }
}

/// `AES_Key2` of the tweak values `number + i * step` in lane `i`, for `i` in 0..4.
///
/// # Safety
/// The CPU must support AVX-512F and VAES.
#[inline(always)]
unsafe fn encrypt_four_tweaks<const NR: usize>(tk: &[__m512i; 15], number: u128, step: u128) -> __m512i {
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
unsafe fn first_tweaks<const W: usize>(rk: &WideKeys, tw: &mut [__m512i; W], t0: __m128i) {
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
unsafe fn mul_x_bytes<const M: i32, const R: i32>(rk: &WideKeys, t: __m512i) -> __m512i {
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
unsafe fn product_x_bytes<const M: i32, const R: i32>(t: __m512i) -> [__m512i; 2] {
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
unsafe fn tweak_register(rk: &WideKeys, first: __m512i, k: usize) -> __m512i {
    let k = k as i64;
    // SAFETY: the caller guarantees the features.
    unsafe {
        let powers = _mm512_set_epi64(k + 3, k + 3, k + 2, k + 2, k + 1, k + 1, k, k);
        rk.tweak_of_terms(product_x_pow(first, powers))
    }
}

/// Whether AES-128 units of `unit_len` bytes, several per call, go through [`chained_units`]: whole
/// pairs of narrow groups, and longer than the 512-byte units that go through in pairs of units.
fn chains<const NR: usize>(unit_len: usize) -> bool {
    NR == 10 && unit_len > UNIT_PAIR / 2 && unit_len.is_multiple_of(128 * NARROW)
}

/// `buf` in units of `unit_len` bytes (see [`chains`]), the first with first tweak `t0`, the later
/// ones' from `firsts`. Each whole unit's last group computes the next unit's first tweak registers
/// between its rounds, so no unit waits for them at its start.
///
/// Groups are narrow, as for every AES-128 unit of more than one wide group (see [`NARROW`]). Used for
/// AES-128 only: AES-256 units go through [`streamed_units`].
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
unsafe fn chained_units<const DEC: bool, const NR: usize>(
    rk: &WideKeys,
    rk128: &[__m128i; 15],
    buf: &mut [u8],
    unit_len: usize,
    t0: __m128i,
    firsts: &mut UnitFirstTweaks<'_, NR>,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut tw = [[_mm512_setzero_si512(); NARROW]; 2];
        first_tweaks(rk, &mut tw[0], t0);
        let mut units = buf.chunks_exact_mut(unit_len);
        let count = units.len();
        let mut next_t0 = t0;
        for (i, unit) in (&mut units).enumerate() {
            next_t0 = firsts.next();
            let chain = if i + 1 < count { Some(next_t0) } else { None };
            unit_body::<DEC, NR, NARROW>(rk, rk128, unit, &mut tw, chain);
        }
        // A shorter unit at the end.
        let short = units.into_remainder();
        if !short.is_empty() {
            one_unit_of::<DEC, NR>(rk, rk128, short, next_t0);
        }
    }
}

/// The first tweaks of consecutive units (`AES_Key2` of their numbers), encrypted four units at a time,
/// one per lane, a batch ahead of the units that use them. One serial chain of AES rounds per unit,
/// even issued a unit ahead, measured 8-13% slower on 4 KiB units.
struct UnitFirstTweaks<'a, const NR: usize> {
    /// The tweak key's round keys, broadcast to every lane.
    keys: &'a [__m512i; 15],
    /// The number of the first unit in `ahead` (in `batch`, before the first call of `next`).
    number: u128,
    step: u128,
    /// The first tweaks of the four units from `unit - unit % 4` on.
    batch: __m512i,
    /// The next four units' (once `unit` is past zero).
    ahead: __m512i,
    /// The unit whose successor's first tweak [`Self::next`] returns next.
    unit: usize,
}

impl<'a, const NR: usize> UnitFirstTweaks<'a, NR> {
    /// Starts at unit 0, numbered `number`, with the first tweaks of units 0-3 in `batch`.
    #[inline(always)]
    fn new(keys: &'a [__m512i; 15], number: u128, step: u128, batch: __m512i) -> Self {
        Self { keys, number, step, batch, ahead: batch, unit: 0 }
    }

    /// Called once per unit, in order, from unit 0 on: the first tweak of the unit after it. At the
    /// start of each batch it encrypts the batch after.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and VAES.
    #[inline(always)]
    unsafe fn next(&mut self) -> __m128i {
        // SAFETY: the caller guarantees the features.
        unsafe {
            let i = self.unit;
            self.unit += 1;
            if i.is_multiple_of(4) {
                if i > 0 {
                    self.batch = self.ahead;
                }
                self.number = self.number.wrapping_add(self.step.wrapping_mul(4));
                self.ahead = encrypt_four_tweaks::<NR>(self.keys, self.number, self.step);
            }
            match i % 4 {
                0 => lane::<1>(self.batch),
                1 => lane::<2>(self.batch),
                2 => lane::<3>(self.batch),
                _ => lane::<0>(self.ahead),
            }
        }
    }
}

/// Whether AES-256 units of `unit_len` bytes, several per call, go through [`streamed_units`]: units
/// of whole wide groups, longer than the 512-byte units that go through in pairs of units (streamed,
/// those measured 2% slower). AES-128 units measured 1-2% slower streamed than in [`chained_units`].
fn streams<const NR: usize>(unit_len: usize) -> bool {
    NR == 14 && unit_len > 64 * WIDE && unit_len.is_multiple_of(64 * WIDE)
}

/// `buf` in units of `unit_len` bytes, whole wide groups each (see [`streams`]), numbered from `first`
/// by `step`, in groups of eight registers one after another.
///
/// Each group holds only its own tweak registers: between its rounds, register `j` is replaced by the
/// next group's (stepped by `x^(4W)`, or, in a unit's last group, the next unit's first), while the
/// last round's keys ([`WideKeys::last_round`]) wait in memory, written when each register is made
/// and read by the last round as its memory operand. Eight states, eight tweak registers and the
/// round keys then fit with a few round keys reloaded (pairs of wide groups need sixteen tweak
/// registers, and their spills cost more), and a unit needs no half-step at its start. A function of
/// its own: inlined into [`units`], it made the other layouts there up to 9% slower (register
/// allocation is per function). A-B against [`chained_units`] (pairs of narrow groups, which spilled
/// least), with the rounds in `asm!`: AES-256 1-16 KiB units in 64 KiB calls +4.7..+8.7%; AES-128
/// measured 1-2% slower streamed, so it keeps [`chained_units`].
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[target_feature(
    enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,avx512vl,vaes,vpclmulqdq"
)]
#[inline(never)]
unsafe fn streamed_units<const DEC: bool, const NR: usize>(
    keys: &RoundKeys,
    buf: &mut [u8],
    unit_len: usize,
    first: u128,
    step: u128,
) {
    debug_assert!(streams::<NR>(unit_len));
    // SAFETY: the caller guarantees the features.
    unsafe {
        let (rk128, tk, rk) = call_keys::<DEC, NR>(keys);
        let rk = &rk;
        let tk512 = broadcast_keys(&tk);
        let batch = encrypt_four_tweaks::<NR>(&tk512, first, step);
        let t0 = lane::<0>(batch);
        let mut firsts = UnitFirstTweaks::<NR>::new(&tk512, first, step, batch);
        // Two sets of last-round keys: the group running reads one while it writes the next group's.
        let mut last_keys = [[_mm512_setzero_si512(); WIDE]; 2];
        let mut tw = [_mm512_setzero_si512(); WIDE];
        let t0_everywhere = _mm512_broadcast_i32x4(t0);
        for j in 0..WIDE {
            let t = unit_tweak_register(rk, t0_everywhere, &tw, j);
            set_tweak_register::<NR>(rk, &mut tw, &mut last_keys[0], j, t);
        }
        let mut odd = false;
        let mut units = buf.chunks_exact_mut(unit_len);
        let mut next_t0 = t0;
        for unit in &mut units {
            next_t0 = firsts.next();
            let mut groups = unit.chunks_exact_mut(64 * WIDE);
            let last_group = groups.len() - 1;
            for (g, group) in (&mut groups).enumerate() {
                // As in `unit_body`: with the rounds this dense, the next lines would arrive late.
                let ahead = group.as_ptr().wrapping_add(PREFETCH_AHEAD);
                for line in 0..WIDE {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast());
                }
                // By index rather than by a branch, which the compiler turns into a select per key.
                let sets = last_keys.as_mut_ptr();
                // SAFETY: two different elements of `last_keys`.
                let (now, later) = (&*sets.add(usize::from(odd)), &mut *sets.add(usize::from(!odd)));
                // The last unit's last group makes registers no unit uses, or a short unit's: a
                // branch to skip that measured 1-2% slower on 4 KiB units.
                if g == last_group {
                    let next_t0_everywhere = _mm512_broadcast_i32x4(next_t0);
                    crypt_group_streamed::<DEC, NR>(
                        rk,
                        group,
                        &mut tw,
                        now,
                        later,
                        #[inline(always)]
                        |j, tw| unit_tweak_register(rk, next_t0_everywhere, tw, j),
                    );
                } else {
                    crypt_group_streamed::<DEC, NR>(
                        rk,
                        group,
                        &mut tw,
                        now,
                        later,
                        #[inline(always)]
                        |j, tw| half_step::<WIDE>(rk, tw[j]),
                    );
                }
                odd = !odd;
            }
        }
        // A shorter unit at the end.
        let short = units.into_remainder();
        if !short.is_empty() {
            one_unit_of::<DEC, NR>(rk, &rk128, short, next_t0);
        }
    }
}

/// Puts tweak register `t` in `tw[j]` and its last round's key in `last_keys[j]`, the latter through
/// a volatile write: left to itself the compiler keeps those keys in registers, where they spill.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
unsafe fn set_tweak_register<const NR: usize>(
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

/// One full group of [`WIDE`] registers with tweak registers `tw` and last-round keys `now`,
/// replacing `tw[j]` by `next(j, tw)` after round `j + 1` (with its last-round key in `later`).
///
/// # Safety
/// The CPU must support AVX-512F, VAES and VPCLMULQDQ.
#[inline(always)]
unsafe fn crypt_group_streamed<const DEC: bool, const NR: usize>(
    rk: &WideKeys,
    group: &mut [u8],
    tw: &mut [__m512i; WIDE],
    now: &[__m512i; WIDE],
    later: &mut [__m512i; WIDE],
    next: impl Fn(usize, &[__m512i; WIDE]) -> __m512i,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut s = load_states::<WIDE>(group);
        whiten(rk, &mut s, tw);
        crate::for_each_middle_round!(NR, |r| {
            // Register r - 1 is replaced after round r, once the one replaced after round r - 1 is
            // ready (see `round_of_eight`); the rounds after the eighth pin the last one again.
            let replaced = (r - 1).min(WIDE - 1);
            let ready = tw[(r + WIDE - 2) % WIDE];
            round_of_eight::<DEC>(&mut s, rk.rounds[r], &mut tw[replaced], ready);
            if r - 1 < WIDE {
                let t = next(r - 1, tw);
                set_tweak_register::<NR>(rk, tw, later, r - 1, t);
            }
        });
        last_round_of_eight::<DEC>(&mut s, now);
        store_states(group, &s);
    }
}

/// One `asm!` block applying the AES round instruction `$op` to the eight registers `$s`, each with
/// the key in register operand 8 (`reg`) or register `j` with the key at `[operand 8 + 64 * j]`
/// (`mem`), then the template line `$extra`, then the operands after the eight states.
#[rustfmt::skip]
macro_rules! eight_rounds {
    (reg, $op:literal, $extra:literal, [$($s:expr),+], $($operands:tt)*) => {
        core::arch::asm!(
            concat!($op, " {0}, {0}, {8}\n", $op, " {1}, {1}, {8}\n", $op, " {2}, {2}, {8}\n"),
            concat!($op, " {3}, {3}, {8}\n", $op, " {4}, {4}, {8}\n", $op, " {5}, {5}, {8}\n"),
            concat!($op, " {6}, {6}, {8}\n", $op, " {7}, {7}, {8}"),
            $extra,
            $(inout(zmm_reg) *$s,)+
            $($operands)*
        )
    };
    (mem, $op:literal, $extra:literal, [$($s:expr),+], $($operands:tt)*) => {
        core::arch::asm!(
            concat!($op, " {0}, {0}, zmmword ptr [{8}]\n", $op, " {1}, {1}, zmmword ptr [{8} + 64]\n"),
            concat!($op, " {2}, {2}, zmmword ptr [{8} + 128]\n", $op, " {3}, {3}, zmmword ptr [{8} + 192]\n"),
            concat!($op, " {4}, {4}, zmmword ptr [{8} + 256]\n", $op, " {5}, {5}, zmmword ptr [{8} + 320]\n"),
            concat!($op, " {6}, {6}, zmmword ptr [{8} + 384]\n", $op, " {7}, {7}, zmmword ptr [{8} + 448]"),
            $extra,
            $(inout(zmm_reg) *$s,)+
            $($operands)*
        )
    };
}

/// One middle round over eight registers of states with round key `key`, which also counts as
/// changing `replaced` and reading `ready` though it touches neither (no instruction is emitted for
/// them).
///
/// In assembly so that all eight go through each round together. Written with intrinsics, the
/// compiler's scheduler reordered the work in ways that depend on the build: without link-time
/// optimisation (as a dependent crate is usually built) it took two states at a time through all
/// fourteen rounds, which lowers register pressure but leaves too few independent rounds in flight
/// (4 KiB units at 65% of the ECB ceiling instead of 90%); with it, it moved every tweak register's
/// replacement in front of the first round. The two pins keep the replacement of register `j` between
/// rounds `j + 1` and `j + 2`, spread as the pipes want it: 6% faster than all eight at the start.
///
/// A helper with `#[target_feature]`, against the rule for helpers, because `asm!` takes 512-bit
/// registers only in a function that enables AVX-512F; every caller is inlined into a kernel that
/// enables a superset, so this is inlined too (the disassembly has no call to it).
///
/// # Safety
/// The CPU must support AVX-512F and VAES.
#[target_feature(enable = "avx512f,vaes")]
#[inline]
unsafe fn round_of_eight<const DEC: bool>(
    s: &mut [__m512i; WIDE],
    key: __m512i,
    replaced: &mut __m512i,
    ready: __m512i,
) {
    let [s0, s1, s2, s3, s4, s5, s6, s7] = s;
    // SAFETY: the caller guarantees the features; the instructions touch only the eight state
    // registers (the pins appear in a comment only).
    unsafe {
        if DEC {
            eight_rounds!(reg, "vaesdec", "/* pins: {9} {10} */", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(zmm_reg) key, inout(zmm_reg) *replaced, in(zmm_reg) ready,
                options(pure, nomem, nostack, preserves_flags));
        } else {
            eight_rounds!(reg, "vaesenc", "/* pins: {9} {10} */", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(zmm_reg) key, inout(zmm_reg) *replaced, in(zmm_reg) ready,
                options(pure, nomem, nostack, preserves_flags));
        }
    }
}

/// The last round over eight registers of states, register `j` with key `keys[j]`, each read as a
/// memory operand (see [`round_of_eight`]).
///
/// # Safety
/// The CPU must support AVX-512F and VAES.
#[target_feature(enable = "avx512f,vaes")]
#[inline]
unsafe fn last_round_of_eight<const DEC: bool>(s: &mut [__m512i; WIDE], keys: &[__m512i; WIDE]) {
    let [s0, s1, s2, s3, s4, s5, s6, s7] = s;
    let keys = keys.as_ptr();
    // SAFETY: the caller guarantees the features; the instructions read the eight keys of `keys` (a
    // reference, so valid and aligned) and touch only the eight state registers.
    unsafe {
        if DEC {
            eight_rounds!(mem, "vaesdeclast", "", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(reg) keys, options(pure, readonly, nostack, preserves_flags));
        } else {
            eight_rounds!(mem, "vaesenclast", "", [s0, s1, s2, s3, s4, s5, s6, s7],
                in(reg) keys, options(pure, readonly, nostack, preserves_flags));
        }
    }
}

/// One data unit, in pairs of groups of `W` registers, with first tweak `t0`.
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
unsafe fn one_unit<const DEC: bool, const NR: usize, const W: usize>(
    rk: &WideKeys,
    rk128: &[__m128i; 15],
    unit: &mut [u8],
    t0: __m128i,
) {
    // SAFETY: the caller guarantees the features; every load and store stays inside `unit` (see the
    // comments at each).
    unsafe {
        // Tweaks for the two groups of a pair; each register steps by a whole pair, x^(8W), at once.
        let mut tw = [[_mm512_setzero_si512(); W]; 2];
        first_tweaks(rk, &mut tw[0], t0);
        unit_body::<DEC, NR, W>(rk, rk128, unit, &mut tw, None);
    }
}

/// One data unit with its first tweak registers in `tw[0]`. Given `next`, the first tweak of a unit
/// that follows, and a unit of whole pairs of groups, its last group computes that unit's first tweak
/// registers into `tw[0]` between its rounds.
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
unsafe fn unit_body<const DEC: bool, const NR: usize, const W: usize>(
    rk: &WideKeys,
    rk128: &[__m128i; 15],
    unit: &mut [u8],
    tw: &mut [[__m512i; W]; 2],
    next: Option<__m128i>,
) {
    // SAFETY: the caller guarantees the features; every load and store stays inside `unit` (see the
    // comments at each).
    unsafe {
        let group = 64 * W;
        debug_assert!(next.is_none() || unit.len().is_multiple_of(2 * group));
        let (body, stolen) = aesni::split_for_stealing(unit);
        let body_len = body.len();
        let pair_count = body_len / (2 * group);
        let tail_follows = !body.len().is_multiple_of(2 * group) || !stolen.is_empty();
        let mut pairs = body.chunks_exact_mut(2 * group);
        for (i, pair) in (&mut pairs).enumerate() {
            // The rounds below keep the vector schedulers so full that, with the tweak work in among
            // them, the next pair's loads would reach memory late: ask for its lines now.
            let ahead = pair.as_ptr().wrapping_add(PREFETCH_AHEAD);
            for line in 0..2 * group / 64 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast());
            }
            let (low, high) = pair.split_at_mut(group);
            let [tw_low, tw_high] = &mut *tw;
            // Carry-less multiplies compete with the AES rounds for the same vector pipes, so each
            // half's tweak work runs between the other half's rounds, one register per round: the
            // low half computes the high half's tweaks (its own times x^(4W) in the first pair, else
            // the previous pair's times x^(8W)), the high half steps the low half's by x^(8W).
            // Nothing is stepped that no block will use.
            if i == 0 {
                let low_tweaks = *tw_low;
                crypt_group_then::<DEC, NR, W>(
                    rk,
                    low,
                    tw_low,
                    tw_high,
                    #[inline(always)]
                    |j, _| half_step::<W>(rk, low_tweaks[j]),
                );
            } else {
                crypt_group_then::<DEC, NR, W>(
                    rk,
                    low,
                    tw_low,
                    tw_high,
                    #[inline(always)]
                    |j, tw| pair_step::<W>(rk, tw[j]),
                );
            }
            if i + 1 == pair_count && !tail_follows {
                match next {
                    Some(t0) => group_then_tweaks_of::<DEC, NR, W>(rk, high, tw_high, tw_low, t0),
                    None => crypt_group::<DEC, NR, W>(rk, high, tw_high),
                }
            } else {
                crypt_group_then::<DEC, NR, W>(
                    rk,
                    high,
                    tw_high,
                    tw_low,
                    #[inline(always)]
                    |j, tw| pair_step::<W>(rk, tw[j]),
                );
            }
        }
        if pair_count == 0 && (body_len > group || (body_len == group && !stolen.is_empty())) {
            // A second group, or a stolen block after a whole first one, needs them.
            let [low, high] = &mut *tw;
            for (t, l) in high.iter_mut().zip(low.iter()) {
                *t = half_step::<W>(rk, *l);
            }
        } else if pair_count > 0 && tail_follows {
            for t in &mut tw[1] {
                *t = pair_step::<W>(rk, *t);
            }
        }
        // Fewer than 8W blocks remain. Each group-sized piece takes the next W tweak registers; a
        // short piece is one group whose loads and stores are byte-masked to the bytes that exist, so
        // all of its blocks are still in flight together.
        let rest = pairs.into_remainder();
        let done = rest.len() / 16;
        for (piece, tw_piece) in rest.chunks_mut(group).zip(&*tw) {
            if piece.len() == group {
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
            // done / 4 of the 2W (done < 8W).
            let mut lanes = [0u8; 64];
            _mm512_storeu_si512(lanes.as_mut_ptr().cast(), tw[(done / (4 * W)) % 2][(done / 4) % W]);
            let lane = 16 * (done % 4);
            let t = rk.plain_tweak(_mm_loadu_si128(lanes[lane..lane + 16].as_ptr().cast()));
            aesni::steal::<DEC, NR>(rk128, stolen, t);
        }
    }
}

/// Every lane `t * x^(4W)`: from one group's tweaks to the next group's.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
unsafe fn half_step<const W: usize>(rk: &WideKeys, t: __m512i) -> __m512i {
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
unsafe fn pair_step<const W: usize>(rk: &WideKeys, t: __m512i) -> __m512i {
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
unsafe fn mul_x64(rk: &WideKeys, t: __m512i) -> __m512i {
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
unsafe fn product_x64(t: __m512i) -> [__m512i; 2] {
    // SAFETY: the caller guarantees the features.
    unsafe {
        // Immediate 0x01: the high 64 bits of `t` times the low 64 bits of the constant.
        [_mm512_bslli_epi128::<8>(t), _mm512_clmulepi64_epi128::<0x01>(t, _mm512_set1_epi64(0x87))]
    }
}

/// The `N` registers of states in the first `64 * N` bytes of `group`.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
unsafe fn load_states<const N: usize>(group: &[u8]) -> [__m512i; N] {
    assert!(group.len() >= 64 * N);
    let p = group.as_ptr();
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

/// Writes the `N` registers of states `s` to the first `64 * N` bytes of `group`.
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
unsafe fn store_states<const N: usize>(group: &mut [u8], s: &[__m512i; N]) {
    assert!(group.len() >= 64 * N);
    let p = group.as_mut_ptr();
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
unsafe fn whiten<const N: usize>(rk: &WideKeys, s: &mut [__m512i; N], tw: &[__m512i; N]) {
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
unsafe fn crypt_group<const DEC: bool, const NR: usize, const N: usize>(
    rk: &WideKeys,
    group: &mut [u8],
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
unsafe fn crypt_group_then<const DEC: bool, const NR: usize, const W: usize>(
    rk: &WideKeys,
    group: &mut [u8],
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

/// Every lane `t * x^k` as two terms to XOR, with `k` per 64-bit half in `k` (both halves of a lane
/// equal, `0 <= k <= 64`); the reduction of [`aesni::mul_x_pow`], four lanes at once. For `k > 57`
/// the product of the overflow and 0x87 reaches past bit 63 of the low half; the 128-bit carry-less
/// product puts those bits in the high half, where they belong, so the result is still exact.
///
/// # Safety
/// The CPU must support AVX-512F and VPCLMULQDQ.
#[inline(always)]
unsafe fn product_x_pow(t: __m512i, k: __m512i) -> [__m512i; 2] {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let down = _mm512_sub_epi64(_mm512_set1_epi64(64), k);
        let carried_up = _mm512_srlv_epi64(_mm512_bslli_epi128::<8>(t), down);
        let shifted = _mm512_or_si512(_mm512_sllv_epi64(t, k), carried_up);
        let overflow = _mm512_srlv_epi64(_mm512_bsrli_epi128::<8>(t), down);
        [shifted, _mm512_clmulepi64_epi128::<0x00>(overflow, _mm512_set1_epi64(0x87))]
    }
}

/// The AES rounds over `W` registers of four blocks each, with the tweak XORs folded into the first
/// and last round keys.
///
/// # Safety
/// The CPU must support AVX-512F and VAES.
#[inline(always)]
unsafe fn crypt<const DEC: bool, const NR: usize, const W: usize>(
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
