//! The AES-NI kernel's main path: data units of whole groups of eight blocks, streamed.
//!
//! Eight blocks are in flight, one per xmm register; each middle round loads its key once into a
//! register and runs all eight through it. The tweaks never occupy a vector register: general-purpose
//! registers double them (`t * x`: shift, add with carry, and a masked `0x87`), two groups ahead of
//! the group they belong to, into a ring of three groups' tweaks in memory, and the group XORs them in
//! from there. That takes the tweak arithmetic off the vector pipes, which on Zen 4 it otherwise
//! shares with AESENC (`docs/PERFORMANCE.md`), and leaves the vector work per block at two loads, a
//! store and three XORs beside the rounds. Two groups ahead, not one, because the tweak is stored as
//! two 64-bit halves and read as one 128-bit value: the load cannot take its data from the stores
//! while they are still in flight, and two groups give them time to retire.
//!
//! The stream runs across data units: when the group two ahead starts a unit, the generator starts
//! from that unit's encrypted first tweak instead of doubling, and those first tweaks are encrypted
//! four units at a time ahead of need ([`FirstTweaks`]).

use super::{encrypt_four_tweaks, encrypt_tweak, mul_x_pow};
use crate::span::Span;
use core::arch::asm;
use core::arch::x86_64::*;

/// Blocks per group.
const GROUP: usize = 8;

/// Group bytes.
pub(super) const GROUP_BYTES: usize = 16 * GROUP;

/// The tweaks of three consecutive groups, group `g`'s in slot `g % 3`, each a little-endian
/// 128-bit value as two 64-bit halves (the layout of an xmm load).
#[repr(C, align(64))]
struct Ring([[[u64; 2]; GROUP]; 3]);

impl Drop for Ring {
    fn drop(&mut self) {
        // Tweaks are what a unit's ciphertext is bound to; leave none on the stack. Plain stores
        // (whole registers, not `zeroize`'s byte-wise volatile ones, which cost small calls 4%), kept
        // by handing the ring to `black_box` after them.
        self.0 = [[[0; 2]; GROUP]; 3];
        core::hint::black_box(&mut self.0);
    }
}

/// Runs XTS over `buf`, whole data units of `unit_len` bytes (a non-zero multiple of
/// [`GROUP_BYTES`]), numbered from `first` by `step`. `rk` holds the round keys of the direction.
///
/// # Safety
/// The CPU must support AES-NI, PCLMULQDQ and SSE4.1; `unit_len` is a non-zero multiple of
/// [`GROUP_BYTES`] and `buf.len()` a multiple of `unit_len`.
#[inline(always)]
pub(super) unsafe fn units<const DEC: bool, const NR: usize>(
    rk: &[[u8; 16]; 15],
    tk: &[__m128i; 15],
    buf: Span<'_>,
    unit_len: usize,
    first: u128,
    step: u128,
) {
    debug_assert!(unit_len.is_multiple_of(GROUP_BYTES) && unit_len > 0 && buf.len().is_multiple_of(unit_len));
    let per_unit = unit_len / GROUP_BYTES;
    let total = buf.len() / GROUP_BYTES;
    // SAFETY: the caller guarantees the features.
    unsafe {
        let mut firsts = FirstTweaks::<NR>::new(tk, first, step, buf.len() / unit_len);
        let mut ring = Ring([[[0; 2]; GROUP]; 3]);
        // The first two groups' tweaks, made here as independent products of the unit's first tweak
        // (a chain of doublings would hold up the first group) and stored whole, so the first group's
        // loads take them straight from the stores; the asm of each group makes those two after it.
        let (mut base, mut power) = (_mm_setzero_si128(), 0);
        let mut t = base;
        for (g, slot) in ring.0.iter_mut().enumerate().take(2.min(total)) {
            if g % per_unit == 0 {
                (base, power) = (firsts.next(), 0);
            }
            for tweak in slot.iter_mut() {
                t = mul_x_pow(base, power);
                _mm_storeu_si128(tweak.as_mut_ptr().cast(), t);
                power += 1;
            }
        }
        let (mut lo, mut hi) = halves(t);
        let k0 = _mm_loadu_si128(rk[0].as_ptr().cast());
        let last = _mm_loadu_si128(rk[NR].as_ptr().cast());
        let (mut cur, mut ahead) = (0, 2);
        for (g, group) in buf.chunks_exact(GROUP_BYTES).enumerate() {
            let target = g + 2;
            let starts_unit = target < total && target % per_unit == 0;
            if starts_unit {
                (lo, hi) = halves(firsts.next());
            }
            let ctx = Group {
                src: group.src(),
                dst: group.dst(),
                cur: ring.0[cur].as_ptr().cast(),
                ahead: ring.0[ahead].as_mut_ptr().cast(),
                rk: rk.as_ptr().cast(),
            };
            (lo, hi) = group_asm::<DEC, NR>(&ctx, k0, last, lo, hi, starts_unit);
            cur = if cur == 2 { 0 } else { cur + 1 };
            ahead = if ahead == 2 { 0 } else { ahead + 1 };
        }
    }
}

