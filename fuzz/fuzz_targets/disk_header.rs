//! The disk header parser: any bytes decode or fail cleanly, and what decodes re-encodes to exactly
//! the same bytes (so no header is silently reinterpreted). Inputs are tried as they are, and as edits
//! of a valid header with the checksum fixed up afterwards, so the fuzzer reaches every field check.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sectorcrypt::KeySize;
use sectorcrypt::disk::Mode;
use sectorcrypt::disk::format::{GroupPlace, HEADER_LEN, Header, Reencryption};
use sectorcrypt::keys::{Dek, Kek, KeyRef, ProviderKind, WrappedDek};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

fn sample() -> &'static [u8] {
    static SAMPLE: OnceLock<Vec<u8>> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let kek = Kek::from_bytes(&[7; 32]).unwrap();
        let key_ref = KeyRef::new(ProviderKind::Native, "0123456789abcdef", "member").unwrap();
        let dek = Dek::generate(KeySize::Aes256).unwrap();
        let header = Header {
            sequence: 3,
            generation: 2,
            uuid: [0x11; 16],
            mode: Mode::Datastore,
            cipher: KeySize::Aes256,
            data_unit: 4096,
            data_offset: 1 << 20,
            data_size: 64 << 20,
            place: GroupPlace { group_uuid: [0x22; 16], member_index: 1, member_count: 3, stripe: 1 << 20 },
            wrapped_dek: WrappedDek::wrap(&dek, &kek, &key_ref),
            // A deep rekey in progress, so the fuzzer reaches the version-2 fields too.
            reencryption: Some(Reencryption {
                new_dek: WrappedDek::wrap(&Dek::generate(KeySize::Aes256).unwrap(), &kek, &key_ref),
                position: 100,
                hot: 16,
                area: 1,
                area_sum: [0x33; 32],
            }),
        };
        header.encode(1)
    })
}

fn check(header: &[u8], slot: usize) {
    if let Ok(decoded) = Header::decode(header, slot) {
        assert_eq!(decoded.encode(slot), header[..HEADER_LEN]);
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&slot, edits)) = input.split_first() else { return };
    let slot = usize::from(slot & 1);
    check(edits, slot);
    // The input as edits (u16 position, xor byte) of a valid header, checksum recomputed.
    let mut header = sample().to_vec();
    for edit in edits.chunks_exact(3) {
        let position = u16::from_le_bytes([edit[0], edit[1]]) as usize % (HEADER_LEN - 32);
        header[position] ^= edit[2];
    }
    let digest = Sha256::digest(&header[..HEADER_LEN - 32]);
    header[HEADER_LEN - 32..].copy_from_slice(&digest);
    check(&header, slot);
});
