//! The host's side of attestation, on its TPM through tss-esapi: its endorsement key (EK) and the EK's
//! certificate, an attestation key (AK) created under the EK, ActivateCredential, and quotes.
//!
//! The EK is the RSA 2048 key of the TCG's default (low-range) template, which every TPM 2.0 can
//! derive from its endorsement seed and for which manufacturers (and `swtpm_setup`) write a
//! certificate to NV index 0x01c00002. It is created again for every operation (the same seed gives
//! the same key), as is the AK from the blob [`create_ak`] returned, because no resource manager may
//! be there to keep anything loaded: every object and session made here is flushed on every path.
//! The AK is an ECC P-256 ECDSA/SHA-256 restricted signing key, `fixedTPM | fixedParent`: the only
//! kind the verifier ([`super::quote`]) accepts.

use super::AttestError;
use crate::keys::persist::tpm::{context, fail, pcr_selection};
use crate::keys::persist::{TpmError, TpmFault};
use tss_esapi::Context;
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ak, ek};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{
    AsymmetricAlgorithm, HashingAlgorithm, SignatureSchemeAlgorithm,
};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, EncryptedSecret, IdObject, Private, Public, SignatureScheme, SymmetricDefinition,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use zeroize::Zeroizing;

/// Who the host is: its EK and, where the TPM holds one, the EK's certificate.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The EK's `TPMT_PUBLIC`.
    pub ek_public: Vec<u8>,
    /// The EK certificate (DER), empty when the TPM has none.
    pub ek_certificate: Vec<u8>,
}

/// An attestation key: its public area and its private part wrapped by the EK (useless elsewhere).
#[derive(Clone, Debug)]
pub struct AttestationKey {
    /// `TPMT_PUBLIC`.
    pub public: Vec<u8>,
    /// `TPM2B_PRIVATE`'s contents, as the TPM wrapped them.
    pub private: Vec<u8>,
}

/// A quote, and the values of the PCRs it covers.
#[derive(Clone, Debug)]
pub struct Quote {
    /// The `TPMS_ATTEST` the TPM signed.
    pub attest: Vec<u8>,
    /// Its `TPMT_SIGNATURE`.
    pub signature: Vec<u8>,
    /// The PCRs' values, ascending.
    pub pcrs: Vec<(u8, [u8; 32])>,
}

fn attest_error(err: TpmError) -> AttestError {
    AttestError::Tpm { unavailable: err.fault == TpmFault::Unavailable, detail: err.detail }
}

/// Runs `f` with the EK loaded, and flushes it whatever `f` returns.
fn with_ek<T>(
    tcti: &str,
    f: impl FnOnce(&mut Context, KeyHandle) -> Result<T, TpmError>,
) -> Result<T, AttestError> {
    let mut ctx = context(tcti).map_err(attest_error)?;
    let ek = ek::create_ek_object(&mut ctx, AsymmetricAlgorithm::Rsa, None)
        .map_err(fail(TpmFault::Failed, "cannot create the endorsement key"))
        .map_err(attest_error)?;
    let out = f(&mut ctx, ek);
    let flushed =
        ctx.flush_context(ek.into()).map_err(fail(TpmFault::Failed, "flushing the endorsement key"));
    let out = out.map_err(attest_error)?;
    flushed.map_err(attest_error)?;
    Ok(out)
}

/// Runs `f` with the AK loaded under the EK, and flushes it whatever `f` returns.
fn with_ak<T>(
    tcti: &str,
    key: &AttestationKey,
    f: impl FnOnce(&mut Context, KeyHandle, KeyHandle) -> Result<T, TpmError>,
) -> Result<T, AttestError> {
    let corrupt = |_| AttestError::Malformed("the attestation key's blob");
    let public = Public::unmarshall(&key.public).map_err(corrupt)?;
    let private = Private::try_from(key.private.clone()).map_err(corrupt)?;
    with_ek(tcti, |ctx, ek| {
        let ak = ak::load_ak(ctx, ek, None, private, public)
            .map_err(fail(TpmFault::Failed, "cannot load the attestation key"))?;
        let out = f(ctx, ek, ak);
        let flushed =
            ctx.flush_context(ak.into()).map_err(fail(TpmFault::Failed, "flushing the attestation key"));
        let out = out?;
        flushed?;
        Ok(out)
    })
}

/// The host's EK and its certificate, from the TPM that `tcti` reaches.
pub fn identity(tcti: &str) -> Result<Identity, AttestError> {
    with_ek(tcti, |ctx, ek| {
        let (public, _, _) = ctx.read_public(ek).map_err(fail(TpmFault::Failed, "reading the EK"))?;
        let ek_public = public.marshall().map_err(fail(TpmFault::Failed, "marshalling the EK"))?;
        // A TPM without a certificate in NV is usable when the authority lists its EK.
        let selection = AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048);
        let ek_certificate = ek::retrieve_ek_pubcert(ctx, selection).unwrap_or_default();
        Ok(Identity { ek_public, ek_certificate })
    })
}

