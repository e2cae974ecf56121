//! Unit tests of the pieces the kernels are built from. The full differential tests of every backend
//! against the portable one live in the `sectorcrypt` crate (`tests/backends.rs`).

use super::*;

#[test]
fn names_round_trip() {
    for backend in Backend::ALL {
        assert_eq!(Backend::from_name(backend.name()), Some(backend));
    }
    assert_eq!(Backend::from_name("VAES512"), Some(Backend::Vaes512));
    assert_eq!(Backend::from_name("avx9000"), None);
}

#[test]
fn portable_is_always_supported_and_fastest_is_supported() {
    assert!(Backend::Portable.is_supported());
    assert!(Backend::fastest().is_supported());
}

#[test]
fn key_halves_must_match_in_length() {
    for (a, b) in [(15, 15), (16, 32), (32, 16), (24, 24), (0, 0), (64, 64)] {
        let err = XtsEngine::new(Backend::Portable, &vec![1; a], &vec![2; b]).unwrap_err();
        assert_eq!(err, EngineError::KeyHalfLength(KeyHalfLengthError { key1: a, key2: b }));
    }
}

#[test]
fn layout_checks() {
    let layout = |unit_len, first, step| UnitLayout { unit_len, first, step };
    assert_eq!(layout(15, 0, 1).check(32), Err(LayoutError::UnitTooShort));
    assert_eq!(layout(512, 0, 1).check(0), Ok(()));
    assert_eq!(layout(512, 0, 1).check(512 + 15), Err(LayoutError::TailTooShort));
    assert_eq!(layout(512, 0, 1).check(512 + 16), Ok(()));
    assert_eq!(layout(512, u64::MAX, 1).check(512), Ok(()));
    assert_eq!(layout(512, u64::MAX, 1).check(513 + 16), Err(LayoutError::UnitNumberOverflow));
    // 2^64-17, then +8, +8: the third unit is exactly 2^64-1, a fourth would pass it.
    assert_eq!(layout(512, u64::MAX - 16, 8).check(3 * 512), Ok(()));
    assert_eq!(layout(512, u64::MAX - 16, 8).check(3 * 512 + 16), Err(LayoutError::UnitNumberOverflow));
}

#[test]
fn refused_layout_leaves_buffer_untouched() {
    for backend in Backend::supported() {
        let engine = XtsEngine::new(backend, &[1; 32], &[2; 32]).unwrap();
        let mut buf = vec![7u8; 512 + 8];
        let layout = UnitLayout { unit_len: 512, first: 0, step: 1 };
        assert_eq!(engine.encrypt(&mut buf, layout), Err(LayoutError::TailTooShort));
        assert!(buf.iter().all(|&b| b == 7));
        let mut out = vec![7u8; 512];
        assert_eq!(engine.encrypt_to(&buf, &mut out, layout), Err(LayoutError::LengthMismatch));
        assert!(out.iter().all(|&b| b == 7));
    }
}

/// The portable tweak doubling against a bit-by-bit definition of multiplication by x.
#[test]
fn mul_x_matches_definition() {
    let mut t: u128 = 0x8000_0000_0000_0000_0000_0000_0000_0001;
    for _ in 0..300 {
        let bytes = t.to_le_bytes();
        let mut expected = [0u8; 16];
        let mut carry = 0u8;
        for i in 0..16 {
            expected[i] = (bytes[i] << 1) | carry;
            carry = bytes[i] >> 7;
        }
        if carry == 1 {
            expected[0] ^= 0x87;
        }
        let next = gf128::mul_x(t);
        assert_eq!(next.to_le_bytes(), expected);
        t = next ^ 0x0123_4567_89ab_cdef;
    }
}

/// The AES-NI key schedule against the `aes` crate: one AES block through the x86 kernels with a
/// tweak key of zeros equals `AES_Key1(P ^ T) ^ T` with `T = AES_0(0)`.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_key_schedules_match_aes_crate() {
    use aes::cipher::{BlockCipherEncrypt, KeyInit};
    for backend in Backend::supported().filter(|b| *b != Backend::Portable) {
        for len in [16usize, 32] {
            let key1: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
            let key2 = vec![0u8; len];
            let engine = XtsEngine::new(backend, &key1, &key2).unwrap();
            let mut tweak = aes::Block::default();
            let mut block = aes::Block::from([0x5a; 16]);
            if len == 16 {
                aes::Aes128::new_from_slice(&key2).unwrap().encrypt_block(&mut tweak);
            } else {
                aes::Aes256::new_from_slice(&key2).unwrap().encrypt_block(&mut tweak);
            }
            for (b, t) in block.iter_mut().zip(tweak.iter()) {
                *b ^= t;
            }
            if len == 16 {
                aes::Aes128::new_from_slice(&key1).unwrap().encrypt_block(&mut block);
            } else {
                aes::Aes256::new_from_slice(&key1).unwrap().encrypt_block(&mut block);
            }
            for (b, t) in block.iter_mut().zip(tweak.iter()) {
                *b ^= t;
            }
            let mut buf = [0x5a; 16];
            engine.encrypt(&mut buf, UnitLayout { unit_len: 16, first: 0, step: 1 }).unwrap();
            assert_eq!(buf[..], block[..], "{backend} AES-{}", len * 8);
            engine.decrypt(&mut buf, UnitLayout { unit_len: 16, first: 0, step: 1 }).unwrap();
            assert_eq!(buf, [0x5a; 16], "{backend} AES-{} decrypt", len * 8);
        }
    }
}

