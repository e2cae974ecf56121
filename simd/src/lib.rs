//! XTS-AES kernels for sectorcrypt, behind one safe dispatch point.
//!
//! # The algorithm
//!
//! XTS (IEEE 1619, NIST SP 800-38E) encrypts a *data unit* (a disk sector) of `n >= 16` bytes with two
//! AES keys. Key2 encrypts the data-unit number (here *plain64*: the number as a little-endian u64,
//! zero-padded to 16 bytes) into the first tweak `T0`. Block `j` of the unit uses `Tj = T0 * x^j` in
//! GF(2^128), where the 16 tweak bytes are read as a little-endian 128-bit integer and reduced by
//! `x^128 + x^7 + x^2 + x + 1`, so `T * x` is a one-bit left shift with `0x87` folded back into the low
//! byte when bit 127 falls off. Each block is `C = AES_Key1(P ^ Tj) ^ Tj`.
//!
//! When `n` is not a multiple of 16, the last full block and the partial block share the work by
//! *ciphertext stealing*: the last full block is encrypted with its own tweak; its leading bytes become
//! the short final block, and its trailing bytes pad the partial plaintext into one more full block that
//! is encrypted with the following tweak and stored in the last full block's place. Decryption undoes
//! this with the two tweaks taken in the opposite order.
//!
//! Every block of a unit is independent once its tweak is known, so XTS is as parallel as ECB. The
//! kernels keep many blocks in flight, and the tweak arithmetic must stay out of the AES units' way:
//! VAES-512 jumps each register of four tweaks ahead by `x^k` with one carry-less multiply (`k` the
//! blocks in flight), while the AES-NI and VAES-256 kernels, whose narrower registers leave no room
//! for that beside the rounds, double the tweaks one by one in general-purpose registers, ahead of
//! the blocks that use them (`stream`).
//!
//! # Shape
//!
//! * [`Backend`] names an implementation; [`Backend::is_supported`] asks the CPU (cached).
//! * [`XtsEngine`] is built once from the two key halves and a backend. The backend is checked against
//!   the CPU and the key schedule is expanded at construction; the engine then encrypts and decrypts
//!   buffers of consecutive data units. Its one `match` is the only place the kernels are called.
//! * `portable` is built on the `aes` crate (constant time on every architecture); `aesni`, `vaes256` and
//!   `vaes512` are hand-written x86-64 kernels with identical signatures. Every `unsafe` block, every
//!   `#[target_feature]` and every `asm!` of the cipher lives in this crate.

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

