//! XTS keys: validated once when built, zeroized when dropped, never printed.

use crate::error::{Error, Result};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The AES key size of each half of an XTS key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySize {
    /// XTS-AES-128: two 16-byte halves, 32 bytes in all.
    Aes128,
    /// XTS-AES-256: two 32-byte halves, 64 bytes in all.
    Aes256,
}

impl KeySize {
    /// The name used on the command line and in `info` output: `aes-256` or `aes-128`.
    pub const fn name(self) -> &'static str {
        match self {
            KeySize::Aes128 => "aes-128",
            KeySize::Aes256 => "aes-256",
        }
    }

    /// Bits of one AES key: 128 or 256.
    pub const fn bits(self) -> u32 {
        match self {
            KeySize::Aes128 => 128,
            KeySize::Aes256 => 256,
        }
    }

    /// Bytes of the whole XTS key (Key1 || Key2): 32 or 64.
    pub const fn xts_key_len(self) -> usize {
        match self {
            KeySize::Aes128 => 32,
            KeySize::Aes256 => 64,
        }
    }
}

/// An XTS key, Key1 (data) || Key2 (tweak), whose halves are known to differ.
///
/// `Debug` shows only the size. The bytes are zeroized on drop; `Clone` is deliberately absent so key
/// material is never copied by accident.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct XtsKey {
    bytes: [u8; 64],
    #[zeroize(skip)]
    size: KeySize,
}

impl core::fmt::Debug for XtsKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("XtsKey").field("size", &self.size).finish_non_exhaustive()
    }
}

impl XtsKey {
    /// Builds a key from 32 (XTS-AES-128) or 64 (XTS-AES-256) bytes. Refuses Key1 == Key2, as FIPS 140-3
    /// requires (the comparison runs in constant time).
    pub fn from_bytes(bytes: &[u8]) -> Result<XtsKey> {
        let key = Self::from_bytes_unchecked_halves(bytes)?;
        let (key1, key2) = key.halves();
        if bool::from(key1.ct_eq(key2)) {
            return Err(Error::EqualKeyHalves);
        }
        Ok(key)
    }

    /// Parses a key from 64 or 128 hexadecimal digits. The error never echoes the digits.
    pub fn from_hex(hex_digits: &str) -> Result<XtsKey> {
        let mut bytes = zeroize::Zeroizing::new([0u8; 64]);
        let digits = hex_digits.trim().as_bytes();
        let len = digits.len() / 2;
        if !digits.len().is_multiple_of(2) || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(Error::KeyEncoding(digits.len()));
        }
        if !(len == 32 || len == 64) {
            return Err(Error::KeyLength(len));
        }
        hex::decode_to_slice(digits, &mut bytes[..len]).map_err(|_| Error::KeyEncoding(digits.len()))?;
        Self::from_bytes(&bytes[..len])
    }

    /// Builds a key whose halves may be equal. Only for known-answer tests (IEEE 1619 vector 1 uses
    /// an all-zero key); a key with equal halves gives no XTS security against tweak manipulation.
    #[cfg(feature = "hazmat")]
    pub fn hazmat_from_bytes_allow_equal_halves(bytes: &[u8]) -> Result<XtsKey> {
        Self::from_bytes_unchecked_halves(bytes)
    }

    fn from_bytes_unchecked_halves(bytes: &[u8]) -> Result<XtsKey> {
        let size = match bytes.len() {
            32 => KeySize::Aes128,
            64 => KeySize::Aes256,
            other => return Err(Error::KeyLength(other)),
        };
        let mut key = XtsKey { bytes: [0; 64], size };
        key.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(key)
    }

    /// XTS-AES-128 or XTS-AES-256.
    pub fn size(&self) -> KeySize {
        self.size
    }

    /// Key1 || Key2, for wrapping under a key-encryption key.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.size.xts_key_len()]
    }

    /// Key1 (encrypts data) and Key2 (encrypts tweaks).
    pub(crate) fn halves(&self) -> (&[u8], &[u8]) {
        let half = self.size.xts_key_len() / 2;
        (&self.bytes[..half], &self.bytes[half..2 * half])
    }
}
