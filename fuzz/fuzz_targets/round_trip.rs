//! Any key, layout and data: encrypting then decrypting gives the data back on every backend, and a
//! refused call leaves the buffer untouched.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sectorcrypt::{Backend, BackendChoice, DataUnits, Xts, XtsKey};

fuzz_target!(|input: &[u8]| {
    let Some((&shape, rest)) = input.split_first() else { return };
    let key_len = if shape & 1 == 0 { 32 } else { 64 };
    if rest.len() < key_len + 16 {
        return;
    }
    let (key, rest) = rest.split_at(key_len);
    let (numbers, data) = rest.split_at(16);
    let Ok(key) = XtsKey::from_bytes(key) else { return };
    let first = u64::from_le_bytes(numbers[..8].try_into().unwrap());
    let step = u64::from_le_bytes(numbers[8..].try_into().unwrap()) % 16;
    let unit = 512usize << ((shape >> 1) % 9); // 512 B ..= 128 KiB
    for backend in Backend::supported() {
        let xts = Xts::new(&key, BackendChoice::Named(backend)).unwrap();
        let mut buf = data.to_vec();
        if shape & 0x80 != 0 {
            // One data unit of any length.
            match xts.encrypt_unit(&mut buf, first) {
                Ok(()) => {
                    xts.decrypt_unit(&mut buf, first).unwrap();
                    assert_eq!(buf, data, "{backend}");
                }
                Err(_) => assert_eq!(buf, data, "{backend}: refused call changed the buffer"),
            }
            continue;
        }
        let units = DataUnits::new(unit).unwrap().starting_at(first);
        let units = match units.with_step(step) {
            Ok(u) => u,
            Err(_) => continue,
        };
        match xts.encrypt_units_parallel(&mut buf, units) {
            Ok(()) => {
                xts.decrypt_units(&mut buf, units).unwrap();
                assert_eq!(buf, data, "{backend}");
            }
            Err(_) => assert_eq!(buf, data, "{backend}: refused call changed the buffer"),
        }
    }
});