/// Calls `$kernel::<DECRYPT, ROUNDS>($args)` with the direction and round count (10 or 14) known at
/// compile time, so each kernel is compiled once per combination with its loops fully unrolled.
macro_rules! for_direction_and_rounds {
    ($kernel:ident, $decrypt:expr, $rounds:expr, ($($arg:expr),*)) => {
        match ($decrypt, $rounds) {
            (false, 10) => $kernel::<false, 10>($($arg),*),
            (false, _) => $kernel::<false, 14>($($arg),*),
            (true, 10) => $kernel::<true, 10>($($arg),*),
            (true, _) => $kernel::<true, 14>($($arg),*),
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use for_direction_and_rounds;

/// Expands `$body` once for each middle round `$r = 1..NR` (`$rounds`, 10 or 14, known at compile
/// time), so every round is written out with its number a constant. As a loop with tweak work in its
/// body, the compiler kept it rolled up: an index register, a compare and a branch per round, and the
/// tweak registers the body touched by index kept on the stack.
macro_rules! for_each_middle_round {
    ($rounds:expr, |$r:ident| $body:block) => {{
        for_each_middle_round!(@each $r $body; 1 2 3 4 5 6 7 8 9);
        if $rounds > 10 {
            for_each_middle_round!(@each $r $body; 10 11 12 13);
        }
    }};
    (@each $r:ident $body:block; $($n:literal)*) => {
        $({
            let $r: usize = $n;
            $body
        })*
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use for_each_middle_round;

#[cfg(target_arch = "x86_64")]
pub mod ceiling;
mod choice;
mod gf128;
mod keys;
mod portable;
#[cfg(all(test, target_arch = "x86_64"))]
mod reached;
mod sealed;
#[cfg(target_arch = "x86_64")]
mod span;
#[cfg(target_arch = "x86_64")]
mod stream;

#[cfg(target_arch = "x86_64")]
mod aesni;
#[cfg(target_arch = "x86_64")]
mod vaes256;
#[cfg(target_arch = "x86_64")]
mod vaes512;

use core::fmt;

pub use keys::KeyHalfLengthError;
#[cfg(target_arch = "x86_64")]
use keys::RoundKeys;
use keys::{KeyHalves, PortableKeys};
use sealed::Sealed;

#[cfg(target_arch = "x86_64")]
mod cpu {
    // Every x86 kernel also uses AES-NI and PCLMULQDQ on 128-bit registers for tweak encryption and
    // for data-unit tails, so each feature set includes them.
    cpufeatures::new!(aesni, "aes", "pclmulqdq", "sse2", "ssse3", "sse4.1");
    cpufeatures::new!(
        vaes256,
        "aes",
        "pclmulqdq",
        "sse2",
        "ssse3",
        "sse4.1",
        "avx",
        "avx2",
        "bmi2",
        "vaes",
        "vpclmulqdq"
    );
    cpufeatures::new!(
        vaes512,
        "aes",
        "pclmulqdq",
        "sse2",
        "ssse3",
        "sse4.1",
        "avx",
        "avx2",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "vaes",
        "vpclmulqdq"
    );
    pub(crate) use {aesni::get as has_aesni, vaes256::get as has_vaes256, vaes512::get as has_vaes512};

    /// Proof that the CPU runs the AES-NI kernel: only [`AesNi::detect`] makes one, after CPUID said
    /// so, and a kernel variant of [`Kernel`](super::Kernel) cannot be built without its proof.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct AesNi(());

    /// Proof that the CPU runs the VAES-256 kernel (which includes AES-NI's features).
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Vaes256(());

    /// Proof that the CPU runs the VAES-512 kernel (which includes AES-NI's features).
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Vaes512(());

    impl AesNi {
        pub(crate) fn detect() -> Option<AesNi> {
            has_aesni().then_some(AesNi(()))
        }
    }

    impl Vaes256 {
        pub(crate) fn detect() -> Option<Vaes256> {
            has_vaes256().then_some(Vaes256(()))
        }

        /// Its feature set contains AES-NI's.
        pub(crate) fn aesni(self) -> AesNi {
            AesNi(())
        }
    }

    impl Vaes512 {
        pub(crate) fn detect() -> Option<Vaes512> {
            has_vaes512().then_some(Vaes512(()))
        }

        /// Its feature set contains AES-NI's.
        pub(crate) fn aesni(self) -> AesNi {
            AesNi(())
        }
    }
}

/// An implementation of the XTS kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Backend {
    /// The `aes` crate's block cipher with XTS around it in safe Rust; constant time, every architecture.
    Portable,
    /// AES-NI and PCLMULQDQ on 128-bit registers, eight blocks in flight.
    AesNi,
    /// VAES and VPCLMULQDQ on 256-bit registers (AVX2), sixteen blocks in flight.
    Vaes256,
    /// VAES and VPCLMULQDQ on 512-bit registers (AVX-512), thirty-two blocks in flight.
    Vaes512,
}

impl Backend {
    /// Every backend, slowest first.
    pub const ALL: [Backend; 4] = [Backend::Portable, Backend::AesNi, Backend::Vaes256, Backend::Vaes512];

    /// The name used on the command line and in `SECTORCRYPT_BACKEND`.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            Backend::AesNi => "aesni",
            Backend::Vaes256 => "vaes256",
            Backend::Vaes512 => "vaes512",
        }
    }

    /// The backend with this [`name`](Self::name), ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name().eq_ignore_ascii_case(name))
    }

    /// Whether this CPU (and OS) can run the backend. The CPUID probe runs once and is cached.
    pub fn is_supported(self) -> bool {
        match self {
            Backend::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Backend::AesNi => cpu::has_aesni(),
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes256 => cpu::has_vaes256(),
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes512 => cpu::has_vaes512(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The backends this CPU can run, slowest first.
    pub fn supported() -> impl Iterator<Item = Backend> {
        Backend::ALL.into_iter().filter(|b| b.is_supported())
    }

    /// The fastest backend this CPU can run: the widest, except that on a CPU with both VAES kernels
    /// the first call times them and keeps the faster (cached; see `docs/PERFORMANCE.md`, "`auto`").
    pub fn fastest() -> Backend {
        choice::fastest()
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an [`XtsEngine`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    /// The key halves are not both 16 or both 32 bytes long.
    KeyHalfLength(KeyHalfLengthError),
    /// The CPU cannot run the requested backend.
    Unsupported(Backend),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::KeyHalfLength(e) => e.fmt(f),
            EngineError::Unsupported(b) => write!(f, "this CPU cannot run the {b} backend"),
        }
    }
}

/// How a buffer is cut into data units: `unit_len` bytes each (the last one may be shorter, but holds
/// at least 16 bytes), the first numbered `first`, each next one `step` higher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitLayout {
    /// Bytes per data unit, at least 16.
    pub unit_len: usize,
    /// The data-unit number of the first unit.
    pub first: u64,
    /// How much the data-unit number grows from one unit to the next.
    pub step: u64,
}

/// Why a buffer does not fit a [`UnitLayout`]. The buffer is untouched when this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// `unit_len` is below 16 bytes.
    UnitTooShort,
    /// The buffer is not empty but its last data unit is shorter than one AES block.
    TailTooShort,
    /// The last data unit's number would pass `u64::MAX`.
    UnitNumberOverflow,
    /// The source and the destination of an out-of-place call differ in length.
    LengthMismatch,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutError::UnitTooShort => "a data unit must hold at least 16 bytes",
            LayoutError::TailTooShort => "the last data unit holds fewer than 16 bytes",
            LayoutError::UnitNumberOverflow => "the data-unit number would pass 2^64-1",
            LayoutError::LengthMismatch => "the source and the destination differ in length",
        })
    }
}

