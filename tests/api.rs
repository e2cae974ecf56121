//! The library's promises about keys and refusals.

mod common;

use sectorcrypt::{Backend, BackendChoice, DataUnits, Error, Xts, XtsKey};

#[test]
fn keys_are_validated_once_and_never_printed() {
    let bytes: Vec<u8> = (0xa0..0xe0).collect();
    let key = XtsKey::from_bytes(&bytes).unwrap();
    let shown = format!("{key:?}");
    assert!(!shown.contains("a0") && !shown.contains("160"), "{shown}");
    assert_eq!(shown, "XtsKey { size: Aes256, .. }");

    for len in [0, 16, 31, 33, 48, 63, 65, 128] {
        assert_eq!(XtsKey::from_bytes(&vec![1; len]).unwrap_err(), Error::KeyLength(len));
    }
    let mut equal = vec![7u8; 64];
    assert_eq!(XtsKey::from_bytes(&equal).unwrap_err(), Error::EqualKeyHalves);
    equal[63] = 8;
    assert!(XtsKey::from_bytes(&equal).is_ok());
    assert_eq!(XtsKey::from_hex("0g").unwrap_err(), Error::KeyEncoding(2));
    assert_eq!(XtsKey::from_hex(&"1".repeat(63)).unwrap_err(), Error::KeyEncoding(63));

    // The engine's Debug names the backend and nothing else.
    let xts = Xts::new(&key, BackendChoice::Named(Backend::Portable)).unwrap();
    assert_eq!(format!("{xts:?}"), "Xts { engine: XtsEngine { backend: Portable, .. }, size: Aes256 }");
}

#[test]
fn refused_calls_leave_the_buffer_untouched() {
    let key = common::key(64, 1);
    for backend in Backend::supported() {
        let xts = Xts::new(&key, BackendChoice::Named(backend)).unwrap();
        let original = common::pattern(8 * 512 + 8, 3);
        let mut buf = original.clone();
        let units = DataUnits::new(512).unwrap();
        // Last unit of 8 bytes.
        assert_eq!(xts.encrypt_units(&mut buf, units), Err(Error::DataUnitLength(8)));
        assert_eq!(xts.encrypt_units_parallel(&mut buf, units), Err(Error::DataUnitLength(8)));
        // Unit numbers past 2^64-1, serial and parallel (above the parallel threshold).
        let mut big = common::pattern(1 << 20, 4);
        let before = big.clone();
        let late = units.starting_at(u64::MAX - 10);
        assert_eq!(xts.encrypt_units(&mut big, late), Err(Error::UnitNumberOverflow));
        assert_eq!(xts.decrypt_units_parallel(&mut big, late), Err(Error::UnitNumberOverflow));
        assert_eq!(big, before);
        // Single units out of range.
        assert_eq!(xts.encrypt_unit(&mut buf[..15], 0), Err(Error::DataUnitLength(15)));
        assert_eq!(buf, original, "{backend}");
    }
    assert_eq!(DataUnits::new(511).unwrap_err(), Error::DataUnitSize(511));
    assert_eq!(DataUnits::new(1 << 18).unwrap_err(), Error::DataUnitSize(1 << 18));
    assert_eq!(DataUnits::new(4096).unwrap().with_step(0).unwrap_err(), Error::ZeroTweakStep);
}

#[test]
fn backend_names_parse() {
    assert_eq!("auto".parse::<BackendChoice>().unwrap(), BackendChoice::Auto);
    assert_eq!(" VAES512 ".parse::<BackendChoice>().unwrap(), BackendChoice::Named(Backend::Vaes512));
    assert_eq!("neon".parse::<BackendChoice>().unwrap_err(), Error::UnknownBackend("neon".into()));
    assert_eq!(BackendChoice::Auto.resolve().unwrap(), Backend::fastest());
}
