//! The `asm!` layer: AES rounds of a group of eight registers written out in assembly, so the schedule
//! of rounds and tweak replacements does not depend on how the compiler builds the crate.

#[allow(clippy::wildcard_imports)]
use super::*;

/// One full group of [`WIDE`] registers with tweak registers `tw` and last-round keys `now`,
/// replacing `tw[j]` by `next(j, tw)` after round `j + 1` (with its last-round key in `later`).
///
/// # Safety
/// The CPU must support AVX-512F, VAES and VPCLMULQDQ.
#[inline(always)]
pub(super) unsafe fn crypt_group_streamed<const DEC: bool, const NR: usize>(
    rk: &WideKeys,
    group: &Span<'_>,
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
/// fourteen rounds, which lowers register pressure but leaves too few independent rounds in flight;
/// with it, it moved every tweak register's replacement in front of the first round. The two pins keep
/// the replacement of register `j` between rounds `j + 1` and `j + 2`, spread as the pipes want it
/// rather than all eight at the start (figures: `docs/PERFORMANCE.md`).
///
/// A helper with `#[target_feature]`, against the rule for helpers, because `asm!` takes 512-bit
/// registers only in a function that enables AVX-512F; every caller is inlined into a kernel that
/// enables a superset, so this is inlined too (the disassembly has no call to it).
///
/// # Safety
/// The CPU must support AVX-512F and VAES.
#[target_feature(enable = "avx512f,vaes")]
#[inline]
pub(super) unsafe fn round_of_eight<const DEC: bool>(
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
pub(super) unsafe fn last_round_of_eight<const DEC: bool>(s: &mut [__m512i; WIDE], keys: &[__m512i; WIDE]) {
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
