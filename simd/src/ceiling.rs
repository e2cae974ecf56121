//! In-register AES ceilings: how many AES rounds per second each instruction set's register width
//! delivers on this core, with nothing else in the way.
//!
//! [`run`] takes [`STATES`] independent registers through `iterations` AESENC (or AESDEC) rounds each, with the
//! round key in a register and no memory traffic: independent chains cover the instruction's latency,
//! so the rate is its throughput (AESENC per cycle times blocks per register). Twelve states cover a
//! latency of up to twelve cycles at one instruction per cycle, or six at two, which every x86 core
//! measured so far stays within. An AES-128 block takes ten such rounds and an AES-256 block fourteen
//! (the last round, AESENCLAST, costs the same as the others), so a kernel's ceiling in bytes per
//! second is `16 * rounds per second / rounds per block` ([`Ceiling::gbps`]).
//!
//! The caller times the calls (the bench owns the clock); this module only guarantees that the work
//! is done and not optimised away.

use crate::Backend;
use core::arch::x86_64::*;

/// Independent registers in flight.
pub const STATES: usize = 12;

/// A register width and the AES instructions that work on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// AESENC on 128-bit registers (AES-NI): one block per instruction.
    Xmm,
    /// VAESENC on 256-bit registers (VAES with AVX2): two blocks per instruction.
    Ymm,
    /// VAESENC on 512-bit registers (VAES with AVX-512): four blocks per instruction.
    Zmm,
}

impl Width {
    /// Every width, narrowest first.
    pub const ALL: [Width; 3] = [Width::Xmm, Width::Ymm, Width::Zmm];

    /// Register bits.
    pub const fn bits(self) -> u32 {
        match self {
            Width::Xmm => 128,
            Width::Ymm => 256,
            Width::Zmm => 512,
        }
    }

    /// AES blocks per register.
    pub const fn blocks(self) -> u64 {
        self.bits() as u64 / 128
    }

    /// The backend whose kernel runs on this width.
    pub const fn backend(self) -> Backend {
        match self {
            Width::Xmm => Backend::AesNi,
            Width::Ymm => Backend::Vaes256,
            Width::Zmm => Backend::Vaes512,
        }
    }

    /// The width a backend's kernel runs on (none for the portable one).
    pub fn of(backend: Backend) -> Option<Width> {
        Width::ALL.into_iter().find(|w| w.backend() == backend)
    }

    /// Block rounds (one AES round of one 16-byte block) per call of [`run`] with `iterations`.
    pub const fn block_rounds(self, iterations: u64) -> u64 {
        iterations * STATES as u64 * self.blocks()
    }
}

/// A measured rate of block rounds.
#[derive(Clone, Copy, Debug)]
pub struct Ceiling {
    /// The width measured.
    pub width: Width,
    /// AES block rounds per second.
    pub block_rounds_per_second: f64,
}

impl Ceiling {
    /// The rate in GB/s of a cipher that spends `rounds` rounds per block (10 for AES-128, 14 for
    /// AES-256) and nothing else.
    pub fn gbps(&self, rounds: u32) -> f64 {
        self.block_rounds_per_second * 16.0 / f64::from(rounds) / 1e9
    }
}

/// Runs `iterations` rounds (AESDEC if `decrypt`, else AESENC) on each of [`STATES`] registers of
/// `width`. `None` if this CPU lacks the width's instructions (the same features as its backend's
/// kernel).
pub fn run(width: Width, decrypt: bool, iterations: u64) -> Option<()> {
    if !width.backend().is_supported() {
        return None;
    }
    // SAFETY: the backend's feature set (checked above) includes every feature these functions enable.
    let sink: u64 = unsafe {
        match width {
            Width::Xmm if decrypt => xmm::<true>(iterations).iter().fold(0, |a, b| a ^ b),
            Width::Xmm => xmm::<false>(iterations).iter().fold(0, |a, b| a ^ b),
            Width::Ymm if decrypt => ymm::<true>(iterations).iter().fold(0, |a, b| a ^ b),
            Width::Ymm => ymm::<false>(iterations).iter().fold(0, |a, b| a ^ b),
            Width::Zmm if decrypt => zmm::<true>(iterations).iter().fold(0, |a, b| a ^ b),
            Width::Zmm => zmm::<false>(iterations).iter().fold(0, |a, b| a ^ b),
        }
    };
    core::hint::black_box(sink);
    Some(())
}

/// # Safety
/// The CPU must support AES-NI and SSE2.
#[target_feature(enable = "aes,sse2")]
unsafe fn xmm<const DEC: bool>(iterations: u64) -> [u64; 2] {
    let key = _mm_set1_epi32(core::hint::black_box(0x5a5a_5a5a));
    let mut s: [__m128i; STATES] = core::array::from_fn(|i| _mm_set1_epi32(i as i32));
    for _ in 0..iterations {
        for state in &mut s {
            *state = if DEC { _mm_aesdec_si128(*state, key) } else { _mm_aesenc_si128(*state, key) };
        }
    }
    let folded = s.iter().fold(_mm_setzero_si128(), |a, b| _mm_xor_si128(a, *b));
    let mut out = [0u64; 2];
    // SAFETY: `out` holds 16 bytes.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), folded) };
    out
}

/// # Safety
/// The CPU must support VAES and AVX2.
#[target_feature(enable = "aes,avx,avx2,vaes")]
unsafe fn ymm<const DEC: bool>(iterations: u64) -> [u64; 4] {
    let key = _mm256_set1_epi32(core::hint::black_box(0x5a5a_5a5a));
    let mut s: [__m256i; STATES] = core::array::from_fn(|i| _mm256_set1_epi32(i as i32));
    for _ in 0..iterations {
        for state in &mut s {
            *state = if DEC { _mm256_aesdec_epi128(*state, key) } else { _mm256_aesenc_epi128(*state, key) };
        }
    }
    let folded = s.iter().fold(_mm256_setzero_si256(), |a, b| _mm256_xor_si256(a, *b));
    let mut out = [0u64; 4];
    // SAFETY: `out` holds 32 bytes.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), folded) };
    out
}

/// # Safety
/// The CPU must support VAES and AVX-512F.
#[target_feature(enable = "aes,avx,avx2,avx512f,vaes")]
unsafe fn zmm<const DEC: bool>(iterations: u64) -> [u64; 8] {
    let key = _mm512_set1_epi32(core::hint::black_box(0x5a5a_5a5a));
    let mut s: [__m512i; STATES] = core::array::from_fn(|i| _mm512_set1_epi32(i as i32));
    for _ in 0..iterations {
        for state in &mut s {
            *state = if DEC { _mm512_aesdec_epi128(*state, key) } else { _mm512_aesenc_epi128(*state, key) };
        }
    }
    let folded = s.iter().fold(_mm512_setzero_si512(), |a, b| _mm512_xor_si512(a, *b));
    let mut out = [0u64; 8];
    // SAFETY: `out` holds 64 bytes.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), folded) };
    out
}
