//! Verifying a TPM 2.0 quote without a TPM.
//!
//! A quote is a `TPMS_ATTEST` structure of type `TPM_ST_ATTEST_QUOTE` that the TPM builds and signs
//! with an attestation key (AK): it names the PCRs selected and the digest of their values, and carries
//! the verifier's nonce (`extraData`). The TPM signs only structures that begin with
//! `TPM_GENERATED_VALUE` when the key is a *restricted* signing key, so a quote signed by such a key
//! was made by that TPM and not by software holding the key's handle. Checking one takes, in order:
//!
//! 1. the AK's public area (`TPMT_PUBLIC`, TPM 2.0 Part 2 §12.2.4): an ECC P-256 key with ECDSA over
//!    SHA-256, restricted, signing only, fixed to its TPM and parent (anything else is refused);
//! 2. the signature (`TPMT_SIGNATURE`): ECDSA P-256 over SHA-256 of the attestation bytes, checked with
//!    `ring`;
//! 3. the attestation: the magic, the type, the nonce, and the PCR selection (the SHA-256 bank, the
//!    indices expected) with the digest of the values the host reported.
//!
//! The AK's *name* (its name algorithm and the hash of its public area) is what binds it to an
//! endorsement key through MakeCredential/ActivateCredential; [`ak_name`] computes it.
//!
//! Every structure is parsed strictly: sizes are checked against what remains, nothing may follow the
//! end, and nothing here panics on any input (the `tpm_quote` fuzz target holds it to that).

use super::tpm::*;
use sha2::{Digest, Sha256};

/// How errors name the attestation key.
const AK: &str = "attestation key";

const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// What a verified quote says beyond the PCRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteInfo {
    /// The TPM's clock (milliseconds it has been powered since its last clear).
    pub clock: u64,
    /// TPM resets (reboots) since its last clear.
    pub reset_count: u32,
    /// TPM restarts (resumes) since its last reset.
    pub restart_count: u32,
    /// The TPM's firmware version, vendor-defined.
    pub firmware_version: u64,
    /// The qualified name of the key that signed it.
    pub qualified_signer: Vec<u8>,
}

/// An ECC P-256 attestation key's public point, from its `TPMT_PUBLIC` (or a `TPM2B_PUBLIC`, whose
/// size prefix is taken off).
struct AkPublic {
    /// `0x04 || x || y`, as `ring` takes it.
    point: Vec<u8>,
}

fn parse_ak(public: &[u8]) -> Result<AkPublic, AttestError> {
    let public = strip_size(public);
    let mut r = Reader::new(public, "the attestation key's public area");
    if r.u16()? != TPM_ALG_ECC {
        return Err(AttestError::UnsupportedKey { key: AK, why: "not an ECC key" });
    }
    if r.u16()? != TPM_ALG_SHA256 {
        return Err(AttestError::UnsupportedKey { key: AK, why: "its name algorithm is not SHA-256" });
    }
    let attributes = r.u32()?;
    let needed = FIXED_TPM | FIXED_PARENT | RESTRICTED | SIGN;
    if attributes & needed != needed || attributes & DECRYPT != 0 {
        return Err(AttestError::UnsupportedKey {
            key: AK,
            why: "not a restricted signing key fixed to its TPM (a key that also decrypts, or could sign data not made by the TPM)",
        });
    }
    let _auth_policy = r.sized()?;
    if r.u16()? != TPM_ALG_NULL {
        return Err(AttestError::UnsupportedKey { key: AK, why: "a signing key with a symmetric algorithm" });
    }
    if r.u16()? != TPM_ALG_ECDSA || r.u16()? != TPM_ALG_SHA256 {
        return Err(AttestError::UnsupportedKey { key: AK, why: "its scheme is not ECDSA with SHA-256" });
    }
    if r.u16()? != TPM_ECC_NIST_P256 {
        return Err(AttestError::UnsupportedKey { key: AK, why: "its curve is not NIST P-256" });
    }
    if r.u16()? != TPM_ALG_NULL {
        return Err(AttestError::UnsupportedKey { key: AK, why: "it has a key derivation function" });
    }
    let (x, y) = (r.sized()?, r.sized()?);
    r.end()?;
    if x.len() != 32 || y.len() != 32 {
        return Err(AttestError::Malformed("the attestation key's point"));
    }
    Ok(AkPublic { point: [&[0x04][..], x, y].concat() })
}

/// The attestation key's name: its name algorithm (SHA-256) and the SHA-256 of its public area, as
/// the TPM computes it (and as MakeCredential binds a credential to it).
pub fn ak_name(public: &[u8]) -> Result<Vec<u8>, AttestError> {
    parse_ak(public)?;
    let area = strip_size(public);
    Ok([&TPM_ALG_SHA256.to_be_bytes()[..], &Sha256::digest(area)].concat())
}

