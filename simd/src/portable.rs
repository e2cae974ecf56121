//! The portable backend: XTS in safe Rust around the `aes` crate's block cipher.
//!
//! It is the reference the fast kernels are tested against, and the backend on CPUs without AES-NI.
//! Constant time: the `aes` crate is (bitsliced in software, AES instructions where present), and the
//! tweak doubling below uses a mask rather than a branch on the secret tweak's top bit.
//!
//! Tweaks for a batch of blocks are computed into a small stack buffer, XORed in, the batch goes
//! through the cipher in one `encrypt_blocks` call (so the `aes` crate can pipeline it), and the tweaks
//! are XORed in again.

use crate::gf128::mul_x;
use crate::keys::PortableKeys;
use aes::Block;
use aes::cipher::consts::U16;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, BlockSizeUser};

/// Blocks per cipher call: large enough for the `aes` crate's widest pipeline, small enough for L1.
const BATCH: usize = 32;

/// Encrypts or decrypts `buf` as data units of `unit_len` bytes numbered `first`, `first + step`, ...
/// The caller has checked the layout; on a short tail this still touches nothing out of bounds.
pub(crate) fn xts(
    keys: &PortableKeys,
    decrypt: bool,
    buf: &mut [u8],
    unit_len: usize,
    first: u128,
    step: u128,
) {
    match keys {
        PortableKeys::Aes128 { data, tweak } => units(data, tweak, decrypt, buf, unit_len, first, step),
        PortableKeys::Aes256 { data, tweak } => units(data, tweak, decrypt, buf, unit_len, first, step),
    }
}

fn units<C>(data: &C, tweak: &C, decrypt: bool, buf: &mut [u8], unit_len: usize, first: u128, step: u128)
where
    C: BlockCipherEncrypt + BlockCipherDecrypt + BlockSizeUser<BlockSize = U16>,
{
    let mut number = first;
    for unit in buf.chunks_mut(unit_len.max(16)) {
        let mut t0 = Block::from(number.to_le_bytes());
        tweak.encrypt_block(&mut t0);
        let t0 = u128::from_le_bytes(t0.into());
        if decrypt {
            one_unit(unit, t0, |blocks| data.decrypt_blocks(blocks), true);
        } else {
            one_unit(unit, t0, |blocks| data.encrypt_blocks(blocks), false);
        }
        number = number.wrapping_add(step);
    }
}

fn xor_tweak(block: &mut Block, tweak: u128) {
    let x = u128::from_le_bytes((*block).into()) ^ tweak;
    *block = x.to_le_bytes().into();
}

/// One data unit whose first tweak is `t0`; `cipher` runs the data key over whole blocks.
fn one_unit(unit: &mut [u8], t0: u128, cipher: impl Fn(&mut [Block]), decrypt: bool) {
    let tail = unit.len() % 16;
    let (blocks, _) = Block::slice_as_chunks_mut(unit);
    // With stealing, the last full block is handled together with the partial one.
    let bulk = if tail == 0 { blocks.len() } else { blocks.len().saturating_sub(1) };
    let mut t = t0;
    let mut tweaks = [0u128; BATCH];
    for batch in blocks[..bulk].chunks_mut(BATCH) {
        for (block, slot) in batch.iter_mut().zip(tweaks.iter_mut()) {
            *slot = t;
            xor_tweak(block, t);
            t = mul_x(t);
        }
        cipher(batch);
        for (block, slot) in batch.iter_mut().zip(&tweaks) {
            xor_tweak(block, *slot);
        }
    }
    if tail != 0 && bulk < blocks.len() {
        let start = bulk * 16;
        steal(&mut unit[start..], t, &cipher, decrypt);
    }
}

/// Ciphertext stealing over the last full block and the `tail` bytes after it (`last.len()` is 17..=31);
/// `t` is the last full block's tweak.
fn steal(last: &mut [u8], t: u128, cipher: &impl Fn(&mut [Block]), decrypt: bool) {
    let (full, partial) = last.split_at_mut(16);
    let tail = partial.len();
    // Encryption uses the earlier tweak first; decryption must undo the later one first.
    let (first_tweak, second_tweak) = if decrypt { (mul_x(t), t) } else { (t, mul_x(t)) };
    let one = |block: &mut Block, tweak: u128| {
        xor_tweak(block, tweak);
        cipher(core::slice::from_mut(block));
        xor_tweak(block, tweak);
    };
    let mut stolen = Block::try_from(&*full).unwrap_or_default();
    one(&mut stolen, first_tweak);
    let mut merged = stolen;
    merged[..tail].copy_from_slice(partial);
    partial.copy_from_slice(&stolen[..tail]);
    one(&mut merged, second_tweak);
    full.copy_from_slice(&merged);
}
