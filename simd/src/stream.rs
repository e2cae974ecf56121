//! The streamed path of the AES-NI and VAES-256 kernels: data units of whole groups, the tweaks made
//! by general-purpose registers four groups ahead of the group that uses them.
//!
//! A group is eight registers of blocks (eight blocks on AES-NI, sixteen on VAES-256), each middle
//! round's key loaded once and applied to all eight. On Zen 4 the two AES units need exactly eight
//! independent AESENC in flight (latency four, two per cycle), so every other vector instruction
//! beside the rounds can cost a round; the tweak arithmetic is the bulk of those, and PCLMULQDQ, the
//! usual way to step tweaks, even runs on the AES units (`docs/PERFORMANCE.md`). So the tweaks never
//! enter a vector register until the group XORs them in from memory:
//!
//! * general-purpose registers double the tweak (`t * x`: add with carry across the two 64-bit
//!   halves, and `0x87` masked in from the top bit, with no branch) once per block, in order,
//!   between the rounds of the group four before, and store it into a ring of eight groups' tweaks;
//! * four groups ahead, so a block of four groups makes the next block's: the ring is written as
//!   64-bit halves and read as 128- or 256-bit values, a load that cannot take its data from stores
//!   still in flight, and by the time a block loads its tweaks their stores are a block old;
//! * the stream runs across data units: when the group being made starts a unit, the generator
//!   starts from that unit's first tweak divided by `x` (so the doubling every block gets makes the
//!   first tweak itself), set between two `asm!` blocks. The first tweaks are encrypted four units at
//!   a time, before they are needed ([`FirstTweaks`]).
//!
//! Four groups go through one `asm!` block when a data unit is a whole number of four groups (every
//! disk layout's 4 KiB unit, and 512-byte units on AES-NI): the block makes the next block's four
//! groups, and a unit can start only at the first of them, so the block itself never checks. The loop's
//! own instructions then come once per four groups: on VAES-256 with AES-128 a branch per group inside
//! the block cost 4 points, and the loop's bookkeeping at one group per block more. Other unit sizes
//! go one group per block.

use crate::aesni::{encrypt_four_tweaks, encrypt_tweak, mul_x_pow};
use crate::span::Span;
use core::arch::x86_64::*;
use core::mem::MaybeUninit;

/// Groups in the ring: the four a block reads and the four it makes.
const RING: usize = 8;

/// How many groups ahead of the group that makes them the tweaks are made: a block of four makes
/// the next block's.
const AHEAD: usize = 4;

/// The most tweak bytes a group has (VAES-256: sixteen blocks).
const MAX_GROUP_TWEAK_BYTES: usize = 16 * 16;

/// The pointers one `asm!` block works through.
pub(crate) struct Pointers {
    /// The first group's input.
    pub(crate) src: *const u8,
    /// The first group's output (may equal `src`: each group loads all its blocks before it stores).
    pub(crate) dst: *mut u8,
    /// The first group's tweaks in the ring; the block's other groups' follow.
    pub(crate) cur: *mut u8,
    /// Where the tweaks of the group [`AHEAD`] after the first go; the block's other groups' follow.
    pub(crate) ahead: *mut u8,
    /// The fifteen round keys of the direction.
    pub(crate) rk: *const u8,
}

/// A register width's `asm!` blocks.
pub(crate) trait Groups {
    /// Blocks per group.
    const BLOCKS: usize;

    /// The backend whose kernel this is (for the tests that check which path a call took).
    #[cfg(test)]
    const BACKEND: crate::Backend;

    /// Four groups from `p.src` to `p.dst`, their tweaks at `p.cur`, making the tweaks of the four
    /// groups [`AHEAD`] after them at `p.ahead` by doubling `(lo, hi)` (the last tweak made) once per
    /// block. Returns the last tweak made.
    ///
    /// # Safety
    /// The CPU must support the width's kernel; the pointers hold what [`Pointers`] says for four
    /// groups.
    unsafe fn four<const DEC: bool, const NR: usize>(p: &Pointers, lo: u64, hi: u64) -> (u64, u64);

    /// As [`four`](Self::four), for one group.
    ///
    /// # Safety
    /// As [`four`](Self::four), for one group.
    unsafe fn one<const DEC: bool, const NR: usize>(p: &Pointers, lo: u64, hi: u64) -> (u64, u64);