/// Unit lengths the disk layer never uses (any length from 16 bytes is valid here), in every count
/// around the kernels' tweak batches, against the portable backend.
#[test]
fn odd_unit_lengths_in_every_count_agree() {
    let (key1, key2) = ([3u8; 32], [4u8; 32]);
    let reference = XtsEngine::new(Backend::Portable, &key1, &key2).unwrap();
    for backend in Backend::supported() {
        let engine = XtsEngine::new(backend, &key1, &key2).unwrap();
        for unit_len in [16usize, 17, 100, 527, 1040] {
            for count in 1..=13 {
                for tail in [0usize, 16, 31] {
                    let len = count * unit_len + tail;
                    let plain: Vec<u8> = (0..len).map(|i| (i * 7 + count) as u8).collect();
                    let layout = UnitLayout { unit_len, first: u64::MAX - 20, step: 1 };
                    if layout.check(len as u64).is_err() {
                        continue; // a tail of under 16 bytes
                    }
                    let (mut expected, mut actual) = (plain.clone(), plain.clone());
                    reference.encrypt(&mut expected, layout).unwrap();
                    engine.encrypt(&mut actual, layout).unwrap();
                    assert_eq!(actual, expected, "{backend} unit {unit_len} count {count} tail {tail}");
                    engine.decrypt(&mut actual, layout).unwrap();
                    assert_eq!(actual, plain, "{backend} unit {unit_len} count {count} tail {tail}");
                }
            }
        }
    }
}

/// Every path of the VAES-512 kernel's table (see the `vaes512` module), on purpose, against the
/// portable kernel: both key sizes, both directions.
#[cfg(target_arch = "x86_64")]
#[test]
fn vaes512_reaches_every_path() {
    if !Backend::Vaes512.is_supported() {
        return;
    }
    // (unit size, units): one unit short and long, streamed/chained (4 KiB and 1 KiB units), pairs of
    // 512-byte units with and without an odd last one, and the four-at-a-time path (odd sizes).
    let cases = [
        (4096, 1),
        (512, 1),
        (100, 1),
        (4096, 5),
        (1024, 3),
        (512, 6),
        (512, 7),
        (600, 9),
        (48, 11),
        (4096 + 17, 1),
    ];
    for key_len in [16, 32] {
        let key1: Vec<u8> = (0..key_len).map(|i| i as u8).collect();
        let key2: Vec<u8> = (0..key_len).map(|i| 0x80 ^ i as u8).collect();
        let portable = XtsEngine::new(Backend::Portable, &key1, &key2).unwrap();
        let vaes = XtsEngine::new(Backend::Vaes512, &key1, &key2).unwrap();
        for (unit_len, count) in cases {
            let layout = UnitLayout { unit_len, first: 0xfffe, step: 1 };
            let plain: Vec<u8> = (0..unit_len * count).map(|i| (i * 7 + i / 251) as u8).collect();
            let mut expected = plain.clone();
            portable.encrypt(&mut expected, layout).unwrap();
            let mut buf = plain.clone();
            vaes.encrypt(&mut buf, layout).unwrap();
            assert!(buf == expected, "AES-{} {unit_len} x {count}: encrypt differs", key_len * 8);
            vaes.decrypt(&mut buf, layout).unwrap();
            assert!(buf == plain, "AES-{} {unit_len} x {count}: decrypt differs", key_len * 8);
            let mut out = vec![0x33; plain.len()];
            vaes.encrypt_to(&plain, &mut out, layout).unwrap();
            assert!(out == expected, "AES-{} {unit_len} x {count}: encrypt_to differs", key_len * 8);
            vaes.decrypt_to(&expected, &mut out, layout).unwrap();
            assert!(out == plain, "AES-{} {unit_len} x {count}: decrypt_to differs", key_len * 8);
        }
    }
}

