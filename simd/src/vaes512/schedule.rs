//! The scheduling strategies: how the units of one call go through groups (chained, streamed, in
//! pairs of units, or one at a time), chosen per call by [`units`].

#[allow(clippy::wildcard_imports)]
use super::*;

/// The kernel for one direction and key size. A function of its own for each, not inlined into
/// [`xts`]: in one function the four share a stack frame and a register allocation, which slowed
/// every one of them (`docs/PERFORMANCE.md`).
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[target_feature(
    enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,avx512vl,vaes,vpclmulqdq"
)]
#[inline(never)]
pub(super) unsafe fn units<const DEC: bool, const NR: usize>(
    keys: &RoundKeys,
    buf: Span<'_>,
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
        // time from `UnitFirstTweaks`, they would pay its branch per unit.
        if unit_len == UNIT_PAIR / 2 && rest.len() >= UNIT_PAIR {
            // A 512-byte unit alone leaves the AES pipes half idle while its group drains: pair units
            // up so two independent groups overlap. Unit A of a pair runs while unit B's tweak
            // registers are computed between its rounds, and unit B while the next pair's unit A's
            // are: the same overlap as within a long unit.
            let pair_count = rest.len() / UNIT_PAIR;
            let mut tw_a = [_mm512_setzero_si512(); WIDE];
            let mut tw_b = [_mm512_setzero_si512(); WIDE];
            first_tweaks(&rk, &mut tw_a, lane::<0>(tweaks));
            let mut quads = rest.chunks_exact(2 * UNIT_PAIR);
            let quad_count = quads.len();
            for (i, quad) in (&mut quads).enumerate() {
                number = number.wrapping_add(step.wrapping_mul(4));
                let ahead = encrypt_four_tweaks::<NR>(&tk512, number, step);
                let (first_pair, second_pair) = quad.split_at(UNIT_PAIR);
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
                let (pair, after) = rest.split_at(UNIT_PAIR);
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
        for four in rest.chunks(4 * unit_len) {
            number = number.wrapping_add(step.wrapping_mul(4));
            let ahead = encrypt_four_tweaks::<NR>(&tk512, number, step);
            let t0s = [lane::<0>(tweaks), lane::<1>(tweaks), lane::<2>(tweaks), lane::<3>(tweaks)];
            for (t0, unit) in t0s.into_iter().zip(four.chunks(unit_len)) {
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
pub(super) unsafe fn call_keys<const DEC: bool, const NR: usize>(
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
pub(super) unsafe fn one_unit_of<const DEC: bool, const NR: usize>(
    rk: &WideKeys,
    rk128: &[__m128i; 15],
    unit: Span<'_>,
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
pub(super) unsafe fn unit_pair<const DEC: bool, const NR: usize>(
    rk: &WideKeys,
    pair: Span<'_>,
    tw_a: &mut [__m512i; WIDE],
    tw_b: &mut [__m512i; WIDE],
    t_b: __m128i,
    next_a: Option<__m128i>,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let (a, b) = pair.split_at(UNIT_PAIR / 2);
        group_then_tweaks_of::<DEC, NR, WIDE>(rk, &a, tw_a, tw_b, t_b);
        match next_a {
            Some(t_a) => group_then_tweaks_of::<DEC, NR, WIDE>(rk, &b, tw_b, tw_a, t_a),
            None => crypt_group::<DEC, NR, WIDE>(rk, &b, tw_b),
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
pub(super) unsafe fn group_then_tweaks_of<const DEC: bool, const NR: usize, const W: usize>(
    rk: &WideKeys,
    group: &Span<'_>,
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

/// Whether AES-128 units of `unit_len` bytes, several per call, go through [`chained_units`]: whole
/// pairs of narrow groups, and longer than the 512-byte units that go through in pairs of units.
pub(super) fn chains<const NR: usize>(unit_len: usize) -> bool {
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
pub(super) unsafe fn chained_units<const DEC: bool, const NR: usize>(
    rk: &WideKeys,
    rk128: &[__m128i; 15],
    buf: Span<'_>,
    unit_len: usize,
    t0: __m128i,
    firsts: &mut UnitFirstTweaks<'_, NR>,
) {
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut tw = [[_mm512_setzero_si512(); NARROW]; 2];
        first_tweaks(rk, &mut tw[0], t0);
        let mut units = buf.chunks_exact(unit_len);
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
/// one per lane, a batch ahead of the units that use them, rather than one serial chain of AES rounds
/// per unit, which the units would wait for.
pub(super) struct UnitFirstTweaks<'a, const NR: usize> {
    /// The tweak key's round keys, broadcast to every lane.
    pub(super) keys: &'a [__m512i; 15],
    /// The number of the first unit in `ahead` (in `batch`, before the first call of `next`).
    pub(super) number: u128,
    pub(super) step: u128,
    /// The first tweaks of the four units from `unit - unit % 4` on.
    pub(super) batch: __m512i,
    /// The next four units' (once `unit` is past zero).
    pub(super) ahead: __m512i,
    /// The unit whose successor's first tweak [`Self::next`] returns next.
    pub(super) unit: usize,
}

impl<'a, const NR: usize> UnitFirstTweaks<'a, NR> {
    /// Starts at unit 0, numbered `number`, with the first tweaks of units 0-3 in `batch`.
    #[inline(always)]
    pub(super) fn new(keys: &'a [__m512i; 15], number: u128, step: u128, batch: __m512i) -> Self {
        Self { keys, number, step, batch, ahead: batch, unit: 0 }
    }

    /// Called once per unit, in order, from unit 0 on: the first tweak of the unit after it. At the
    /// start of each batch it encrypts the batch after.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and VAES.
    #[inline(always)]
    pub(super) unsafe fn next(&mut self) -> __m128i {
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
/// of whole wide groups, longer than the 512-byte units that go through in pairs of units. AES-128
/// units stay in [`chained_units`], which suits their shorter rounds (`docs/PERFORMANCE.md`).
pub(super) fn streams<const NR: usize>(unit_len: usize) -> bool {
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
/// its own: inlined into [`units`], it slowed the other layouts there (register allocation is per
/// function).
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[target_feature(
    enable = "aes,pclmulqdq,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512bw,avx512vl,vaes,vpclmulqdq"
)]
#[inline(never)]
pub(super) unsafe fn streamed_units<const DEC: bool, const NR: usize>(
    keys: &RoundKeys,
    buf: Span<'_>,
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
        let mut units = buf.chunks_exact(unit_len);
        let mut next_t0 = t0;
        for unit in &mut units {
            next_t0 = firsts.next();
            let mut groups = unit.chunks_exact(64 * WIDE);
            let last_group = groups.len() - 1;
            for (g, group) in (&mut groups).enumerate() {
                // As in `unit_body`: with the rounds this dense, the next lines would arrive late.
                let ahead = group.src().wrapping_add(PREFETCH_AHEAD);
                for line in 0..WIDE {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast());
                }
                // By index rather than by a branch, which the compiler turns into a select per key.
                let sets = last_keys.as_mut_ptr();
                // SAFETY: two different elements of `last_keys`.
                let (now, later) = (&*sets.add(usize::from(odd)), &mut *sets.add(usize::from(!odd)));
                // The last unit's last group makes registers no unit uses, or a short unit's: cheaper
                // than a branch to skip them.
                if g == last_group {
                    let next_t0_everywhere = _mm512_broadcast_i32x4(next_t0);
                    crypt_group_streamed::<DEC, NR>(
                        rk,
                        &group,
                        &mut tw,
                        now,
                        later,
                        #[inline(always)]
                        |j, tw| unit_tweak_register(rk, next_t0_everywhere, tw, j),
                    );
                } else {
                    crypt_group_streamed::<DEC, NR>(
                        rk,
                        &group,
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

/// One data unit, in pairs of groups of `W` registers, with first tweak `t0`.
///
/// # Safety
/// The CPU must support the features of [`xts`].
#[inline(always)]
pub(super) unsafe fn one_unit<const DEC: bool, const NR: usize, const W: usize>(
    rk: &WideKeys,
    rk128: &[__m128i; 15],
    unit: Span<'_>,
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
pub(super) unsafe fn unit_body<const DEC: bool, const NR: usize, const W: usize>(
    rk: &WideKeys,
    rk128: &[__m128i; 15],
    unit: Span<'_>,
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
        let mut pairs = body.chunks_exact(2 * group);
        for (i, pair) in (&mut pairs).enumerate() {
            // The rounds below keep the vector schedulers so full that, with the tweak work in among
            // them, the next pair's loads would reach memory late: ask for its lines now.
            let ahead = pair.src().wrapping_add(PREFETCH_AHEAD);
            for line in 0..2 * group / 64 {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * line).cast());
            }
            let (low, high) = pair.split_at(group);
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
                    &low,
                    tw_low,
                    tw_high,
                    #[inline(always)]
                    |j, _| half_step::<W>(rk, low_tweaks[j]),
                );
            } else {
                crypt_group_then::<DEC, NR, W>(
                    rk,
                    &low,
                    tw_low,
                    tw_high,
                    #[inline(always)]
                    |j, tw| pair_step::<W>(rk, tw[j]),
                );
            }
            if i + 1 == pair_count && !tail_follows {
                match next {
                    Some(t0) => group_then_tweaks_of::<DEC, NR, W>(rk, &high, tw_high, tw_low, t0),
                    None => crypt_group::<DEC, NR, W>(rk, &high, tw_high),
                }
            } else {
                crypt_group_then::<DEC, NR, W>(
                    rk,
                    &high,
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
        for (piece, tw_piece) in rest.chunks(group).zip(&*tw) {
            if piece.len() == group {
                crypt_group::<DEC, NR, W>(rk, &piece, tw_piece);
                continue;
            }
            let (src, dst) = (piece.src(), piece.dst());
            let mut masks = [0u64; W];
            let mut s = [_mm512_setzero_si512(); W];
            for (j, (mask, state)) in masks.iter_mut().zip(&mut s).enumerate() {
                let present = piece.len().saturating_sub(64 * j).min(64);
                *mask = if present == 0 { 0 } else { u64::MAX >> (64 - present) };
                // Masked-off bytes are neither read nor written, so a register past the end (mask 0)
                // touches no memory; `wrapping_add` keeps the pointer arithmetic itself defined.
                *state = _mm512_maskz_loadu_epi8(*mask, src.wrapping_add(64 * j).cast());
            }
            crypt::<DEC, NR, W>(rk, &mut s, tw_piece);
            for (j, (mask, state)) in masks.iter().zip(&s).enumerate() {
                _mm512_mask_storeu_epi8(dst.wrapping_add(64 * j).cast(), *mask, *state);
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
