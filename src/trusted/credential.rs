//! MakeCredential in software: a secret that only the TPM holding a given endorsement key (EK) can
//! recover, and only into an object with a given name (the attestation key).
//!
//! The verifier trusts the EK (its certificate, or an allowlist) but has never seen the AK. It seals a
//! fresh secret to the EK and the AK's name (TPM 2.0 Part 1 §24, "Credential Protection"); the host's
//! TPM releases it through ActivateCredential only if it holds the EK's private key *and* has loaded an
//! object whose name is the AK's, so a host that answers with the secret has proved that the AK it
//! presented lives in the TPM of that EK. For the TCG's low-range EK templates (RSA 2048 or ECC P-256,
//! each with SHA-256 names and AES-128-CFB):
//!
//! 1. a 256-bit `seed` is sent to the EK: for RSA, it is random and encrypted with RSA-OAEP (SHA-256,
//!    label "IDENTITY"); for ECC, an ephemeral P-256 key agrees with the EK on a point and `seed` =
//!    KDFe(SHA-256, its x, "IDENTITY", the ephemeral key's x, the EK's x);
//! 2. `symKey` = KDFa(SHA-256, seed, "STORAGE", AK name, "", 128 bits); the secret, as a
//!    `TPM2B_DIGEST`, is encrypted with AES-128-CFB under it (zero IV), the EK's symmetric scheme;
//! 3. `hmacKey` = KDFa(SHA-256, seed, "INTEGRITY", "", "", 256 bits); `outerHMAC` =
//!    HMAC-SHA-256(hmacKey, encrypted secret || AK name);
//! 4. the `TPM2B_ID_OBJECT` is `outerHMAC` (sized) and the encrypted secret; the
//!    `TPM2B_ENCRYPTED_SECRET` is the RSA ciphertext, or the ephemeral public point.
//!
//! AES-CFB here is the mode written out over the `aes` crate's block cipher: one block per step, for
//! a secret of at most 32 bytes.

use super::tpm::*;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use hmac::Mac;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// How errors name the endorsement key.
const EK: &str = "endorsement key";

/// The longest secret: a SHA-256 digest's size.
pub const MAX_SECRET: usize = 32;