impl UnitLayout {
    /// Checks that `len` bytes (a buffer, or a whole file processed piece by piece) cut cleanly into
    /// data units whose numbers all fit in a u64.
    pub fn check(&self, len: u64) -> Result<(), LayoutError> {
        if self.unit_len < 16 {
            return Err(LayoutError::UnitTooShort);
        }
        if len == 0 {
            return Ok(());
        }
        let unit_len = self.unit_len as u64;
        let tail = len % unit_len;
        if tail != 0 && tail < 16 {
            return Err(LayoutError::TailTooShort);
        }
        (len.div_ceil(unit_len) - 1)
            .checked_mul(self.step)
            .and_then(|span| self.first.checked_add(span))
            .map(|_| ())
            .ok_or(LayoutError::UnitNumberOverflow)
    }
}

/// The expanded key schedule bound to the kernel that uses it.
///
/// Holding the backend, its key material and the proof that the CPU runs it in one variant makes a
/// mismatch unrepresentable, so the dispatch below needs neither a check nor an `unwrap`.
#[allow(clippy::large_enum_variant, reason = "built once per engine and never moved on a hot path")]
enum Kernel {
    Portable(Sealed<PortableKeys>),
    #[cfg(target_arch = "x86_64")]
    AesNi(Sealed<RoundKeys>, cpu::AesNi),
    #[cfg(target_arch = "x86_64")]
    Vaes256(Sealed<RoundKeys>, cpu::Vaes256),
    #[cfg(target_arch = "x86_64")]
    Vaes512(Sealed<RoundKeys>, cpu::Vaes512),
}

/// An XTS-AES key schedule and the backend that runs it. Key material is zeroized on drop.
pub struct XtsEngine {
    kernel: Kernel,
}

impl fmt::Debug for XtsEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XtsEngine").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Encrypt,
    Decrypt,
}