    /// Stores one group's tweaks, `base * x^power` and on (`power + BLOCKS <= 57`), at `tweaks`, in
    /// whole registers of the width: the group's loads then take them straight from the stores.
    ///
    /// # Safety
    /// The CPU must support the width's kernel; `tweaks` holds `16 * BLOCKS` bytes.
    unsafe fn prime(tweaks: *mut u8, base: __m128i, power: i32);
}

/// The tweaks of [`RING`] groups, group `g`'s in slot `g % RING`, each a little-endian 128-bit value
/// as two 64-bit halves (the layout of a vector load).
#[repr(C, align(64))]
struct Ring {
    bytes: MaybeUninit<[u8; RING * MAX_GROUP_TWEAK_BYTES]>,
    /// How many bytes from the start the stream may write.
    written: usize,
}

impl Ring {
    /// A ring for `groups` groups of `group_tweak_bytes`.
    fn new(groups: usize, group_tweak_bytes: usize) -> Ring {
        Ring { bytes: MaybeUninit::uninit(), written: (groups + AHEAD).min(RING) * group_tweak_bytes }
    }

    /// Group `g`'s slot (its first block's tweak).
    fn slot(&mut self, g: usize, group_tweak_bytes: usize) -> *mut u8 {
        self.bytes.as_mut_ptr().cast::<u8>().wrapping_add((g % RING) * group_tweak_bytes)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Tweaks are what a unit's ciphertext is bound to; leave none on the stack. Only the slots
        // used, with plain stores (not `zeroize`'s byte-wise volatile ones, which cost small calls
        // several points), kept by handing the ring to `black_box` after them.
        let start = self.bytes.as_mut_ptr().cast::<u8>();
        // SAFETY: `written` bytes from the start are inside the ring.
        unsafe { core::ptr::write_bytes(start, 0, self.written) };
        core::hint::black_box(&mut self.bytes);
    }
}

/// After a round instruction in a width's `asm!` text: nothing (`-`), or tweak `$j` of the group being
/// made (at `$at`), by the width's own `double!`.
macro_rules! then {
    ($at:literal, -) => {
        ""
    };
    ($at:literal, $j:literal) => {
        double!($at, $j)
    };
}
pub(crate) use then;

/// Runs `$run!` on the width's `$block!` text for the direction `$dec`, the round count `$nr` (10 or
/// 14) and four groups or one (`$four`), with the width's encryption and decryption instructions.
macro_rules! for_variant {
    (
        $run:ident, $block:ident, $dec:expr, $nr:expr, $four:expr,
        [$enc:literal, $enclast:literal, $decr:literal, $declast:literal]
    ) => {
        match ($dec, $nr == 10, $four) {
            (false, true, true) => $run!($block!($enc, $enclast, 10, true)),
            (false, true, false) => $run!($block!($enc, $enclast, 10, false)),
            (false, false, true) => $run!($block!($enc, $enclast, 14, true)),
            (false, false, false) => $run!($block!($enc, $enclast, 14, false)),
            (true, true, true) => $run!($block!($decr, $declast, 10, true)),
            (true, true, false) => $run!($block!($decr, $declast, 10, false)),
            (true, false, true) => $run!($block!($decr, $declast, 14, true)),
            (true, false, false) => $run!($block!($decr, $declast, 14, false)),
        }
    };
}
pub(crate) use for_variant;

/// The fewest groups a call needs for the streamed path: below it, making the first groups' tweaks
/// before the first group costs more than the stream gains (`docs/PERFORMANCE.md`).
const MIN_GROUPS: usize = 16;