/// What ActivateCredential takes: the sealed secret and the encrypted seed, each a sized TPM structure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// `TPM2B_ID_OBJECT`.
    pub id_object: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET`.
    pub encrypted_secret: Vec<u8>,
}

impl Credential {
    /// The file `tpm2_makecredential` writes and `tpm2_activatecredential -i` reads: a magic, a
    /// version, then both structures.
    pub fn to_tpm2_tools(&self) -> Vec<u8> {
        [&0xbadc_c0de_u32.to_be_bytes()[..], &1u32.to_be_bytes(), &self.id_object, &self.encrypted_secret]
            .concat()
    }
}

/// An endorsement key's public key, as its certificate must carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EkKey {
    /// RSA 2048: the modulus (big-endian) and the public exponent.
    Rsa {
        /// The modulus, 256 bytes.
        modulus: Vec<u8>,
        /// The public exponent (65537 where the TPM structure says 0).
        exponent: u32,
    },
    /// ECC NIST P-256: the point.
    Ecc {
        /// x, big-endian.
        x: [u8; 32],
        /// y, big-endian.
        y: [u8; 32],
    },
}

/// The EK's public key, from its `TPMT_PUBLIC` or `TPM2B_PUBLIC`: a restricted decryption key fixed to
/// its TPM with SHA-256 names and AES-128-CFB (the TCG's low-range templates), RSA 2048 or ECC P-256;
/// anything else is refused.
pub fn ek_key(public: &[u8]) -> Result<EkKey, AttestError> {
    let refuse = |why| Err(AttestError::UnsupportedKey { key: EK, why });
    let mut r = Reader::new(strip_size(public), "the endorsement key's public area");
    let kind = r.u16()?;
    if kind != TPM_ALG_ECC && kind != TPM_ALG_RSA {
        return refuse("neither an RSA nor an ECC key");
    }
    if r.u16()? != TPM_ALG_SHA256 {
        return refuse("its name algorithm is not SHA-256");
    }
    let attributes = r.u32()?;
    let needed = FIXED_TPM | FIXED_PARENT | RESTRICTED | DECRYPT;
    if attributes & needed != needed || attributes & SIGN != 0 {
        return refuse("not a restricted decryption key fixed to its TPM");
    }
    let _auth_policy = r.sized()?;
    if (r.u16()?, r.u16()?, r.u16()?) != (TPM_ALG_AES, 128, TPM_ALG_CFB) {
        return refuse("its symmetric scheme is not AES-128-CFB");
    }
    if r.u16()? != TPM_ALG_NULL {
        return refuse("it has a scheme of its own");
    }
    if kind == TPM_ALG_RSA {
        if r.u16()? != 2048 {
            return refuse("its RSA key is not 2048 bits");
        }
        let exponent = match r.u32()? {
            0 => 65537,
            e => e,
        };
        let modulus = r.sized()?;
        r.end()?;
        if modulus.len() != 256 || modulus[0] & 0x80 == 0 {
            return Err(AttestError::Malformed("the endorsement key's modulus"));
        }
        return Ok(EkKey::Rsa { modulus: modulus.to_vec(), exponent });
    }
    if r.u16()? != TPM_ECC_NIST_P256 {
        return refuse("its curve is not NIST P-256");
    }
    if r.u16()? != TPM_ALG_NULL {
        return refuse("it has a key derivation function");
    }
    let (x, y) = (r.sized()?, r.sized()?);
    r.end()?;
    match (x.try_into(), y.try_into()) {
        (Ok(x), Ok(y)) => Ok(EkKey::Ecc { x, y }),
        _ => Err(AttestError::Malformed("the endorsement key's point")),
    }
}

/// Seals `secret` (1 to 32 bytes) to the TPM holding the EK `ek_public` and to the object named
/// `ak_name` (see [`super::quote::ak_name`]).
pub fn make_credential(ek_public: &[u8], ak_name: &[u8], secret: &[u8]) -> Result<Credential, AttestError> {
    if secret.is_empty() || secret.len() > MAX_SECRET {
        return Err(AttestError::Malformed("a credential's secret is 1 to 32 bytes"));
    }
    let (seed, encrypted_secret) = match ek_key(ek_public)? {
        EkKey::Rsa { modulus, exponent } => send_seed_rsa(&modulus, exponent)?,
        EkKey::Ecc { x, y } => send_seed_ecc(&x, &y)?,
    };
    let sym_key = kdfa(&seed, b"STORAGE\0", ak_name, &[], 16);
    let mut enc_identity = [&(secret.len() as u16).to_be_bytes()[..], secret].concat();
    cfb_encrypt(&sym_key, &mut enc_identity);
    let hmac_key = kdfa(&seed, b"INTEGRITY\0", &[], &[], 32);
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&hmac_key).expect("HMAC takes any key");
    mac.update(&enc_identity);
    mac.update(ak_name);
    let outer = mac.finalize().into_bytes();

    let id = [&(outer.len() as u16).to_be_bytes()[..], &outer, &enc_identity].concat();
    Ok(Credential { id_object: sized(&id), encrypted_secret: sized(&encrypted_secret) })
}

/// A random seed, and it encrypted to the RSA EK with OAEP (SHA-256, label "IDENTITY" and its NUL).
fn send_seed_rsa(modulus: &[u8], exponent: u32) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), AttestError> {
    let bad = || AttestError::UnsupportedKey { key: EK, why: "its RSA public key is not valid" };
    let n = rsa::BoxedUint::from_be_slice(modulus, 2048).map_err(|_| bad())?;
    let e = rsa::BoxedUint::from_be_slice(&exponent.to_be_bytes(), 32).map_err(|_| bad())?;
    let key = rsa::PublicKey::new(n, e).map_err(|_| bad())?;
    let mut seed = Zeroizing::new(vec![0u8; 32]);
    getrandom::fill(&mut seed).map_err(|_| AttestError::Malformed("no random numbers for a seed"))?;
    let padding = rsa::Oaep::<Sha256>::new_with_label(&b"IDENTITY\0"[..]);
    let encrypted = key
        .encrypt(&mut getrandom::SysRng, padding, &seed)
        .map_err(|_| AttestError::Malformed("no random numbers for a seed"))?;
    Ok((seed, encrypted))
}

/// The seed agreed with the ECC EK by an ephemeral key, and that key's point as the EK will read it.
fn send_seed_ecc(ek_x: &[u8; 32], ek_y: &[u8; 32]) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), AttestError> {
    let rng = ring::rand::SystemRandom::new();
    let ephemeral = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::ECDH_P256, &rng)
        .map_err(|_| AttestError::Malformed("no random numbers for an ephemeral key"))?;
    let public = ephemeral
        .compute_public_key()
        .map_err(|_| AttestError::Malformed("no random numbers for an ephemeral key"))?;
    // Uncompressed: 0x04, x, y.
    let (eph_x, eph_y) = (&public.as_ref()[1..33], &public.as_ref()[33..65]);
    let ek_point = [&[0x04][..], ek_x, ek_y].concat();
    let peer = ring::agreement::UnparsedPublicKey::new(&ring::agreement::ECDH_P256, &ek_point);
    let seed = ring::agreement::agree_ephemeral(ephemeral, &peer, |z| kdfe(z, b"IDENTITY\0", eph_x, ek_x))
        .map_err(|_| AttestError::UnsupportedKey { key: EK, why: "its point is not on the curve" })?;
    let point = [&32u16.to_be_bytes()[..], eph_x, &32u16.to_be_bytes(), eph_y].concat();
    Ok((Zeroizing::new(seed.to_vec()), point))
}

fn sized(bytes: &[u8]) -> Vec<u8> {
    [&(bytes.len() as u16).to_be_bytes()[..], bytes].concat()
}

/// KDFe (SP 800-56A concatenation KDF, as TPM 2.0 Part 1 §11.4.10.3 uses it) for 256 bits: one
/// SHA-256 of the counter 1, `z`, the label with its NUL, and both parties' x.
fn kdfe(z: &[u8], label: &[u8], party_u: &[u8], party_v: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(1u32.to_be_bytes())
        .chain_update(z)
        .chain_update(label)
        .chain_update(party_u)
        .chain_update(party_v)
        .finalize()
        .into()
}

/// KDFa (SP 800-108 counter mode with HMAC-SHA-256, TPM 2.0 Part 1 §11.4.10.2): `bytes` bytes from
/// `key`, the label with its NUL, and the two contexts.
fn kdfa(key: &[u8], label: &[u8], context_u: &[u8], context_v: &[u8], bytes: usize) -> Vec<u8> {
    let bits = (bytes as u32 * 8).to_be_bytes();
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter = 1u32;
    while out.len() < bytes {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
        for part in [&counter.to_be_bytes()[..], label, context_u, context_v, &bits] {
            mac.update(part);
        }
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// AES-128-CFB encryption in place with a zero IV: each block of ciphertext is the plaintext XOR the
/// encryption of the ciphertext block before it (the IV for the first); a short last block takes the
/// keystream's first bytes.
fn cfb_encrypt(key: &[u8], data: &mut [u8]) {
    let cipher = aes::Aes128::new_from_slice(key).expect("a 16-byte key");
    let mut feedback = aes::Block::default();
    for chunk in data.chunks_mut(16) {
        cipher.encrypt_block(&mut feedback);
        for (byte, stream) in chunk.iter_mut().zip(feedback.iter()) {
            *byte ^= stream;
        }
        feedback[..chunk.len()].copy_from_slice(chunk);
    }
}

/// How the attestation authority names an endorsement key: the SHA-256 of its public area, lower-case
/// hex (the EK's TPM name without the algorithm prefix). Checks the key first.
pub fn ek_id(ek_public: &[u8]) -> Result<String, AttestError> {
    ek_key(ek_public)?;
    Ok(hex::encode(Sha256::digest(strip_size(ek_public))))
}
