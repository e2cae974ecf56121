//! The anti-forensic splitter's merge (LUKS's AF, from Clemens Fruhwirth's TKS1): a key of `n` bytes
//! is stored as `stripes` blocks of `n` bytes, of which the first `stripes - 1` are random. Merging
//! runs `d = diffuse(d ^ block_i)` over those and ends with `key = d ^ block_last`, so every byte of
//! every stripe is needed: destroying a few sectors of the area destroys the key.
//!
//! `diffuse` hashes the block in digest-sized pieces, piece `i` as `H(be32(i) || piece)` cut to the
//! piece's length.

use super::unlock::Hash;
use zeroize::Zeroizing;

fn diffuse(hash: Hash, block: &mut [u8]) {
    let size = hash.output_len();
    for (i, piece) in block.chunks_mut(size).enumerate() {
        let digest = hash.digest(&[&(i as u32).to_be_bytes(), piece]);
        let len = piece.len();
        piece.copy_from_slice(&digest[..len]);
    }
}

/// Merges `material` (`stripes` blocks of `key_len` bytes) back into the key.
pub(super) fn merge(hash: Hash, material: &[u8], key_len: usize, stripes: usize) -> Zeroizing<Vec<u8>> {
    let mut d = Zeroizing::new(vec![0u8; key_len]);
    let mut blocks = material.chunks_exact(key_len).take(stripes);
    for _ in 1..stripes {
        let Some(block) = blocks.next() else { break };
        for (x, y) in d.iter_mut().zip(block) {
            *x ^= y;
        }
        diffuse(hash, &mut d);
    }
    if let Some(last) = blocks.next() {
        for (x, y) in d.iter_mut().zip(last) {
            *x ^= y;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One stripe is the key itself; two stripes: key = diffuse(s0) ^ s1.
    #[test]
    fn merge_of_one_and_two_stripes() {
        let key: Vec<u8> = (0..40).collect();
        assert_eq!(&*merge(Hash::Sha256, &key, 40, 1), &key[..]);
        let s0 = vec![7u8; 40];
        let mut expected = s0.clone();
        diffuse(Hash::Sha256, &mut expected);
        for (e, k) in expected.iter_mut().zip(&key) {
            *e ^= k;
        }
        let material = [s0, key.clone()].concat();
        // s1 = key, so merge = diffuse(s0) ^ key.
        assert_eq!(&*merge(Hash::Sha256, &material, 40, 2), &expected[..]);
    }
}