impl XtsEngine {
    /// Expands `key1` (data) and `key2` (tweak), both 16 bytes (XTS-AES-128) or both 32 bytes
    /// (XTS-AES-256), for `backend`. Fails if the CPU lacks the backend: there is no silent fallback.
    ///
    /// This layer does not refuse `key1 == key2`; that policy belongs to the caller's key type.
    pub fn new(backend: Backend, key1: &[u8], key2: &[u8]) -> Result<XtsEngine, EngineError> {
        let halves = KeyHalves::new(key1, key2).map_err(EngineError::KeyHalfLength)?;
        let unsupported = EngineError::Unsupported(backend);
        let kernel = match backend {
            Backend::Portable => Kernel::Portable(Sealed::new(PortableKeys::new(halves))),
            #[cfg(target_arch = "x86_64")]
            Backend::AesNi => {
                let cpu = cpu::AesNi::detect().ok_or(unsupported)?;
                Kernel::AesNi(Sealed::new(RoundKeys::expand(halves, cpu)), cpu)
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes256 => {
                let cpu = cpu::Vaes256::detect().ok_or(unsupported)?;
                Kernel::Vaes256(Sealed::new(RoundKeys::expand(halves, cpu.aesni())), cpu)
            }
            #[cfg(target_arch = "x86_64")]
            Backend::Vaes512 => {
                let cpu = cpu::Vaes512::detect().ok_or(unsupported)?;
                Kernel::Vaes512(Sealed::new(RoundKeys::expand(halves, cpu.aesni())), cpu)
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => return Err(unsupported),
        };
        Ok(XtsEngine { kernel })
    }

    /// The backend this engine runs on.
    pub fn backend(&self) -> Backend {
        match self.kernel {
            Kernel::Portable(_) => Backend::Portable,
            #[cfg(target_arch = "x86_64")]
            Kernel::AesNi(..) => Backend::AesNi,
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes256(..) => Backend::Vaes256,
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes512(..) => Backend::Vaes512,
        }
    }

    /// Encrypts `buf` in place as consecutive data units. On error `buf` is untouched.
    pub fn encrypt(&self, buf: &mut [u8], layout: UnitLayout) -> Result<(), LayoutError> {
        self.run(Direction::Encrypt, None, buf, layout)
    }

    /// Decrypts `buf` in place as consecutive data units. On error `buf` is untouched.
    pub fn decrypt(&self, buf: &mut [u8], layout: UnitLayout) -> Result<(), LayoutError> {
        self.run(Direction::Decrypt, None, buf, layout)
    }

    /// Encrypts `src` into `dst` (of the same length) as consecutive data units, at the speed of
    /// [`encrypt`](Self::encrypt): the kernels read one buffer and write the other, with no copy. On
    /// error `dst` is untouched.
    pub fn encrypt_to(&self, src: &[u8], dst: &mut [u8], layout: UnitLayout) -> Result<(), LayoutError> {
        self.run(Direction::Encrypt, Some(src), dst, layout)
    }

    /// Decrypts `src` into `dst` (of the same length); see [`encrypt_to`](Self::encrypt_to).
    pub fn decrypt_to(&self, src: &[u8], dst: &mut [u8], layout: UnitLayout) -> Result<(), LayoutError> {
        self.run(Direction::Decrypt, Some(src), dst, layout)
    }

    /// Encrypts one data unit of at least 16 bytes in place with a raw 128-bit tweak value (the
    /// 16 tweak bytes before encryption under Key2, read little-endian). Disk layouts use
    /// [`encrypt`](Self::encrypt) with plain64 numbers; this is for other tweak conventions and for
    /// known-answer tests that give the tweak as 16 bytes.
    pub fn encrypt_with_tweak(&self, unit: &mut [u8], tweak: [u8; 16]) -> Result<(), LayoutError> {
        self.run_unit(Direction::Encrypt, unit, tweak)
    }

    /// Decrypts one data unit in place with a raw 128-bit tweak value; see
    /// [`encrypt_with_tweak`](Self::encrypt_with_tweak).
    pub fn decrypt_with_tweak(&self, unit: &mut [u8], tweak: [u8; 16]) -> Result<(), LayoutError> {
        self.run_unit(Direction::Decrypt, unit, tweak)
    }

    fn run(
        &self,
        direction: Direction,
        src: Option<&[u8]>,
        dst: &mut [u8],
        layout: UnitLayout,
    ) -> Result<(), LayoutError> {
        if src.is_some_and(|src| src.len() != dst.len()) {
            return Err(LayoutError::LengthMismatch);
        }
        layout.check(dst.len() as u64)?;
        let UnitLayout { unit_len, first, step } = layout;
        self.dispatch(direction, src, dst, unit_len, first.into(), step.into());
        Ok(())
    }

    fn run_unit(&self, direction: Direction, unit: &mut [u8], tweak: [u8; 16]) -> Result<(), LayoutError> {
        if unit.len() < 16 {
            return Err(LayoutError::UnitTooShort);
        }
        self.dispatch(direction, None, unit, unit.len(), u128::from_le_bytes(tweak), 0);
        Ok(())
    }

    /// The one place the kernels are called. `dst` (transformed in place, or written from `src` of the
    /// same length) is cut into units of `unit_len` bytes whose tweak values are `first`,
    /// `first + step`, ... (wrapping; the callers above rule overflow out).
    fn dispatch(
        &self,
        direction: Direction,
        src: Option<&[u8]>,
        dst: &mut [u8],
        unit_len: usize,
        first: u128,
        step: u128,
    ) {
        let decrypt = direction == Direction::Decrypt;
        #[cfg(target_arch = "x86_64")]
        let span = match src {
            Some(src) => span::Span::copy(src, dst),
            None => span::Span::in_place(dst),
        };
        match &self.kernel {
            Kernel::Portable(keys) => {
                // The portable kernel is far from memory speed, so a copy first costs it nothing
                // measurable.
                if let Some(src) = src {
                    dst.copy_from_slice(src);
                }
                portable::xts(keys, decrypt, dst, unit_len, first, step)
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::AesNi(keys, _cpu) => {
                // SAFETY: `_cpu` proves the CPU has every feature of the AES-NI kernel.
                unsafe { aesni::xts(keys, decrypt, span, unit_len, first, step) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes256(keys, _cpu) => {
                // SAFETY: `_cpu` proves the CPU has every feature of the VAES-256 kernel.
                unsafe { vaes256::xts(keys, decrypt, span, unit_len, first, step) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes512(keys, _cpu) => {
                // SAFETY: `_cpu` proves the CPU has every feature of the VAES-512 kernel.
                unsafe { vaes512::xts(keys, decrypt, span, unit_len, first, step) }
            }
        }
    }
}

#[cfg(test)]
mod tests;