/// Verifies a quote: `public` is the attestation key's public area, `attest` the `TPMS_ATTEST` the
/// TPM signed, `signature` its `TPMT_SIGNATURE`, `nonce` the challenge it must answer, and `pcrs` the
/// values the host reports for the SHA-256 PCRs the quote must cover, in ascending index order.
pub fn verify_quote(
    public: &[u8],
    attest: &[u8],
    signature: &[u8],
    nonce: &[u8],
    pcrs: &[(u8, [u8; 32])],
) -> Result<QuoteInfo, AttestError> {
    let ak = parse_ak(public)?;
    let fixed = parse_signature(signature)?;
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &ak.point);
    key.verify(attest, &fixed).map_err(|_| AttestError::BadSignature)?;
    // Only now, signed by the TPM, are the contents worth reading.
    let Attest { info, extra, selection, digest } = parse_attest(attest)?;
    if !constant_time_eq(extra, nonce) {
        return Err(AttestError::NonceMismatch);
    }
    let expected: Vec<u8> = pcrs.iter().map(|(index, _)| *index).collect();
    if selection != expected {
        return Err(AttestError::SelectionMismatch);
    }
    let mut hash = Sha256::new();
    for (_, value) in pcrs {
        hash.update(value);
    }
    if digest != hash.finalize().as_slice() {
        return Err(AttestError::PcrDigestMismatch);
    }
    Ok(info)
}

/// An ECDSA `TPMT_SIGNATURE` as the 64 bytes `r || s`.
fn parse_signature(signature: &[u8]) -> Result<[u8; 64], AttestError> {
    let mut s = Reader::new(signature, "the signature");
    if s.u16()? != TPM_ALG_ECDSA || s.u16()? != TPM_ALG_SHA256 {
        return Err(AttestError::UnsupportedKey { key: AK, why: "the signature is not ECDSA with SHA-256" });
    }
    let (r, s_scalar) = (s.sized()?, s.sized()?);
    s.end()?;
    let mut fixed = [0u8; 64];
    fixed[..32].copy_from_slice(&left_pad(r)?);
    fixed[32..].copy_from_slice(&left_pad(s_scalar)?);
    Ok(fixed)
}

/// The fields of a quote's `TPMS_ATTEST`.
struct Attest<'a> {
    info: QuoteInfo,
    extra: &'a [u8],
    selection: Vec<u8>,
    digest: &'a [u8],
}

fn parse_attest(attest: &[u8]) -> Result<Attest<'_>, AttestError> {
    let mut a = Reader::new(attest, "the attestation");
    if a.u32()? != TPM_GENERATED_VALUE || a.u16()? != TPM_ST_ATTEST_QUOTE {
        return Err(AttestError::NotAQuote);
    }
    let qualified_signer = a.sized()?.to_vec();
    let extra = a.sized()?;
    let (clock, reset_count, restart_count) = (a.u64()?, a.u32()?, a.u32()?);
    let _safe = a.u8()?;
    let firmware_version = a.u64()?;
    let selection = read_selection(&mut a)?;
    let digest = a.sized()?;
    a.end()?;
    let info = QuoteInfo { clock, reset_count, restart_count, firmware_version, qualified_signer };
    Ok(Attest { info, extra, selection, digest })
}

/// For the `tpm_quote` fuzz target: `input` as each structure in turn (an attestation key's public
/// area, a signature, an attestation, an endorsement key for a credential, a base image description,
/// and all three parts of a quote through [`verify_quote`]); none may panic.
#[doc(hidden)]
pub fn fuzz_parse(input: &[u8]) {
    let _ = parse_ak(input);
    let _ = ak_name(input);
    let _ = parse_signature(input);
    let _ = parse_attest(input);
    let _ = super::credential::make_credential(input, b"name", &[1]);
    let _ = super::image::BaseImage::from_json(input).map(|image| image.pcr_values());
    let third = input.len() / 3;
    let (public, rest) = input.split_at(third);
    let (attest, signature) = rest.split_at(third);
    let _ = verify_quote(public, attest, signature, &[], &[]);
}

/// The PCR indices of a `TPML_PCR_SELECTION` that selects in the SHA-256 bank only, ascending.
fn read_selection(a: &mut Reader<'_>) -> Result<Vec<u8>, AttestError> {
    let banks = a.u32()?;
    let mut indices = Vec::new();
    for _ in 0..banks {
        let hash = a.u16()?;
        let bitmap = a.sized_u8()?;
        let selected: Vec<usize> = bitmap
            .iter()
            .enumerate()
            .flat_map(|(byte, bits)| {
                (0..8).filter(move |bit| bits & (1 << bit) != 0).map(move |bit| byte * 8 + bit)
            })
            .collect();
        if hash != TPM_ALG_SHA256 {
            if !selected.is_empty() {
                return Err(AttestError::SelectionMismatch);
            }
            continue;
        }
        for index in selected {
            indices.push(u8::try_from(index).map_err(|_| AttestError::Malformed("the PCR selection"))?);
        }
    }
    indices.sort_unstable();
    indices.dedup();
    Ok(indices)
}

/// An ECDSA scalar as 32 bytes: TPMs drop leading zero bytes.
fn left_pad(scalar: &[u8]) -> Result<[u8; 32], AttestError> {
    let scalar = &scalar[scalar.iter().take_while(|&&b| b == 0).count()..];
    if scalar.len() > 32 {
        return Err(AttestError::Malformed("an ECDSA signature scalar is longer than 32 bytes"));
    }
    let mut out = [0u8; 32];
    out[32 - scalar.len()..].copy_from_slice(scalar);
    Ok(out)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
