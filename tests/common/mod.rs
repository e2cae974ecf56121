//! Helpers shared by the integration tests.

#![allow(dead_code)]

use sectorcrypt::{Backend, BackendChoice, DataUnits, Xts, XtsKey};

/// A deterministic, non-repeating byte pattern (a xorshift stream).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A key of `len` bytes (32 or 64) with distinct halves.
pub fn key(len: usize, seed: u64) -> XtsKey {
    XtsKey::from_bytes(&pattern(len, seed)).expect("pattern halves differ")
}

/// How a test calls the engine.
#[derive(Clone, Copy, Debug)]
pub enum Call {
    /// One data unit with this number.
    Unit(u64),
    /// Consecutive units, serial.
    Units(DataUnits),
    /// Consecutive units through the rayon path.
    Parallel(DataUnits),
}

impl Call {
    pub fn encrypt(self, xts: &Xts, buf: &mut [u8]) -> sectorcrypt::Result<()> {
        match self {
            Call::Unit(n) => xts.encrypt_unit(buf, n),
            Call::Units(u) => xts.encrypt_units(buf, u),
            Call::Parallel(u) => xts.encrypt_units_parallel(buf, u),
        }
    }

    pub fn decrypt(self, xts: &Xts, buf: &mut [u8]) -> sectorcrypt::Result<()> {
        match self {
            Call::Unit(n) => xts.decrypt_unit(buf, n),
            Call::Units(u) => xts.decrypt_units(buf, u),
            Call::Parallel(u) => xts.decrypt_units_parallel(buf, u),
        }
    }
}

/// The one differential check every backend goes through: `call` on every supported backend must
/// produce exactly the portable backend's ciphertext (serial call), in place and (for consecutive units)
/// from a source into a destination, and decrypt back to the plaintext. Both key sizes.
pub fn assert_backends_agree(plaintext: &[u8], call: Call) {
    for key_len in [32, 64] {
        let key = key(key_len, plaintext.len() as u64 ^ 0x5eed);
        let portable = Xts::new(&key, BackendChoice::Named(Backend::Portable)).unwrap();
        let mut expected = plaintext.to_vec();
        let serial = match call {
            Call::Parallel(u) => Call::Units(u),
            other => other,
        };
        serial.encrypt(&portable, &mut expected).unwrap();
        assert_ne!(expected, plaintext, "ciphertext equals plaintext for {call:?}");
        for backend in Backend::supported() {
            let xts = Xts::new(&key, BackendChoice::Named(backend)).unwrap();
            let mut buf = plaintext.to_vec();
            call.encrypt(&xts, &mut buf).unwrap();
            if buf != expected {
                let at = buf.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(0);
                panic!(
                    "{backend} AES-{} {call:?} len {}: ciphertext differs from portable at byte {at} (block {})",
                    key_len * 4,
                    plaintext.len(),
                    at / 16
                );
            }
            call.decrypt(&xts, &mut buf).unwrap();
            assert!(
                buf == plaintext,
                "{backend} AES-{} {call:?} len {}: round trip failed",
                key_len * 4,
                plaintext.len()
            );
            // Out of place: the same bytes from the source into a destination that held other data.
            if let Call::Units(units) = call {
                let mut out = vec![0xa5; plaintext.len()];
                xts.encrypt_units_to(plaintext, &mut out, units).unwrap();
                assert!(
                    out == expected,
                    "{backend} AES-{} {call:?} len {}: encrypt_to differs",
                    key_len * 4,
                    plaintext.len()
                );
                let mut back = vec![0x5a; plaintext.len()];
                xts.decrypt_units_to(&out, &mut back, units).unwrap();
                assert!(
                    back == plaintext,
                    "{backend} AES-{} {call:?} len {}: decrypt_to differs",
                    key_len * 4,
                    plaintext.len()
                );
            }
        }
    }
}