/// Runs XTS with the width `W` over the whole data units at the start of `buf` when the streamed path
/// applies (units of whole groups, a call of at least [`MIN_GROUPS`]), then `last` over what is left (a
/// short last unit, if any) with its unit number, and returns `None`. Otherwise returns `buf`
/// untouched, for the width's in-register path. Units of `unit_len` bytes are numbered from `first` by
/// `step`; `rk` holds the round keys of the direction.
///
/// # Safety
/// The CPU must support `W`'s kernel (which includes AES-NI, PCLMULQDQ and SSE4.1).
#[inline(always)]
pub(crate) unsafe fn whole_units<'a, W: Groups, const DEC: bool, const NR: usize>(
    rk: &[[u8; 16]; 15],
    tk: &[__m128i; 15],
    buf: Span<'a>,
    unit_len: usize,
    first: u128,
    step: u128,
    last: impl FnOnce(Span<'a>, u128),
) -> Option<Span<'a>> {
    let group_bytes = 16 * W::BLOCKS;
    if !unit_len.is_multiple_of(group_bytes) || buf.len() < unit_len || buf.len() < MIN_GROUPS * group_bytes {
        return Some(buf);
    }
    let whole = buf.len() - buf.len() % unit_len;
    let (streamed, rest) = buf.split_at(whole);
    // SAFETY: the caller guarantees the features; `unit_len` is a non-zero multiple of a group and
    // `streamed` a whole number of units.
    unsafe { units::<W, DEC, NR>(rk, tk, streamed, unit_len, first, step) };
    if !rest.is_empty() {
        last(rest, first.wrapping_add(step.wrapping_mul((whole / unit_len) as u128)));
    }
    None
}

/// Runs XTS over `buf`, whole data units of `unit_len` bytes (a non-zero multiple of a group), numbered
/// from `first` by `step`, with the width `W`. `rk` holds the round keys of the direction.
///
/// # Safety
/// The CPU must support `W`'s kernel (which includes AES-NI, PCLMULQDQ and SSE4.1); `unit_len` is a
/// non-zero multiple of `16 * W::BLOCKS` and `buf.len()` a multiple of `unit_len`.
#[inline(always)]
unsafe fn units<W: Groups, const DEC: bool, const NR: usize>(
    rk: &[[u8; 16]; 15],
    tk: &[__m128i; 15],
    buf: Span<'_>,
    unit_len: usize,
    first: u128,
    step: u128,
) {
    let group_bytes = 16 * W::BLOCKS;
    debug_assert!(unit_len.is_multiple_of(group_bytes) && unit_len > 0 && buf.len().is_multiple_of(unit_len));
    let per_unit = unit_len / group_bytes;
    let total = buf.len() / group_bytes;
    let starts_unit = |g: usize| g < total && g.is_multiple_of(per_unit);
    // SAFETY: the caller guarantees the features; every pointer handed to `W` is inside `buf`, the
    // or the ring, as `Pointers` requires (group `g`'s tweaks in slot `g % RING`, written before
    // they are read: the first `AHEAD` groups' here, the others by the block before).
    unsafe {
        let mut firsts = FirstTweaks::<NR>::new(tk, first, step, buf.len() / unit_len);
        let mut ring = Ring::new(total, group_bytes);
        // The first groups' tweaks, made here as independent products of the unit's first tweak (a
        // chain of doublings would hold up the first group).
        let (mut base, mut power) = (_mm_setzero_si128(), 0);
        for g in 0..AHEAD.min(total) {
            if starts_unit(g) {
                (base, power) = (firsts.next(), 0);
            } else if power + W::BLOCKS as i32 > 57 {
                // `mul_x_pow` reaches `x^56`; carry on from a new base.
                (base, power) = (mul_x_pow(base, power), 0);
            }
            W::prime(ring.slot(g, group_bytes), base, power);
            power += W::BLOCKS as i32;
        }
        // The generator carries on from the last tweak made.
        let t = mul_x_pow(base, power - 1);
        let (mut lo, mut hi) = (_mm_cvtsi128_si64(t) as u64, _mm_extract_epi64::<1>(t) as u64);
        // The first group made that starts a unit. Counted, not found by `%`: a division per group
        // here held up every block.
        let mut next_start = AHEAD.next_multiple_of(per_unit);
        let rk = rk.as_ptr().cast();
        #[cfg(test)]
        {
            use crate::reached::Path;
            let path = if per_unit.is_multiple_of(4) { Path::StreamOfFours } else { Path::StreamOfOnes };
            crate::reached::hit(W::BACKEND, path, NR);
        }
        if per_unit.is_multiple_of(4) {
            // Blocks of four: a block reads one half of the ring and fills the other, so the two
            // halves swap after each; a unit can start only at the first group a block makes.
            let mut p = Pointers {
                src: buf.src(),
                dst: buf.dst(),
                cur: ring.slot(0, group_bytes),
                ahead: ring.slot(AHEAD, group_bytes),
                rk,
            };
            for g in (0..total).step_by(4) {
                // When the first group this block makes starts a unit, the generator starts from that
                // unit's seed. Written out in both loops: a closure shared by the two kept the tweak
                // in memory across blocks, and 512-byte units ran at half speed.
                if g + AHEAD == next_start && next_start < total {
                    [lo, hi] = divide_by_x(firsts.next());
                    next_start += per_unit;
                }
                (lo, hi) = W::four::<DEC, NR>(&p, lo, hi);
                p.src = p.src.wrapping_add(4 * group_bytes);
                p.dst = p.dst.wrapping_add(4 * group_bytes);
                core::mem::swap(&mut p.cur, &mut p.ahead);
            }
        } else {
            for g in 0..total {
                if g + AHEAD == next_start && next_start < total {
                    [lo, hi] = divide_by_x(firsts.next());
                    next_start += per_unit;
                }
                let p = Pointers {
                    src: buf.src().add(g * group_bytes),
                    dst: buf.dst().add(g * group_bytes),
                    cur: ring.slot(g, group_bytes),
                    ahead: ring.slot(g + AHEAD, group_bytes),
                    rk,
                };
                (lo, hi) = W::one::<DEC, NR>(&p, lo, hi);
            }
        }
    }
}

