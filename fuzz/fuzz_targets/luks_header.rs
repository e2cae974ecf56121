//! The LUKS header parsers (LUKS1's binary header, LUKS2's binary header pair and JSON area) and the
//! unlocking that follows: any bytes parse or fail cleanly, never panic, never allocate what the
//! header merely claims. The first byte picks how the rest is used:
//! - 0: as the volume's first bytes, as they are;
//! - 1: as a LUKS2 JSON area, wrapped in two binary headers with valid checksums, so the fuzzer works
//!   on the JSON and not on the SHA-256;
//! - 2: as edits of a valid LUKS1 header.
//!
//! A header that parses is then unlocked with a fixed passphrase when its KDFs are cheap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sectorcrypt::disk::{OpenOptions, Volume};
use sectorcrypt::luks::{Kdf, read_header};
use sectorcrypt::storage::MemStorage;
use sha2::{Digest, Sha256};

const COPY: usize = 16 << 10;
/// Room for keyslot areas and a little data after the two header copies.
const VOLUME: usize = 2 * COPY + (512 << 10);

const SAMPLE_JSON: &str = r#"{"keyslots":{"0":{"type":"luks2","key_size":64,"af":{"type":"luks1","stripes":4,"hash":"sha256"},"area":{"type":"raw","offset":"32768","size":"4096","encryption":"aes-xts-plain64","key_size":64},"kdf":{"type":"pbkdf2","hash":"sha256","iterations":1,"salt":"EMPERV+eRUo3mQhLjTjw9f2VIgUluVjkmwOJH1J5yJ4="}}},"tokens":{},"segments":{"0":{"type":"crypt","offset":"65536","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":4096}},"digests":{"0":{"type":"pbkdf2","keyslots":["0"],"segments":["0"],"hash":"sha256","iterations":1,"salt":"1156YqEC9ES0mcxbJ36I1fw3Aggr8h0DdkGYOPTITX0=","digest":"H7Wkqw=="}},"config":{"json_size":"12288","keyslots_size":"16744448"}}"#;

fn luks2_copy(json: &[u8], offset: usize) -> Vec<u8> {
    let mut copy = vec![0u8; COPY];
    copy[..6].copy_from_slice(if offset == 0 { b"LUKS\xba\xbe" } else { b"SKUL\xba\xbe" });
    copy[7] = 2;
    copy[8..16].copy_from_slice(&(COPY as u64).to_be_bytes());
    copy[16..24].copy_from_slice(&1u64.to_be_bytes());
    copy[72..78].copy_from_slice(b"sha256");
    copy[256..264].copy_from_slice(&(offset as u64).to_be_bytes());
    let len = json.len().min(COPY - 4096 - 1);
    copy[4096..4096 + len].copy_from_slice(&json[..len]);
    let sum = Sha256::digest(&copy);
    copy[448..480].copy_from_slice(&sum);
    copy
}

fn luks1_sample() -> Vec<u8> {
    let mut h = vec![0u8; 592];
    h[..6].copy_from_slice(b"LUKS\xba\xbe");
    h[7] = 1;
    h[8..11].copy_from_slice(b"aes");
    h[40..51].copy_from_slice(b"xts-plain64");
    h[72..78].copy_from_slice(b"sha256");
    h[104..108].copy_from_slice(&128u32.to_be_bytes()); // payload at 64 KiB
    h[108..112].copy_from_slice(&64u32.to_be_bytes());
    h[164..168].copy_from_slice(&1u32.to_be_bytes());
    // Keyslot 0 active, 1 iteration, material at sector 8, 4 stripes; the others inactive.
    for slot in 0..8 {
        let s = 208 + 48 * slot;
        let state: u32 = if slot == 0 { 0x00ac_71f3 } else { 0x0000_dead };
        h[s..s + 4].copy_from_slice(&state.to_be_bytes());
    }
    h[212..216].copy_from_slice(&1u32.to_be_bytes());
    h[248..252].copy_from_slice(&8u32.to_be_bytes());
    h[252..256].copy_from_slice(&4u32.to_be_bytes());
    h
}

/// Whether unlocking costs little: the fuzzer must not spend its time in KDFs.
fn cheap(header: &sectorcrypt::luks::LuksHeader) -> bool {
    header.keyslots.iter().all(|slot| match &slot.kdf {
        Kdf::Pbkdf2 { iterations, .. } => *iterations <= 16,
        Kdf::Argon2 { time, memory_kib, parallel, .. } => *time <= 2 && *memory_kib <= 64 && *parallel <= 2,
    }) && header.digests.iter().all(|d| d.iterations <= 16)
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else { return };
    let mut volume = vec![0u8; VOLUME];
    match mode % 3 {
        0 => {
            let len = rest.len().min(VOLUME);
            volume[..len].copy_from_slice(&rest[..len]);
        }
        1 => {
            let json = if rest.is_empty() { SAMPLE_JSON.as_bytes() } else { rest };
            volume[..COPY].copy_from_slice(&luks2_copy(json, 0));
            volume[COPY..2 * COPY].copy_from_slice(&luks2_copy(json, COPY));
        }
        _ => {
            let mut header = luks1_sample();
            for pair in rest.chunks_exact(2) {
                header[pair[0] as usize * 592 / 256] = pair[1];
            }
            volume[..592].copy_from_slice(&header);
        }
    }
    let store = MemStorage::from_bytes("fuzz", volume);
    if let Ok(header) = read_header(&store)
        && cheap(&header)
    {
        let _ = Volume::open_luks(Box::new(store), b"passphrase", OpenOptions::default());
    }
});
