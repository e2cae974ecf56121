//! The XTS engine: a validated key on a chosen backend, over one data unit or many.
//!
//! A disk is a sequence of data units (sectors) of one size; unit `i` of a buffer that starts at unit
//! number `first` uses tweak number `first + i * step`. `step` is 1 for plain64 on the sector size; 8
//! reproduces LUKS2 on 4 KiB sectors, whose IVs count 512-byte units. Every check happens before the
//! first byte is touched, so a refused call leaves the buffer as it was.

use crate::error::{Error, Result};
use crate::key::{KeySize, XtsKey};
use rayon::prelude::*;
use sectorcrypt_simd::{Backend, EngineError, LayoutError, UnitLayout, XtsEngine};
use std::str::FromStr;

/// The environment variable that forces a backend wherever [`BackendChoice::from_env`] is used.
pub const BACKEND_ENV: &str = "SECTORCRYPT_BACKEND";

/// Smallest data unit accepted for a disk layout.
pub const MIN_DATA_UNIT: usize = 512;
/// Largest data unit accepted for a disk layout.
pub const MAX_DATA_UNIT: usize = 128 * 1024;
/// Largest single data unit: IEEE 1619 allows at most 2^20 blocks per unit.
pub const MAX_SINGLE_UNIT: usize = 16 << 20;
/// Buffers smaller than this stay on the calling thread even in the parallel calls: below it, the
/// cost of waking workers is larger than the work.
pub const PARALLEL_THRESHOLD: usize = 256 * 1024;

/// Which backend to run: the fastest the CPU has, or a named one (an error if the CPU lacks it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// The fastest backend this CPU supports.
    #[default]
    Auto,
    /// Exactly this backend.
    Named(Backend),
}

impl BackendChoice {
    /// The choice in `SECTORCRYPT_BACKEND`, or `Auto` when it is unset or empty.
    pub fn from_env() -> Result<BackendChoice> {
        match std::env::var(BACKEND_ENV) {
            Ok(name) if !name.trim().is_empty() => name.parse(),
            _ => Ok(BackendChoice::Auto),
        }
    }

    /// The backend this choice means on this CPU.
    pub fn resolve(self) -> Result<Backend> {
        match self {
            BackendChoice::Auto => Ok(Backend::fastest()),
            BackendChoice::Named(backend) if backend.is_supported() => Ok(backend),
            BackendChoice::Named(backend) => Err(Error::UnsupportedBackend(backend)),
        }
    }
}

impl FromStr for BackendChoice {
    type Err = Error;

    fn from_str(name: &str) -> Result<BackendChoice> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("auto") {
            return Ok(BackendChoice::Auto);
        }
        Backend::from_name(name)
            .map(BackendChoice::Named)
            .ok_or_else(|| Error::UnknownBackend(name.to_owned()))
    }
}

/// How a buffer maps onto a disk's data units: their size, the first unit's number and the step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataUnits {
    size: usize,
    first: u64,
    step: u64,
}

impl DataUnits {
    /// Units of `size` bytes (a power of two from 512 B to 128 KiB), numbered from 0 by 1.
    pub fn new(size: usize) -> Result<DataUnits> {
        if !size.is_power_of_two() || !(MIN_DATA_UNIT..=MAX_DATA_UNIT).contains(&size) {
            return Err(Error::DataUnitSize(size));
        }
        Ok(DataUnits { size, first: 0, step: 1 })
    }

    /// The same units, the buffer's first one numbered `first`.
    pub fn starting_at(self, first: u64) -> DataUnits {
        DataUnits { first, ..self }
    }

    /// The same units, each numbered `step` above the one before (at least 1).
    pub fn with_step(self, step: u64) -> Result<DataUnits> {
        if step == 0 {
            return Err(Error::ZeroTweakStep);
        }
        Ok(DataUnits { step, ..self })
    }

