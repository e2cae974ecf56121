//! Arithmetic in GF(2^128) as XTS uses it, shared by the portable kernel and the key schedule.
//!
//! The 16 tweak bytes are read as a little-endian 128-bit integer; multiplying by `x` shifts it left by
//! one bit and, when bit 127 falls off, folds `x^128 = x^7 + x^2 + x + 1` (`0x87`) back into the low
//! byte.

/// `t * x` in GF(2^128), XTS bit order, without a secret-dependent branch (round keys pass through
/// here too).
#[inline(always)]
pub(crate) fn mul_x(t: u128) -> u128 {
    let carry = 0u128.wrapping_sub(t >> 127) & 0x87;
    (t << 1) ^ carry
}
