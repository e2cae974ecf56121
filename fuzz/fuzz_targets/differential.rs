//! Any key, length and unit number: every backend produces the portable backend's ciphertext, and
//! both match the independent `xts-mode` crate. The data is the input repeated (up to 32 times, by the
//! shape byte), so short runs reach the lengths of the kernels' streamed paths (2 and 4 KiB and up).

#![no_main]

use aes::cipher::KeyInit;
use libfuzzer_sys::fuzz_target;
use sectorcrypt::{Backend, BackendChoice, Xts, XtsKey};

fn reference(key: &[u8], data: &mut [u8], number: u64) {
    let half = key.len() / 2;
    let tweak = xts_mode::get_tweak_default(number.into());
    if half == 16 {
        let c1 = aes::Aes128::new_from_slice(&key[..half]).unwrap();
        let c2 = aes::Aes128::new_from_slice(&key[half..]).unwrap();
        xts_mode::Xts128::new(c1, c2).encrypt_sector(data, tweak);
    } else {
        let c1 = aes::Aes256::new_from_slice(&key[..half]).unwrap();
        let c2 = aes::Aes256::new_from_slice(&key[half..]).unwrap();
        xts_mode::Xts128::new(c1, c2).encrypt_sector(data, tweak);
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&shape, rest)) = input.split_first() else { return };
    let key_len = if shape & 1 == 0 { 32 } else { 64 };
    if rest.len() < key_len + 8 + 16 {
        return;
    }
    let (key_bytes, rest) = rest.split_at(key_len);
    let (number, data) = rest.split_at(8);
    let number = u64::from_le_bytes(number.try_into().unwrap());
    let data = data.repeat(1 + usize::from(shape >> 1) % 32);
    let data = &data[..];
    let Ok(key) = XtsKey::from_bytes(key_bytes) else { return };
    let mut expected = data.to_vec();
    reference(key_bytes, &mut expected, number);
    for backend in Backend::supported() {
        let xts = Xts::new(&key, BackendChoice::Named(backend)).unwrap();
        let mut buf = data.to_vec();
        xts.encrypt_unit(&mut buf, number).unwrap();
        assert!(buf == expected, "{backend} differs from xts-mode (len {}, unit {number})", data.len());
        xts.decrypt_unit(&mut buf, number).unwrap();
        assert!(buf == data, "{backend} round trip");
    }
});