/// Stores `(lo, hi)` as tweak `$j` of the group two ahead after doubling it: `t * x` is `t + t` across
/// both halves, with `0x87` XORed into the low byte when bit 127 falls off (`sar` makes the mask, so
/// no branch depends on the tweak).
macro_rules! double {
    ($j:literal) => {
        concat!(
            "mov {t}, {hi}\n",
            "sar {t}, 63\n",
            "and {t:e}, 0x87\n",
            "add {lo}, {lo}\n",
            "adc {hi}, {hi}\n",
            "xor {lo}, {t}\n",
            "mov [{ahead} + 16*",
            $j,
            "], {lo}\n",
            "mov [{ahead} + 16*",
            $j,
            " + 8], {hi}\n",
        )
    };
}

/// Tweak 0 of the group two ahead: `keep` stores `(lo, hi)` unchanged (a new unit's first tweak),
/// `double` its double.
macro_rules! first {
    (keep) => {
        "mov [{ahead}], {lo}\nmov [{ahead} + 8], {hi}\n"
    };
    (double) => {
        double!(0)
    };
}

#[rustfmt::skip]
/// Middle round `$r` (its key loaded once into xmm13) over the eight states xmm0-xmm7.
macro_rules! round {
    ($op:literal, $r:literal) => {
        concat!(
            "movdqu xmm13, [{rk} + 16*", $r, "]\n",
            $op, " xmm0, xmm13\n", $op, " xmm1, xmm13\n", $op, " xmm2, xmm13\n", $op, " xmm3, xmm13\n",
            $op, " xmm4, xmm13\n", $op, " xmm5, xmm13\n", $op, " xmm6, xmm13\n", $op, " xmm7, xmm13\n",
        )
    };
}

#[rustfmt::skip]
/// The middle rounds, tweaks 1-7 of the group two ahead made between the first eight of them (tweak
/// 0 comes before the rounds, in [`group`]): AES-128's nine, AES-256's thirteen.
macro_rules! rounds {
    ($op:literal, 10) => {
        concat!(
            round!($op, 1), double!(1), round!($op, 2), double!(2), round!($op, 3), double!(3),
            round!($op, 4), double!(4), round!($op, 5), double!(5), round!($op, 6), double!(6),
            round!($op, 7), double!(7), round!($op, 8), round!($op, 9),
        )
    };
    ($op:literal, 14) => {
        concat!(
            round!($op, 1), double!(1), round!($op, 2), double!(2), round!($op, 3), double!(3),
            round!($op, 4), double!(4), round!($op, 5), double!(5), round!($op, 6), double!(6),
            round!($op, 7), double!(7), round!($op, 8), round!($op, 9), round!($op, 10),
            round!($op, 11), round!($op, 12), round!($op, 13),
        )
    };
}

/// Block `$j`: loaded, XORed with its tweak and the first round key (xmm15).
macro_rules! whiten {
    ($j:literal) => {
        concat!(
            "movdqu xmm",
            $j,
            ", [{src} + 16*",
            $j,
            "]\n",
            "pxor xmm",
            $j,
            ", [{cur} + 16*",
            $j,
            "]\n",
            "pxor xmm",
            $j,
            ", xmm15\n",
        )
    };
}