/// `t / x` as two 64-bit halves: the value the doubling turns into `t`. Multiplying by `x` sets bit 0
/// exactly when bit 127 fell off (`0x87` is odd and the shift leaves bit 0 clear), so bit 0 says
/// whether to undo the fold before shifting back.
///
/// # Safety
/// The CPU must support SSE4.1.
#[inline(always)]
unsafe fn divide_by_x(t: __m128i) -> [u64; 2] {
    // SAFETY: the caller guarantees SSE4.1.
    let (lo, hi) = unsafe { (_mm_cvtsi128_si64(t) as u64, _mm_extract_epi64::<1>(t) as u64) };
    let folded = 0u64.wrapping_sub(lo & 1);
    let lo = lo ^ (folded & 0x87);
    [(lo >> 1) | (hi << 63), (hi >> 1) | (folded << 63)]
}

/// The units' encrypted first tweaks, in order, encrypted four at a time, the next four before they
/// are needed (each is a serial chain of ten or fourteen rounds).
struct FirstTweaks<'a, const NR: usize> {
    tk: &'a [__m128i; 15],
    step: u128,
    /// The unit number of `ahead[0]`.
    number: u128,
    batch: [__m128i; 4],
    ahead: [__m128i; 4],
    used: usize,
    /// Units whose first tweak is not yet in `batch` or `ahead`.
    left: usize,
}

impl<'a, const NR: usize> FirstTweaks<'a, NR> {
    /// # Safety
    /// The CPU must support AES-NI and SSE2.
    #[inline(always)]
    unsafe fn new(tk: &'a [__m128i; 15], first: u128, step: u128, units: usize) -> Self {
        // SAFETY: the caller guarantees the features.
        unsafe {
            let zero = [_mm_setzero_si128(); 4];
            if units == 1 {
                // One unit: one chain, not four.
                let batch = [encrypt_tweak::<NR>(tk, first), zero[1], zero[2], zero[3]];
                return FirstTweaks { tk, step, number: first, batch, ahead: zero, used: 0, left: 0 };
            }
            let number = first.wrapping_add(step.wrapping_mul(4));
            let batch = encrypt_four_tweaks::<NR>(tk, first, step);
            let left = units.saturating_sub(4);
            let ahead = if left > 0 { encrypt_four_tweaks::<NR>(tk, number, step) } else { zero };
            FirstTweaks { tk, step, number, batch, ahead, used: 0, left }
        }
    }

    /// The next unit's first tweak.
    ///
    /// # Safety
    /// The CPU must support AES-NI and SSE2.
    #[inline(always)]
    unsafe fn next(&mut self) -> __m128i {
        // SAFETY: the caller guarantees the features.
        unsafe {
            if self.used == 4 {
                self.batch = self.ahead;
                self.used = 0;
                self.left = self.left.saturating_sub(4);
                self.number = self.number.wrapping_add(self.step.wrapping_mul(4));
                if self.left > 0 {
                    self.ahead = encrypt_four_tweaks::<NR>(self.tk, self.number, self.step);
                }
            }
            self.used += 1;
            self.batch[self.used - 1]
        }
    }
}
