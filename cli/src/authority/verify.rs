//! The authority's judgements: is this EK trusted, does this quote prove this challenge and a known
//! base image, is this token ours, unexpired and this host's. Each refusal carries a code the host acts
//! on and one line for a person.

use super::policy::{AuthConfig, Image, Policy, image_id};
use sectorcrypt::trusted::credential::{EkKey, ek_id, ek_key};
use sectorcrypt::trusted::protocol::{Evidence, Refusal, RefusalCode};
use sectorcrypt::trusted::quote::{ak_name, verify_quote};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

pub(crate) fn refuse(code: RefusalCode, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

/// The EK's id, if the policy trusts it: listed by itself, or certified by a trusted TPM CA.
pub(crate) fn check_ek(policy: &Policy, ek_public: &[u8], certificate: &[u8]) -> Result<String, Refusal> {
    let id = ek_id(ek_public).map_err(|err| refuse(RefusalCode::UntrustedEk, err.to_string()))?;
    if policy.eks.contains(&id) {
        return Ok(id);
    }
    if certificate.is_empty() {
        return Err(refuse(
            RefusalCode::UntrustedEk,
            format!("endorsement key {id} is not in the policy and the TPM has no EK certificate"),
        ));
    }
    let untrusted = |why: String| refuse(RefusalCode::UntrustedEk, format!("endorsement key {id}: {why}"));
    let (_, cert) = X509Certificate::from_der(certificate)
        .map_err(|_| untrusted("its certificate does not parse".into()))?;
    if !cert.validity().is_valid() {
        return Err(untrusted("its certificate is outside its validity period".into()));
    }
    let signed = policy.cas.iter().any(|der| {
        X509Certificate::from_der(der).is_ok_and(|(_, ca)| {
            ca.subject() == cert.issuer() && cert.verify_signature(Some(ca.public_key())).is_ok()
        })
    });
    if !signed {
        return Err(untrusted(format!(
            "its certificate (issuer {}) is not signed by a trusted TPM CA, and the key is not in the policy",
            cert.issuer()
        )));
    }
    let key = ek_key(ek_public).map_err(|err| untrusted(err.to_string()))?;
    let same = match (key, cert.public_key().parsed()) {
        (EkKey::Rsa { modulus, exponent }, Ok(PublicKey::RSA(rsa))) => {
            strip_zeros(rsa.modulus) == modulus.as_slice()
                && strip_zeros(rsa.exponent) == strip_zeros(&exponent.to_be_bytes())
        }
        (EkKey::Ecc { x, y }, Ok(PublicKey::EC(point))) => point.data() == [&[4u8][..], &x, &y].concat(),
        _ => false,
    };
    if !same {
        return Err(untrusted("its certificate certifies another key".into()));
    }
    Ok(id)
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// Checks a quote answering `nonce` by the AK named `expected_ak` (hex), over the configured PCRs,
/// and returns the AK's name (hex) and the imported image the PCRs match.
pub(crate) fn check_evidence<'p>(
    config: &AuthConfig,
    policy: &'p Policy,
    evidence: &Evidence,
    nonce: &[u8],
    expected_ak: &str,
) -> Result<(String, &'p Image), Refusal> {
    let bad = |why: String| refuse(RefusalCode::BadQuote, why);
    let name = ak_name(&evidence.ak_public).map_err(|err| bad(err.to_string()))?;
    if hex::encode(&name) != expected_ak {
        return Err(refuse(
            RefusalCode::OtherHost,
            "the quote is signed by another attestation key than the one this was issued to",
        ));
    }
    if evidence.pcr_values.len() != config.pcrs.len() {
        return Err(bad(format!("{} PCR values for {} PCRs", evidence.pcr_values.len(), config.pcrs.len())));
    }
    let mut values = Vec::with_capacity(config.pcrs.len());
    for (index, text) in config.pcrs.iter().zip(&evidence.pcr_values) {
        let value: [u8; 32] = hex::decode(text)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad(format!("PCR {index}'s value is not 64 hex digits")))?;
        values.push((*index, value));
    }
    verify_quote(&evidence.ak_public, &evidence.attest, &evidence.signature, nonce, &values)
        .map_err(|err| bad(err.to_string()))?;
    match policy.image_matching(&config.pcrs, &values) {
        Some(image) => Ok((hex::encode(&name), image)),
        None => Err(refuse(
            RefusalCode::UnknownImage,
            format!(
                "this host runs base image {} (by its PCRs {}), which is not in the policy: export it from an upgraded test host and import it (sectorcrypt authority image import)",
                image_id(&values),
                ranges(&config.pcrs)
            ),
        )),
    }
}

/// `0-7`, `0,2,4-7`.
pub(crate) fn ranges(pcrs: &[u8]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < pcrs.len() {
        let mut j = i;
        while j + 1 < pcrs.len() && pcrs[j + 1] == pcrs[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { pcrs[i].to_string() } else { format!("{}-{}", pcrs[i], pcrs[j]) });
        i = j + 1;
    }
    parts.join(",")
}