    /// Bytes per data unit.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Number of the first unit.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Increment between the numbers of neighbouring units.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Checks that `len` bytes (a buffer, or a whole file processed piece by piece) fit these units:
    /// at least 16 bytes, a last unit of at least 16 bytes, and unit numbers that stay within u64.
    pub fn check(&self, len: u64) -> Result<()> {
        if len < 16 {
            return Err(Error::DataUnitLength(len as usize));
        }
        self.layout().check(len).map_err(|e| self.error(e, len))
    }

    /// The library error for a layout the engine refused over `len` bytes.
    fn check_pair(&self, src: &[u8], dst: &[u8]) -> Result<()> {
        if src.len() != dst.len() {
            return Err(Error::LengthMismatch { src: src.len(), dst: dst.len() });
        }
        self.check(src.len() as u64)
    }

    fn error(&self, e: LayoutError, len: u64) -> Error {
        match e {
            LayoutError::UnitNumberOverflow => Error::UnitNumberOverflow,
            // `new` allows no unit below 512 bytes, so only the last unit can be too short.
            _ => Error::DataUnitLength((len % self.size as u64) as usize),
        }
    }

    fn layout(&self) -> UnitLayout {
        UnitLayout { unit_len: self.size, first: self.first, step: self.step }
    }
}

/// An XTS-AES key expanded for one backend. Cheap to share across threads (`Sync`); the expanded key
/// schedule is zeroized on drop.
#[derive(Debug)]
pub struct Xts {
    engine: XtsEngine,
    size: KeySize,
}

