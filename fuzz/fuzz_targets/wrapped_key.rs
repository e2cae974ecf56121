//! The wrapped-key blob parser: any bytes parse or fail cleanly, a parsed blob re-encodes to the same
//! bytes, and a valid blob with any change applied never unwraps.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sectorcrypt::KeySize;
use sectorcrypt::keys::{Dek, Kek, KeyRef, ProviderKind, WrappedDek};
use std::sync::OnceLock;

struct Sample {
    kek: Kek,
    blob: Vec<u8>,
}

fn sample() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let kek = Kek::from_bytes(&[0x5a; 32]).unwrap();
        let key_ref = KeyRef::new(ProviderKind::Native, "0123456789abcdef", "disk-1").unwrap();
        let dek = Dek::generate(KeySize::Aes256).unwrap();
        let blob = WrappedDek::wrap(&dek, &kek, &key_ref).to_bytes();
        Sample { kek, blob }
    })
}

fuzz_target!(|input: &[u8]| {
    let sample = sample();
    // Any bytes: parse without panicking; what parses encodes back to exactly the input.
    if let Ok(parsed) = WrappedDek::from_bytes(input) {
        assert_eq!(parsed.to_bytes(), input);
        let _ = parsed.unwrap(&sample.kek);
    }
    // The input as edits (position, xor) of a valid blob: a changed blob never unwraps.
    let mut altered = sample.blob.clone();
    for edit in input.chunks_exact(2) {
        let position = edit[0] as usize % altered.len();
        altered[position] ^= edit[1];
    }
    if altered != sample.blob
        && let Ok(parsed) = WrappedDek::from_bytes(&altered)
    {
        assert!(parsed.unwrap(&sample.kek).is_err(), "an altered blob unwrapped");
    }
});