/// Every path of the AES-NI and VAES-256 kernels (see `stream`), each case named for the path it is
/// meant to take and checked to have taken it, against the portable kernel: both key sizes, both
/// directions, in place and from a source.
#[cfg(target_arch = "x86_64")]
#[test]
fn aesni_and_vaes256_reach_every_path() {
    use crate::reached::{self, Path};
    for backend in [Backend::AesNi, Backend::Vaes256].into_iter().filter(|b| b.is_supported()) {
        // A group is eight registers: eight blocks on AES-NI, sixteen on VAES-256.
        let group = if backend == Backend::AesNi { 128 } else { 256 };
        // (path, unit size, units, bytes after the last whole unit)
        let cases = [
            (Path::StreamOfFours, 4096, 4, 0),
            (Path::StreamOfFours, 4 * group, 9, 0),
            (Path::StreamOfFours, 4096, 5, 1000),
            (Path::StreamOfOnes, 2 * group, 17, 0),
            (Path::StreamOfOnes, 3 * group, 7, 0),
            (Path::StreamOfOnes, group, 16, 48),
            (Path::InRegisters, 1024, 1, 0),
            (Path::InRegisters, 512, 3, 0),
            (Path::InRegisters, 4096 + 17, 4, 0),
            (Path::InRegisters, 600, 9, 0),
        ];
        for key_len in [16, 32] {
            let rounds = if key_len == 16 { 10 } else { 14 };
            let key1: Vec<u8> = (0..key_len).map(|i| i as u8 ^ 0x35).collect();
            let key2: Vec<u8> = (0..key_len).map(|i| 0x80 ^ i as u8).collect();
            let portable = XtsEngine::new(Backend::Portable, &key1, &key2).unwrap();
            let engine = XtsEngine::new(backend, &key1, &key2).unwrap();
            for (path, unit_len, count, tail) in cases {
                let name = format!("{backend} AES-{} {path:?}: {unit_len} x {count} + {tail}", key_len * 8);
                // Unit numbers that cross 2^32, where the first tweaks' arithmetic changes words.
                let layout = UnitLayout { unit_len, first: 0xffff_fffe, step: 1 };
                let plain: Vec<u8> = (0..unit_len * count + tail).map(|i| (i * 7 + i / 251) as u8).collect();
                let mut expected = plain.clone();
                portable.encrypt(&mut expected, layout).unwrap();
                reached::take();
                let mut buf = plain.clone();
                engine.encrypt(&mut buf, layout).unwrap();
                assert!(reached::take().contains(&(backend, path, rounds)), "{name}: path not taken");
                assert!(buf == expected, "{name}: encrypt differs");
                engine.decrypt(&mut buf, layout).unwrap();
                assert!(
                    reached::take().contains(&(backend, path, rounds)),
                    "{name}: decrypt took another path"
                );
                assert!(buf == plain, "{name}: decrypt differs");
                let mut out = vec![0x33; plain.len()];
                engine.encrypt_to(&plain, &mut out, layout).unwrap();
                assert!(out == expected, "{name}: encrypt_to differs");
                engine.decrypt_to(&expected, &mut out, layout).unwrap();
                assert!(out == plain, "{name}: decrypt_to differs");
            }
        }
    }
}

/// Every backend's key schedule sits on pages a core dump leaves out (`dd` in the VM flags of the
/// mapping that holds it, on Linux).
#[cfg(target_os = "linux")]
#[test]
fn key_schedules_are_left_out_of_core_dumps() {
    for backend in Backend::supported() {
        let engine = XtsEngine::new(backend, &[1; 32], &[2; 32]).unwrap();
        let address = match &engine.kernel {
            Kernel::Portable(keys) => keys.address(),
            #[cfg(target_arch = "x86_64")]
            Kernel::AesNi(keys, _) | Kernel::Vaes256(keys, _) | Kernel::Vaes512(keys, _) => keys.address(),
        };
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        let mut flags = None;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((start, end)) = range.split_once('-')
                && let (Ok(start), Ok(end)) =
                    (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
            {
                inside = (start..end).contains(&address);
            } else if inside && let Some(vm_flags) = line.strip_prefix("VmFlags:") {
                flags = Some(vm_flags.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
                break;
            }
        }
        let flags = flags.expect("the key schedule's mapping is in /proc/self/smaps");
        assert!(flags.iter().any(|f| f == "dd"), "{backend}: VmFlags {flags:?}");
    }
}

/// The in-register ceiling runs exactly on the widths whose backends this CPU supports.
#[cfg(target_arch = "x86_64")]
#[test]
fn ceilings_run_where_their_backend_does() {
    for width in ceiling::Width::ALL {
        for decrypt in [false, true] {
            assert_eq!(
                ceiling::run(width, decrypt, 100).is_some(),
                width.backend().is_supported(),
                "{width:?}"
            );
        }
        assert_eq!(ceiling::Width::of(width.backend()), Some(width));
    }
    assert_eq!(ceiling::Width::of(Backend::Portable), None);
    let c = ceiling::Ceiling { width: ceiling::Width::Xmm, block_rounds_per_second: 1e10 };
    assert!((c.gbps(10) - 16.0).abs() < 1e-9);
}