impl Xts {
    /// Expands `key` for the chosen backend.
    pub fn new(key: &XtsKey, choice: BackendChoice) -> Result<Xts> {
        let backend = choice.resolve()?;
        let (key1, key2) = key.halves();
        let engine = XtsEngine::new(backend, key1, key2).map_err(|e| match e {
            EngineError::Unsupported(b) => Error::UnsupportedBackend(b),
            _ => Error::KeyLength(key1.len() + key2.len()),
        })?;
        Ok(Xts { engine, size: key.size() })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    /// XTS-AES-128 or XTS-AES-256.
    pub fn key_size(&self) -> KeySize {
        self.size
    }

    /// Encrypts one data unit of 16 bytes to 16 MiB in place; a length that is not a multiple of 16
    /// uses ciphertext stealing.
    pub fn encrypt_unit(&self, unit: &mut [u8], number: u64) -> Result<()> {
        let layout = single_unit(unit.len(), number)?;
        self.engine.encrypt(unit, layout).map_err(|_| Error::DataUnitLength(unit.len()))
    }

    /// Decrypts one data unit in place (see [`encrypt_unit`](Self::encrypt_unit)).
    pub fn decrypt_unit(&self, unit: &mut [u8], number: u64) -> Result<()> {
        let layout = single_unit(unit.len(), number)?;
        self.engine.decrypt(unit, layout).map_err(|_| Error::DataUnitLength(unit.len()))
    }

    /// Encrypts one data unit in place with a raw 16-byte tweak value instead of a plain64 number (for
    /// other IV conventions, and for the NIST vectors that give tweaks as 128-bit strings).
    pub fn encrypt_unit_with_tweak(&self, unit: &mut [u8], tweak: [u8; 16]) -> Result<()> {
        single_unit(unit.len(), 0)?;
        self.engine.encrypt_with_tweak(unit, tweak).map_err(|_| Error::DataUnitLength(unit.len()))
    }

    /// Decrypts one data unit in place with a raw 16-byte tweak value.
    pub fn decrypt_unit_with_tweak(&self, unit: &mut [u8], tweak: [u8; 16]) -> Result<()> {
        single_unit(unit.len(), 0)?;
        self.engine.decrypt_with_tweak(unit, tweak).map_err(|_| Error::DataUnitLength(unit.len()))
    }

    /// Encrypts `buf` in place as consecutive data units on the calling thread. The last unit may be
    /// shorter than the others but must hold at least 16 bytes.
    pub fn encrypt_units(&self, buf: &mut [u8], units: DataUnits) -> Result<()> {
        units.check(buf.len() as u64)?;
        self.engine.encrypt(buf, units.layout()).map_err(|e| units.error(e, buf.len() as u64))
    }

    /// Decrypts `buf` in place as consecutive data units on the calling thread.
    pub fn decrypt_units(&self, buf: &mut [u8], units: DataUnits) -> Result<()> {
        units.check(buf.len() as u64)?;
        self.engine.decrypt(buf, units.layout()).map_err(|e| units.error(e, buf.len() as u64))
    }

    /// Encrypts `src` into `dst` (the same length) as consecutive data units on the calling thread,
    /// as fast as in place: the kernels read one buffer and write the other. On error `dst` is
    /// untouched.
    pub fn encrypt_units_to(&self, src: &[u8], dst: &mut [u8], units: DataUnits) -> Result<()> {
        units.check_pair(src, dst)?;
        self.engine.encrypt_to(src, dst, units.layout()).map_err(|e| units.error(e, src.len() as u64))
    }

    /// Decrypts `src` into `dst` (the same length); see [`encrypt_units_to`](Self::encrypt_units_to).
    pub fn decrypt_units_to(&self, src: &[u8], dst: &mut [u8], units: DataUnits) -> Result<()> {
        units.check_pair(src, dst)?;
        self.engine.decrypt_to(src, dst, units.layout()).map_err(|e| units.error(e, src.len() as u64))
    }

    /// As [`encrypt_units`](Self::encrypt_units), spread over the current rayon pool when `buf` has at
    /// least [`PARALLEL_THRESHOLD`] bytes. The output is byte-identical to the serial call.
    pub fn encrypt_units_parallel(&self, buf: &mut [u8], units: DataUnits) -> Result<()> {
        units.check(buf.len() as u64)?;
        self.parallel(buf, units, |engine, chunk, layout| engine.encrypt(chunk, layout))
    }

    /// As [`decrypt_units`](Self::decrypt_units), spread over the current rayon pool.
    pub fn decrypt_units_parallel(&self, buf: &mut [u8], units: DataUnits) -> Result<()> {
        units.check(buf.len() as u64)?;
        self.parallel(buf, units, |engine, chunk, layout| engine.decrypt(chunk, layout))
    }

    fn parallel(
        &self,
        buf: &mut [u8],
        units: DataUnits,
        run: impl Fn(&XtsEngine, &mut [u8], UnitLayout) -> Result<(), LayoutError> + Sync,
    ) -> Result<()> {
        if buf.len() < PARALLEL_THRESHOLD || rayon::current_num_threads() < 2 {
            let len = buf.len() as u64;
            return run(&self.engine, buf, units.layout()).map_err(|e| units.error(e, len));
        }
        // A few tasks per thread balance the load; none below 64 KiB, where a task costs more than
        // its share of the split.
        let per_task = buf.len() / (4 * rayon::current_num_threads());
        let units_per_task = (per_task.max(64 * 1024) / units.size).max(1);
        let chunk_len = units_per_task * units.size;
        buf.par_chunks_mut(chunk_len).enumerate().try_for_each(|(i, chunk)| {
            // `check` proved that every unit number in the buffer fits, so these cannot overflow.
            let offset = (i * units_per_task) as u64 * units.step;
            let layout = UnitLayout { first: units.first + offset, ..units.layout() };
            let len = chunk.len() as u64;
            run(&self.engine, chunk, layout).map_err(|e| units.error(e, len))
        })
    }
}

fn single_unit(len: usize, number: u64) -> Result<UnitLayout> {
    if !(16..=MAX_SINGLE_UNIT).contains(&len) {
        return Err(Error::DataUnitLength(len));
    }
    Ok(UnitLayout { unit_len: len, first: number, step: 1 })
}
