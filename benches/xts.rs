//! Criterion: every backend × data unit (512 B to 128 KiB) × direction × AES-128/256 on an in-cache
//! 128 KiB buffer of many units, with the `xts-mode` crate (over the `aes` crate) in the same group as
//! the reference, and, with `--features openssl`, OpenSSL 3.5+ built from source (key schedule once,
//! only the tweak reset per data unit). `sectorcrypt bench cipher` gives the same figures next to the
//! AES ceiling.

use aes::cipher::KeyInit;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sectorcrypt::{Backend, BackendChoice, DataUnits, Xts, XtsKey};
use std::hint::black_box;
use std::time::Duration;

const BUFFER: usize = 128 * 1024;
const UNITS: [usize; 5] = [512, 4096, 16384, 65536, 131072];

fn key(bits: usize) -> Vec<u8> {
    (0..bits / 4).map(|i| (i as u8).wrapping_mul(151).wrapping_add(7)).collect()
}

fn reference<
    C: aes::cipher::BlockCipherEncrypt
        + aes::cipher::BlockCipherDecrypt
        + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
>(
    xts: &xts_mode::Xts128<C>,
    decrypt: bool,
    buf: &mut [u8],
    unit: usize,
) {
    if decrypt {
        xts.decrypt_area(buf, unit, 0, xts_mode::get_tweak_default);
    } else {
        xts.encrypt_area(buf, unit, 0, xts_mode::get_tweak_default);
    }
}

fn bench(c: &mut Criterion) {
    let mut buf = vec![0x5au8; BUFFER];
    for bits in [128usize, 256] {
        let key_bytes = key(bits);
        let key = XtsKey::from_bytes(&key_bytes).unwrap();
        let half = key_bytes.len() / 2;
        for decrypt in [false, true] {
            let direction = if decrypt { "decrypt" } else { "encrypt" };
            let mut group = c.benchmark_group(format!("xts-aes-{bits}/{direction}"));
            group.throughput(Throughput::Bytes(BUFFER as u64));
            for unit in UNITS {
                let units = DataUnits::new(unit).unwrap();
                for backend in Backend::supported() {
                    let xts = Xts::new(&key, BackendChoice::Named(backend)).unwrap();
                    group.bench_function(BenchmarkId::new(backend.name(), unit), |b| {
                        b.iter(|| {
                            let result = if decrypt {
                                xts.decrypt_units(&mut buf, units)
                            } else {
                                xts.encrypt_units(&mut buf, units)
                            };
                            black_box(result).unwrap();
                        })
                    });
                }
                #[cfg(feature = "openssl")]
                group.bench_function(BenchmarkId::new("openssl", unit), |b| {
                    let mut ctx = openssl_ctx(&key_bytes, decrypt);
                    b.iter(|| openssl_units(&mut ctx, decrypt, black_box(&mut buf), unit));
                });
                group.bench_function(BenchmarkId::new("xts-mode", unit), |b| {
                    if bits == 128 {
                        let xts = xts_mode::Xts128::new(
                            aes::Aes128::new_from_slice(&key_bytes[..half]).unwrap(),
                            aes::Aes128::new_from_slice(&key_bytes[half..]).unwrap(),
                        );
                        b.iter(|| reference(&xts, decrypt, black_box(&mut buf), unit));
                    } else {
                        let xts = xts_mode::Xts128::new(
                            aes::Aes256::new_from_slice(&key_bytes[..half]).unwrap(),
                            aes::Aes256::new_from_slice(&key_bytes[half..]).unwrap(),
                        );
                        b.iter(|| reference(&xts, decrypt, black_box(&mut buf), unit));
                    }
                });
            }
            group.finish();
        }
    }
}

#[cfg(feature = "openssl")]
fn openssl_ctx(key: &[u8], decrypt: bool) -> openssl::cipher_ctx::CipherCtx {
    let cipher = if key.len() == 32 {
        openssl::cipher::Cipher::aes_128_xts()
    } else {
        openssl::cipher::Cipher::aes_256_xts()
    };
    let mut ctx = openssl::cipher_ctx::CipherCtx::new().unwrap();
    if decrypt {
        ctx.decrypt_init(Some(cipher), Some(key), Some(&[0; 16])).unwrap();
    } else {
        ctx.encrypt_init(Some(cipher), Some(key), Some(&[0; 16])).unwrap();
    }
    ctx
}

/// One EVP update per data unit, in place; only the tweak is set between units.
#[cfg(feature = "openssl")]
fn openssl_units(ctx: &mut openssl::cipher_ctx::CipherCtx, decrypt: bool, buf: &mut [u8], unit: usize) {
    for (number, data) in buf.chunks_mut(unit).enumerate() {
        let mut tweak = [0u8; 16];
        tweak[..8].copy_from_slice(&(number as u64).to_le_bytes());
        if decrypt {
            ctx.decrypt_init(None, None, Some(&tweak)).unwrap();
        } else {
            ctx.encrypt_init(None, None, Some(&tweak)).unwrap();
        }
        let len = data.len();
        ctx.cipher_update_inplace(data, len).unwrap();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1)).sample_size(20);
    targets = bench
}
criterion_main!(benches);
