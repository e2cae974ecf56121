//! sectorcrypt: XTS-AES encryption of virtual disks at the speed of the hardware.
//!
//! XTS-AES (IEEE 1619, NIST SP 800-38E) is the disk-encryption mode of dm-crypt/LUKS, BitLocker,
//! vSphere VM Encryption and vSAN: each data unit (sector) is encrypted on its own with a tweak derived
//! from its number, so any sector can be read or written without touching its neighbours, and the
//! ciphertext is exactly as long as the plaintext. What XTS does not give is integrity: a changed
//! ciphertext decrypts to garbage rather than to an error, and an attacker who sees the disk twice can
//! tell which sectors changed.
//!
//! ```
//! use sectorcrypt::{BackendChoice, DataUnits, Xts, XtsKey};
//!
//! # fn main() -> Result<(), sectorcrypt::Error> {
//! let key = XtsKey::from_bytes(&(0u8..64).collect::<Vec<_>>())?; // XTS-AES-256: Key1 || Key2
//! let xts = Xts::new(&key, BackendChoice::Auto)?;
//!
//! // Sectors 100..108 of a disk with 4 KiB data units.
//! let mut sectors = vec![0u8; 8 * 4096];
//! let units = DataUnits::new(4096)?.starting_at(100);
//! xts.encrypt_units(&mut sectors, units)?;
//! xts.decrypt_units(&mut sectors, units)?;
//! assert!(sectors.iter().all(|&b| b == 0));
//! # Ok(())
//! # }
//! ```

// Every unchecked operation lives in the `sectorcrypt-simd` crate; only the storage layer's io_uring
// module opts back in.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod disk;
mod error;
pub mod files;
pub mod hardening;
mod key;
pub mod keys;
pub mod luks;
pub mod storage;
pub mod trusted;
mod xts;

pub use error::{DiskFault, Error, ErrorKind, IoCause, ProviderFault, Result, StoreFault};
pub use key::{KeySize, XtsKey};
pub use sectorcrypt_simd::Backend;
pub use xts::{
    BACKEND_ENV, BackendChoice, DataUnits, MAX_DATA_UNIT, MAX_SINGLE_UNIT, MIN_DATA_UNIT, PARALLEL_THRESHOLD,
    Xts,
};
