//! The engine's key schedules, all in one place, all zeroized on drop.
//!
//! The portable backend keeps the `aes` crate's own schedule (the crate zeroizes it on drop with its
//! `zeroize` feature). The x86 kernels share [`RoundKeys`]: Key1's encryption and decryption round keys
//! and Key2's encryption round keys, expanded with `AESKEYGENASSIST` (constant time, unlike a table
//! S-box) and turned into the Equivalent Inverse Cipher's keys with `AESIMC`.

use aes::cipher::KeyInit;
use aes::{Aes128, Aes256};
use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The key halves were not both 16 or both 32 bytes long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyHalfLengthError {
    /// Length of Key1 in bytes.
    pub key1: usize,
    /// Length of Key2 in bytes.
    pub key2: usize,
}

impl fmt::Display for KeyHalfLengthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XTS key halves must both be 16 or both 32 bytes, got {} and {}", self.key1, self.key2)
    }
}

/// Key1 and Key2, their lengths checked.
#[derive(Clone, Copy)]
pub(crate) enum KeyHalves<'a> {
    Aes128(&'a [u8; 16], &'a [u8; 16]),
    Aes256(&'a [u8; 32], &'a [u8; 32]),
}

impl<'a> KeyHalves<'a> {
    pub(crate) fn new(key1: &'a [u8], key2: &'a [u8]) -> Result<KeyHalves<'a>, KeyHalfLengthError> {
        if let (Ok(k1), Ok(k2)) = (key1.try_into(), key2.try_into()) {
            return Ok(KeyHalves::Aes128(k1, k2));
        }
        if let (Ok(k1), Ok(k2)) = (key1.try_into(), key2.try_into()) {
            return Ok(KeyHalves::Aes256(k1, k2));
        }
        Err(KeyHalfLengthError { key1: key1.len(), key2: key2.len() })
    }
}

/// Key1 and Key2 as `aes` crate ciphers.
#[allow(clippy::large_enum_variant, reason = "built once per engine and never moved on a hot path")]
pub(crate) enum PortableKeys {
    Aes128 { data: Aes128, tweak: Aes128 },
    Aes256 { data: Aes256, tweak: Aes256 },
}

impl PortableKeys {
    pub(crate) fn new(halves: KeyHalves<'_>) -> PortableKeys {
        match halves {
            KeyHalves::Aes128(k1, k2) => {
                PortableKeys::Aes128 { data: Aes128::new(k1.into()), tweak: Aes128::new(k2.into()) }
            }
            KeyHalves::Aes256(k1, k2) => {
                PortableKeys::Aes256 { data: Aes256::new(k1.into()), tweak: Aes256::new(k2.into()) }
            }
        }
    }
}

/// Round keys for the x86 kernels: 11 (AES-128) or 15 (AES-256) of each kind.
#[cfg(target_arch = "x86_64")]
#[derive(Zeroize, ZeroizeOnDrop)]
#[repr(C, align(64))]
pub(crate) struct RoundKeys {
    /// Key1's encryption round keys.
    pub(crate) enc: [[u8; 16]; 15],
    /// Key1's decryption round keys for `AESDEC`, in the order they are applied.
    pub(crate) dec: [[u8; 16]; 15],
    /// Key2's encryption round keys (tweak encryption).
    pub(crate) tweak: [[u8; 16]; 15],
    /// 10 or 14.
    pub(crate) rounds: usize,
    /// Per direction (encryption, decryption), `K * x^(8m) ^ K` for steps of `m` = 1, 2, 4 and 8 bytes,
    /// `K` the last round key and the product in the tweaks' field: the VAES-512 kernel's tweak
    /// registers hold `T ^ K`, and XORing one of these into such a register multiplied by `x^(8m)`
    /// keeps it in that form. Made here once rather than in every call.
    pub(crate) last_key_steps: [[[u8; 16]; 4]; 2],
}

