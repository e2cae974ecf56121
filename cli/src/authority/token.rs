//! Tokens: ES256 JWTs (jsonwebtoken) signed with the policy's `token.key`, which every replica sharing
//! the policy holds, so each verifies the others' tokens. Verification pins the algorithm to ES256
//! (a token saying `none`, or HS256 keyed with the public key, is refused), the issuer, the audience
//! and the expiry with no leeway. A token names the host's EK and AK: only that AK's quotes redeem it.

use super::policy::AuthConfig;
use super::verify::refuse;
use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use sectorcrypt::trusted::protocol::{Refusal, RefusalCode};
use std::path::Path;
use zeroize::Zeroizing;

/// Whom tokens are for: the Key Provider Service.
const AUDIENCE: &str = "sectorcrypt-key-provider";

/// What a token says.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: String,
    pub(crate) aud: String,
    /// The EK's id.
    pub(crate) sub: String,
    /// The AK's name, hex.
    pub(crate) ak: String,
    /// The base image's id.
    pub(crate) img: String,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
}

pub(crate) struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Writes a new token key to `path` (a new file, mode 0600).
pub(crate) fn generate(path: &Path) -> Result<()> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("cannot generate a token key"))?;
    let pem = Zeroizing::new(super::policy::pem("PRIVATE KEY", pkcs8.as_ref()));
    let file = crate::output::new_file(path, false, 0o600)?;
    std::io::Write::write_all(&mut file.file(), pem.as_bytes())?;
    Ok(file.commit()?)
}

impl TokenKeys {
    pub(crate) fn load(path: &Path) -> Result<TokenKeys> {
        let pem = sectorcrypt::files::read_small(path, 1 << 16).with_context(|| {
            format!("cannot read the token key {} (run `authority init`)", path.display())
        })?;
        let pem = Zeroizing::new(pem.to_vec());
        let Some(Ok(item)) = x509_parser::pem::Pem::iter_from_buffer(&pem).next() else {
            bail!("{}: not a PEM file", path.display());
        };
        let der = Zeroizing::new(item.contents);
        let rng = ring::rand::SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|_| anyhow::anyhow!("{}: not a PKCS#8 ECDSA P-256 key", path.display()))?;
        let point = pair.public_key().as_ref();
        let decoding = DecodingKey::from_ec_components(
            &URL_SAFE_NO_PAD.encode(&point[1..33]),
            &URL_SAFE_NO_PAD.encode(&point[33..65]),
        )?;
        let kid = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(point)[..8]);
        Ok(TokenKeys { encoding: EncodingKey::from_ec_der(&der), decoding, kid })
    }

    /// A token for the host of EK `ek`, AK `ak`, found running image `img`.
    pub(crate) fn issue(
        &self,
        config: &AuthConfig,
        ek: &str,
        ak: &str,
        img: &str,
    ) -> Result<String, Refusal> {
        let iat = now();
        let claims = Claims {
            iss: config.issuer.clone(),
            aud: AUDIENCE.into(),
            sub: ek.into(),
            ak: ak.into(),
            img: img.into(),
            iat,
            exp: iat + config.token_lifetime.as_secs(),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|err| refuse(RefusalCode::Internal, format!("cannot sign a token: {err}")))
    }

    /// The claims of a token this policy's key signed, for this audience, unexpired.
    pub(crate) fn check(&self, config: &AuthConfig, token: &str) -> Result<Claims, Refusal> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[&config.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) => Ok(data.claims),
            Err(err) if *err.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                Err(refuse(RefusalCode::ExpiredToken, "the token has expired: attest again"))
            }
            Err(err) => Err(refuse(RefusalCode::BadToken, format!("the token is not valid: {err}"))),
        }
    }
}