/// A new attestation key under the EK.
pub fn create_ak(tcti: &str) -> Result<AttestationKey, AttestError> {
    with_ek(tcti, |ctx, ek| {
        let created =
            ak::create_ak(ctx, ek, HashingAlgorithm::Sha256, SignatureSchemeAlgorithm::EcDsa, None, None)
                .map_err(fail(TpmFault::Failed, "cannot create an attestation key"))?;
        let public = created.out_public.marshall().map_err(fail(TpmFault::Failed, "marshalling the AK"))?;
        Ok(AttestationKey { public, private: created.out_private.value().to_vec() })
    })
}

/// The contents of a `TPM2B_*`, whose size must match.
fn contents(bytes: &[u8], what: &'static str) -> Result<Vec<u8>, AttestError> {
    match bytes {
        [hi, lo, rest @ ..] if usize::from(u16::from_be_bytes([*hi, *lo])) == rest.len() => Ok(rest.to_vec()),
        _ => Err(AttestError::Malformed(what)),
    }
}

/// ActivateCredential: the secret the authority sealed to this TPM's EK and to `key`'s name (the
/// `TPM2B_ID_OBJECT` and `TPM2B_ENCRYPTED_SECRET` of [`super::credential::make_credential`]).
pub fn activate(
    tcti: &str,
    key: &AttestationKey,
    id_object: &[u8],
    encrypted_secret: &[u8],
) -> Result<Zeroizing<Vec<u8>>, AttestError> {
    let id = IdObject::try_from(contents(id_object, "the credential")?)
        .map_err(|_| AttestError::Malformed("the credential"))?;
    let secret = EncryptedSecret::try_from(contents(encrypted_secret, "the credential's secret")?)
        .map_err(|_| AttestError::Malformed("the credential's secret"))?;
    with_ak(tcti, key, |ctx, ek, ak| {
        // The EK's policy is PolicySecret(endorsement hierarchy): proven in a policy session.
        let session = ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(fail(TpmFault::Failed, "cannot start a policy session"))?
            .ok_or_else(|| TpmError { fault: TpmFault::Failed, detail: "the TPM gave no session".into() })?;
        let run = |ctx: &mut Context| -> Result<Zeroizing<Vec<u8>>, TpmError> {
            let policy =
                PolicySession::try_from(session).map_err(fail(TpmFault::Failed, "policy session"))?;
            ctx.execute_with_nullauth_session(|c| {
                c.policy_secret(
                    policy,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
            .map_err(fail(TpmFault::Failed, "PolicySecret"))?;
            let digest = ctx
                .execute_with_sessions((Some(AuthSession::Password), Some(session), None), |c| {
                    c.activate_credential(ak, ek, id, secret)
                })
                .map_err(fail(TpmFault::Failed, "ActivateCredential refused the credential"))?;
            Ok(Zeroizing::new(digest.value().to_vec()))
        };
        let out = run(ctx);
        // ActivateCredential ends a policy session that succeeded; flush it only if it is left.
        let _ = ctx.flush_context(ObjectHandle::from(SessionHandle::from(session)));
        out
    })
}

/// A quote by `key` over `nonce` and the SHA-256 PCRs `pcrs` (ascending), with their values.
pub fn quote(tcti: &str, key: &AttestationKey, nonce: &[u8], pcrs: &[u8]) -> Result<Quote, AttestError> {
    let data = Data::try_from(nonce.to_vec()).map_err(|_| AttestError::Malformed("the nonce is too long"))?;
    let selection = pcr_selection(pcrs).map_err(|_| AttestError::Malformed("the PCR selection"))?;
    let (attest, signature) = with_ak(tcti, key, |ctx, _ek, ak| {
        let (attest, signature) = ctx
            .execute_with_nullauth_session(|c| c.quote(ak, data, SignatureScheme::Null, selection))
            .map_err(fail(TpmFault::Failed, "cannot quote"))?;
        let attest = attest.marshall().map_err(fail(TpmFault::Failed, "marshalling the quote"))?;
        let signature = signature.marshall().map_err(fail(TpmFault::Failed, "marshalling the signature"))?;
        Ok((attest, signature))
    })?;
    // Read after quoting: if a PCR was extended in between, the authority finds the digest differs.
    let pcrs = crate::keys::persist::tpm::read_pcrs(tcti, pcrs).map_err(attest_error)?;
    Ok(Quote { attest, signature, pcrs })
}