#[cfg(target_arch = "x86_64")]
impl RoundKeys {
    /// Expands both halves with AES-NI, which `_cpu` proves the CPU has: without the proof there are
    /// no round keys at all, never an all-zero schedule.
    pub(crate) fn expand(halves: KeyHalves<'_>, _cpu: crate::cpu::AesNi) -> RoundKeys {
        let mut keys = RoundKeys {
            enc: [[0; 16]; 15],
            dec: [[0; 16]; 15],
            tweak: [[0; 16]; 15],
            rounds: 0,
            last_key_steps: [[[0; 16]; 4]; 2],
        };
        // SAFETY: `_cpu` exists only where AES-NI and SSE2 were detected.
        unsafe { x86::expand(halves, &mut keys) };
        let rounds = keys.rounds;
        for (steps, last) in keys.last_key_steps.iter_mut().zip([keys.enc[rounds], keys.dec[rounds]]) {
            let last = u128::from_le_bytes(last);
            for (step, bytes) in steps.iter_mut().zip([1, 2, 4, 8]) {
                // Doubling by doubling: `mul_x` masks the reduction in rather than branching on it, and
                // round keys are secret.
                let product = (0..8 * bytes).fold(last, |t, _| crate::gf128::mul_x(t));
                *step = (product ^ last).to_le_bytes();
            }
        }
        keys
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{KeyHalves, RoundKeys};
    use core::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AES-NI and SSE2.
    #[target_feature(enable = "aes,sse2")]
    pub(super) unsafe fn expand(halves: KeyHalves<'_>, out: &mut RoundKeys) {
        let mut enc = [_mm_setzero_si128(); 15];
        let mut tweak = [_mm_setzero_si128(); 15];
        let (key1, key2): (&[u8], &[u8]) = match halves {
            KeyHalves::Aes128(k1, k2) => (k1, k2),
            KeyHalves::Aes256(k1, k2) => (k1, k2),
        };
        // SAFETY: AES-NI and SSE2 are enabled on this function.
        let rounds = unsafe {
            expand_one(key1, &mut enc);
            expand_one(key2, &mut tweak)
        };
        out.rounds = rounds;
        let mut dec = [_mm_setzero_si128(); 15];
        dec[0] = enc[rounds];
        for round in 1..rounds {
            dec[round] = _mm_aesimc_si128(enc[rounds - round]);
        }
        dec[rounds] = enc[0];
        for (i, ((e, d), t)) in enc.iter().zip(&dec).zip(&tweak).enumerate() {
            // SAFETY: each destination is a 16-byte array, written unaligned.
            unsafe {
                _mm_storeu_si128(out.enc[i].as_mut_ptr().cast(), *e);
                _mm_storeu_si128(out.dec[i].as_mut_ptr().cast(), *d);
                _mm_storeu_si128(out.tweak[i].as_mut_ptr().cast(), *t);
            }
        }
    }

    /// Expands one AES key of 16 bytes (or else 32); returns the number of rounds.
    ///
    /// # Safety
    /// The CPU must support AES-NI and SSE2.
    #[inline(always)]
    unsafe fn expand_one(key: &[u8], rk: &mut [__m128i; 15]) -> usize {
        let load = |bytes: &[u8]| {
            let block: [u8; 16] = core::array::from_fn(|i| bytes.get(i).copied().unwrap_or(0));
            // SAFETY: reads the 16-byte local array.
            unsafe { _mm_loadu_si128(block.as_ptr().cast()) }
        };
        // SAFETY: the caller guarantees AES-NI and SSE2.
        unsafe {
            if key.len() == 16 {
                rk[0] = load(key);
                rk[1] = step128::<0x01>(rk[0]);
                rk[2] = step128::<0x02>(rk[1]);
                rk[3] = step128::<0x04>(rk[2]);
                rk[4] = step128::<0x08>(rk[3]);
                rk[5] = step128::<0x10>(rk[4]);
                rk[6] = step128::<0x20>(rk[5]);
                rk[7] = step128::<0x40>(rk[6]);
                rk[8] = step128::<0x80>(rk[7]);
                rk[9] = step128::<0x1b>(rk[8]);
                rk[10] = step128::<0x36>(rk[9]);
                10
            } else {
                rk[0] = load(key);
                rk[1] = load(key.get(16..).unwrap_or_default());
                (rk[2], rk[3]) = step256::<0x01>(rk[0], rk[1]);
                (rk[4], rk[5]) = step256::<0x02>(rk[2], rk[3]);
                (rk[6], rk[7]) = step256::<0x04>(rk[4], rk[5]);
                (rk[8], rk[9]) = step256::<0x08>(rk[6], rk[7]);
                (rk[10], rk[11]) = step256::<0x10>(rk[8], rk[9]);
                (rk[12], rk[13]) = step256::<0x20>(rk[10], rk[11]);
                rk[14] = step256::<0x40>(rk[12], rk[13]).0;
                14
            }
        }
    }

    /// `w ^ (w << 32) ^ (w << 64) ^ (w << 96)`: the running XOR of the key words in FIPS 197's expansion.
    ///
    /// # Safety
    /// The CPU must support SSE2.
    #[inline(always)]
    unsafe fn prefix_xor(w: __m128i) -> __m128i {
        // SAFETY: the caller guarantees SSE2.
        unsafe {
            let w = _mm_xor_si128(w, _mm_slli_si128::<4>(w));
            let w = _mm_xor_si128(w, _mm_slli_si128::<4>(w));
            _mm_xor_si128(w, _mm_slli_si128::<4>(w))
        }
    }

    /// # Safety
    /// The CPU must support AES-NI and SSE2.
    #[inline(always)]
    unsafe fn step128<const RCON: i32>(prev: __m128i) -> __m128i {
        // SAFETY: the caller guarantees AES-NI and SSE2.
        unsafe {
            let assist = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<RCON>(prev));
            _mm_xor_si128(prefix_xor(prev), assist)
        }
    }

    /// # Safety
    /// The CPU must support AES-NI and SSE2.
    #[inline(always)]
    unsafe fn step256<const RCON: i32>(even: __m128i, odd: __m128i) -> (__m128i, __m128i) {
        // SAFETY: the caller guarantees AES-NI and SSE2.
        unsafe {
            let assist = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<RCON>(odd));
            let next_even = _mm_xor_si128(prefix_xor(even), assist);
            // The odd words get SubWord without rotation and without a round constant.
            let assist = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(next_even));
            (next_even, _mm_xor_si128(prefix_xor(odd), assist))
        }
    }
}
