//! The messages between a trusted host and the attestation authority: JSON over HTTPS, binary fields
//! in standard base64. The flow, and why each step is there, is in `docs/TRUSTED.md`.
//!
//! ```text
//! POST /v1/attest/challenge  Enrol          -> AttestChallenge  EK checked; nonce sealed to EK + AK
//! POST /v1/attest            Evidence       -> Token            quote over the nonce; image matched
//! POST /v1/keys/challenge    {}             -> KeyChallenge     a fresh nonce for one key request
//! POST /v1/keys              KeyRequest     -> KeyReply         token + a fresh quote by its AK
//! any refusal: 4xx/5xx       Refusal { code, message }
//! ```
//!
//! A challenge lives in the memory of the replica that issued it, once: both requests of a step go to
//! the same replica. Tokens are verified by every replica that shares the policy.

use serde::{Deserialize, Serialize};

/// The first request of attestation: who the host is, and the attestation key it will quote with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrol {
    /// The endorsement key's `TPMT_PUBLIC`.
    #[serde(with = "b64")]
    pub ek_public: Vec<u8>,
    /// Its certificate (DER) from the TPM's NV, or empty when it has none.
    #[serde(default, with = "b64")]
    pub ek_certificate: Vec<u8>,
    /// The attestation key's `TPMT_PUBLIC`.
    #[serde(with = "b64")]
    pub ak_public: Vec<u8>,
}

/// The authority's answer: a nonce only the TPM of that EK can recover, into that AK.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestChallenge {
    /// Names this challenge in the next request.
    pub challenge: String,
    /// The credential's `TPM2B_ID_OBJECT`.
    #[serde(with = "b64")]
    pub id_object: Vec<u8>,
    /// The credential's `TPM2B_ENCRYPTED_SECRET`.
    #[serde(with = "b64")]
    pub encrypted_secret: Vec<u8>,
    /// The SHA-256 PCRs to quote, ascending.
    pub pcrs: Vec<u8>,
}

/// A quote answering a challenge.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// The challenge answered.
    pub challenge: String,
    /// The attestation key's `TPMT_PUBLIC`.
    #[serde(with = "b64")]
    pub ak_public: Vec<u8>,
    /// The `TPMS_ATTEST` the TPM signed.
    #[serde(with = "b64")]
    pub attest: Vec<u8>,
    /// Its `TPMT_SIGNATURE`.
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
    /// The values of the quoted PCRs, in the order of the challenge's `pcrs`, lower-case hex.
    pub pcr_values: Vec<String>,
}

/// A signed statement that a host attested: bearer of nothing without its TPM (see [`KeyRequest`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// The token (an ES256 JWT).
    pub token: String,
    /// Seconds it is valid for.
    pub expires_in: u64,
    /// The base image the host was found running.
    pub image: ImageInfo,
}

/// A base image, as the authority names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInfo {
    /// Its id: the SHA-256 of its PCR values, hex (see `docs/TRUSTED.md`).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// A nonce for one key request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyChallenge {
    /// Names this challenge in the key request.
    pub challenge: String,
    /// What the quote must carry.
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// The SHA-256 PCRs to quote, ascending.
    pub pcrs: Vec<u8>,
}

/// What a key request asks for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum KeyOp {
    /// A new KEK (named `name` at the key server, if given; the same name gives the same key).
    Create {
        /// The name asked for.
        name: Option<String>,
    },
    /// The KEK with this id.
    Get {
        /// The id the authority gave when it was created.
        id: String,
    },
}

/// A key request: the token, and a quote by the AK it names over a fresh nonce, which only that
/// host's TPM can make (a copied token is worth nothing elsewhere).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    /// From [`Token`].
    pub token: String,
    /// The quote over the [`KeyChallenge`]'s nonce.
    pub evidence: Evidence,
    /// What is asked.
    pub key: KeyOp,
}

/// A KEK released.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyReply {
    /// The key's id at the authority.
    pub id: String,
    /// The 32 key bytes.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
}

impl core::fmt::Debug for KeyReply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyReply").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Drop for KeyReply {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// Why the authority refused, for programs: the host acts on this, never on the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RefusalCode {
    /// The request does not parse or breaks the protocol.
    BadRequest,
    /// The EK is neither listed nor certified by a trusted TPM CA.
    UntrustedEk,
    /// No such challenge, or it was used already.
    UnknownChallenge,
    /// The challenge is older than the authority allows.
    StaleChallenge,
    /// The quote does not verify (signature, nonce, PCR digest, key).
    BadQuote,
    /// The PCR values match no base image in the policy.
    UnknownImage,
    /// The token is forged, altered or not a token.
    BadToken,
    /// The token has expired: attest again.
    ExpiredToken,
    /// The token was issued to another host.
    OtherHost,
    /// The key server does not hold the key.
    KeyNotFound,
    /// The key server says the key may not be used.
    KeyRevoked,
    /// The key server cannot be reached or failed (transient).
    KeyServer,
    /// The authority failed on its side (transient).
    Internal,
}

/// A refusal's body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// What went wrong, for programs.
    pub code: RefusalCode,
    /// What went wrong, for a person.
    pub message: String,
}

/// Binary fields as standard base64.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
