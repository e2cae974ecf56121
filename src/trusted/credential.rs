//! MakeCredential in software: a secret that only the TPM holding a given endorsement key (EK) can
//! recover, and only into an object with a given name (the attestation key).
//!
//! The verifier trusts the EK (its certificate, or an allowlist) but has never seen the AK. It seals a
//! fresh secret to the EK and the AK's name (TPM 2.0 Part 1 §24, "Credential Protection"); the host's
//! TPM releases it through ActivateCredential only if it holds the EK's private key *and* has loaded an
//! object whose name is the AK's, so a host that answers with the secret has proved that the AK it
//! presented lives in the TPM of that EK. For an ECC P-256 EK (the TCG's low-range template):
//!
//! 1. an ephemeral P-256 key agrees with the EK on a point; `seed` = KDFe(SHA-256, its x, "IDENTITY",
//!    the ephemeral key's x, the EK's x), 256 bits;
//! 2. `symKey` = KDFa(SHA-256, seed, "STORAGE", AK name, "", 128 bits); the secret, as a
//!    `TPM2B_DIGEST`, is encrypted with AES-128-CFB under it (zero IV), the EK's symmetric scheme;
//! 3. `hmacKey` = KDFa(SHA-256, seed, "INTEGRITY", "", "", 256 bits); `outerHMAC` =
//!    HMAC-SHA-256(hmacKey, encrypted secret || AK name);
//! 4. the `TPM2B_ID_OBJECT` is `outerHMAC` (sized) and the encrypted secret; the
//!    `TPM2B_ENCRYPTED_SECRET` is the ephemeral public point.
//!
//! AES-CFB here is the mode written out over the `aes` crate's block cipher: one block per step, for
//! a secret of at most 32 bytes.

use super::tpm::*;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use hmac::Mac;
use sha2::{Digest, Sha256};

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

/// The EK's public point (x, y), from its `TPMT_PUBLIC` or `TPM2B_PUBLIC`: an ECC P-256 restricted
/// decryption key with SHA-256 names and AES-128-CFB as its symmetric scheme (anything else refused).
fn parse_ek(public: &[u8]) -> Result<([u8; 32], [u8; 32]), AttestError> {
    let refuse = |why| Err(AttestError::UnsupportedKey { key: EK, why });
    let mut r = Reader::new(strip_size(public), "the endorsement key's public area");
    if r.u16()? != TPM_ALG_ECC {
        return refuse("not an ECC key (RSA endorsement keys are not supported yet)");
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
        return refuse("it has a signing scheme");
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
        (Ok(x), Ok(y)) => Ok((x, y)),
        _ => Err(AttestError::Malformed("the endorsement key's point")),
    }
}

/// Seals `secret` (1 to 32 bytes) to the TPM holding the EK `ek_public` and to the object named
/// `ak_name` (see [`super::quote::ak_name`]).
pub fn make_credential(ek_public: &[u8], ak_name: &[u8], secret: &[u8]) -> Result<Credential, AttestError> {
    if secret.is_empty() || secret.len() > MAX_SECRET {
        return Err(AttestError::Malformed("a credential's secret is 1 to 32 bytes"));
    }
    let (ek_x, ek_y) = parse_ek(ek_public)?;
    let rng = ring::rand::SystemRandom::new();
    let ephemeral = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::ECDH_P256, &rng)
        .map_err(|_| AttestError::Malformed("no random numbers for an ephemeral key"))?;
    let public = ephemeral
        .compute_public_key()
        .map_err(|_| AttestError::Malformed("no random numbers for an ephemeral key"))?;
    // Uncompressed: 0x04, x, y.
    let (eph_x, eph_y) = (&public.as_ref()[1..33], &public.as_ref()[33..65]);
    let ek_point = [&[0x04][..], &ek_x, &ek_y].concat();
    let peer = ring::agreement::UnparsedPublicKey::new(&ring::agreement::ECDH_P256, &ek_point);
    let seed = ring::agreement::agree_ephemeral(ephemeral, &peer, |z| kdfe(z, b"IDENTITY\0", eph_x, &ek_x))
        .map_err(|_| AttestError::UnsupportedKey { key: EK, why: "its point is not on the curve" })?;

    let sym_key = kdfa(&seed, b"STORAGE\0", ak_name, &[], 16);
    let mut enc_identity = [&(secret.len() as u16).to_be_bytes()[..], secret].concat();
    cfb_encrypt(&sym_key, &mut enc_identity);
    let hmac_key = kdfa(&seed, b"INTEGRITY\0", &[], &[], 32);
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&hmac_key).expect("HMAC takes any key");
    mac.update(&enc_identity);
    mac.update(ak_name);
    let outer = mac.finalize().into_bytes();

    let id = [&(outer.len() as u16).to_be_bytes()[..], &outer, &enc_identity].concat();
    let point = [&32u16.to_be_bytes()[..], eph_x, &32u16.to_be_bytes(), eph_y].concat();
    Ok(Credential { id_object: sized(&id), encrypted_secret: sized(&point) })
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
