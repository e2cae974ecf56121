//! Property tests: round trip on every backend, and agreement with the independent `xts-mode` crate
//! for random keys, lengths 16..=131072 and unit numbers (biased towards 2^32 and 2^64-1).

mod common;

use aes::cipher::KeyInit;
use proptest::prelude::*;
use sectorcrypt::{Backend, BackendChoice, DataUnits, Xts, XtsKey};

fn unit_number() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0u64..64).prop_map(|d| (1u64 << 32) - 32 + d),
        (0u64..64).prop_map(|d| u64::MAX - d),
        0u64..1024,
    ]
}

fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 32), proptest::collection::vec(any::<u8>(), 64)]
        .prop_filter("halves must differ", |k| k[..k.len() / 2] != k[k.len() / 2..])
}

fn reference_encrypt(key: &[u8], data: &mut [u8], number: u64) {
    let tweak = xts_mode::get_tweak_default(number.into());
    let half = key.len() / 2;
    if half == 16 {
        let xts = xts_mode::Xts128::new(
            aes::Aes128::new_from_slice(&key[..half]).unwrap(),
            aes::Aes128::new_from_slice(&key[half..]).unwrap(),
        );
        xts.encrypt_sector(data, tweak);
    } else {
        let xts = xts_mode::Xts128::new(
            aes::Aes256::new_from_slice(&key[..half]).unwrap(),
            aes::Aes256::new_from_slice(&key[half..]).unwrap(),
        );
        xts.encrypt_sector(data, tweak);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_xts_mode(key in key_bytes(), len in 16usize..=131072, seed in any::<u64>(), number in unit_number()) {
        let plaintext = common::pattern(len, seed);
        let mut expected = plaintext.clone();
        reference_encrypt(&key, &mut expected, number);
        let xts_key = XtsKey::from_bytes(&key).unwrap();
        for backend in Backend::supported() {
            let xts = Xts::new(&xts_key, BackendChoice::Named(backend)).unwrap();
            let mut buf = plaintext.clone();
            xts.encrypt_unit(&mut buf, number).unwrap();
            prop_assert!(buf == expected, "{} differs from xts-mode (len {}, unit {})", backend, len, number);
        }
    }

    #[test]
    fn round_trips(key in key_bytes(), units in 1usize..40, tail in prop_oneof![Just(0usize), 16usize..512],
                   size_log in 9u32..=17, first in unit_number(), step in prop_oneof![Just(1u64), Just(8u64)]) {
        let size = 1usize << size_log;
        let len = units * size + tail;
        let units = DataUnits::new(size).unwrap().with_step(step).unwrap();
        let units = units.starting_at(first.min(u64::MAX - (len / size) as u64 * step));
        let plaintext = common::pattern(len, first);
        let xts_key = XtsKey::from_bytes(&key).unwrap();
        for backend in Backend::supported() {
            let xts = Xts::new(&xts_key, BackendChoice::Named(backend)).unwrap();
            let mut buf = plaintext.clone();
            xts.encrypt_units_parallel(&mut buf, units).unwrap();
            prop_assert!(buf != plaintext);
            xts.decrypt_units(&mut buf, units).unwrap();
            prop_assert!(buf == plaintext, "{} round trip failed", backend);
        }
    }
}