/// Block `$j`: the last round (key in xmm14), XORed with its tweak, stored.
macro_rules! finish {
    ($last:literal, $j:literal) => {
        concat!(
            $last,
            " xmm",
            $j,
            ", xmm14\n",
            "pxor xmm",
            $j,
            ", [{cur} + 16*",
            $j,
            "]\n",
            "movdqu [{dst} + 16*",
            $j,
            "], xmm",
            $j,
            "\n",
        )
    };
}

/// A whole group: whitening, tweak 0 of the group two ahead (`$first`), the middle rounds with the
/// other seven tweaks between them, and the last round.
#[rustfmt::skip]
macro_rules! group {
    ($op:literal, $last:literal, $first:ident, $nr:tt) => {
        concat!(
            whiten!(0), whiten!(1), whiten!(2), whiten!(3), whiten!(4), whiten!(5), whiten!(6), whiten!(7),
            first!($first),
            rounds!($op, $nr),
            finish!($last, 0), finish!($last, 1), finish!($last, 2), finish!($last, 3),
            finish!($last, 4), finish!($last, 5), finish!($last, 6), finish!($last, 7),
        )
    };
}

/// The pointers one group's `asm!` block works through.
struct Group {
    /// The group's 128 input bytes.
    src: *const u8,
    /// Where its 128 output bytes go (may equal `src`: every load comes before any store).
    dst: *mut u8,
    /// Its eight tweaks.
    cur: *const u8,
    /// The ring slot the block fills with the tweaks of the group two ahead.
    ahead: *mut u8,
    /// The fifteen round keys of the direction.
    rk: *const u8,
}

/// One group's eight loads, rounds and stores, with the eight tweaks of the group two ahead made
/// between the rounds from `(lo, hi)` (the last tweak made, or with `start` the first tweak of a new
/// unit, stored as it is). Returns the last tweak made.
///
/// # Safety
/// The CPU must support AES-NI and SSE2; `src` and `dst` hold 128 bytes, `cur` and `ahead` 128 bytes
/// each (distinct), and `rk` fifteen round keys.
#[inline(always)]
unsafe fn group_asm<const DEC: bool, const NR: usize>(
    p: &Group,
    k0: __m128i,
    last: __m128i,
    mut lo: u64,
    mut hi: u64,
    start: bool,
) -> (u64, u64) {
    macro_rules! run {
        ($template:expr) => {
            asm!(
                $template,
                src = in(reg) p.src, dst = in(reg) p.dst, cur = in(reg) p.cur, ahead = in(reg) p.ahead,
                rk = in(reg) p.rk, lo = inout(reg) lo, hi = inout(reg) hi, t = out(reg) _,
                in("xmm15") k0, in("xmm14") last,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm13") _,
                options(nostack),
            )
        };
    }
    // SAFETY: the caller guarantees the features and the memory each template touches: 128 bytes at
    // `src`, `cur` (read) and `dst`, `ahead` (written), and the round keys at `rk`.
    unsafe {
        match (DEC, NR == 10, start) {
            (false, true, false) => run!(group!("aesenc", "aesenclast", double, 10)),
            (false, true, true) => run!(group!("aesenc", "aesenclast", keep, 10)),
            (false, false, false) => run!(group!("aesenc", "aesenclast", double, 14)),
            (false, false, true) => run!(group!("aesenc", "aesenclast", keep, 14)),
            (true, true, false) => run!(group!("aesdec", "aesdeclast", double, 10)),
            (true, true, true) => run!(group!("aesdec", "aesdeclast", keep, 10)),
            (true, false, false) => run!(group!("aesdec", "aesdeclast", double, 14)),
            (true, false, true) => run!(group!("aesdec", "aesdeclast", keep, 14)),
        }
    }
    (lo, hi)
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
    /// The CPU must support AES-NI and SSE4.1.
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
    /// The CPU must support AES-NI and SSE4.1.
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

/// A tweak's low and high 64-bit halves, for the general-purpose registers that double it.
///
/// # Safety
/// The CPU must support SSE4.1.
#[inline(always)]
unsafe fn halves(t: __m128i) -> (u64, u64) {
    // SAFETY: the caller guarantees SSE4.1.
    unsafe { (_mm_cvtsi128_si64(t) as u64, _mm_extract_epi64::<1>(t) as u64) }
}
