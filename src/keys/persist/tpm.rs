//! Sealing the store's storage key with a TPM 2.0, through tss-esapi (the TSS2 ESAPI of the system's
//! libtss2).
//!
//! Sealing: CreatePrimary in the owner hierarchy with the standard ECC P-256 storage template (the TPM
//! derives the same primary from its owner seed every time, so nothing needs to stay loaded), then
//! Create a keyed-hash data object under it holding the secret, `fixedTPM | fixedParent`, with an empty
//! password or, with PCRs, a PolicyPCR policy over their current SHA-256 values. The object's public
//! and private parts are what the store keeps. Unsealing: CreatePrimary again, Load, Unseal (in a
//! policy session that ran PolicyPCR when PCRs are used).
//!
//! A TPM without a resource manager (swtpm, or a bare `/dev/tpm0`) keeps every transient object and
//! session until it is flushed and has room for only a few, so every handle made here is flushed on
//! every path, error paths included.

use super::{TpmError, TpmFault};
use std::str::FromStr;
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::{SessionType, Tss2ResponseCodeKind};
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, EccPoint, KeyedHashScheme, PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Private, Public,
    PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData, SymmetricDefinition,
    SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, Error as TssError};
use zeroize::Zeroizing;

pub(crate) fn fail(fault: TpmFault, doing: &str) -> impl FnOnce(TssError) -> TpmError + '_ {
    move |err| {
        // The TPM's answer decides what the failure means: a blob that does not load in this TPM
        // (integrity check) was sealed by another TPM or before a clear; a failed policy means the
        // PCRs changed.
        let fault = match err {
            TssError::Tss2Error(rc) => match rc.kind() {
                Some(Tss2ResponseCodeKind::Integrity) if fault == TpmFault::Failed => TpmFault::WrongTpm,
                Some(Tss2ResponseCodeKind::PolicyFail | Tss2ResponseCodeKind::PcrChanged) => {
                    TpmFault::PcrMismatch
                }
                _ => fault,
            },
            TssError::WrapperError(_) => fault,
        };
        TpmError { fault, detail: format!("{doing}: {err}") }
    }
}

pub(crate) fn context(tcti: &str) -> Result<Context, TpmError> {
    let conf = TctiNameConf::from_str(tcti).map_err(|err| TpmError {
        fault: TpmFault::Misconfigured,
        detail: format!(
            "{tcti:?} is not a TCTI this build knows (device:PATH, swtpm:host=H,port=P, mssim:...): {err}"
        ),
    })?;
    // The TSS reports a TCTI that cannot connect with a code of its own layer, which says nothing more.
    Context::new(conf)
        .map_err(|_| TpmError { fault: TpmFault::Unavailable, detail: format!("nothing answers at {tcti}") })
}

fn storage_primary_template() -> Result<Public, TssError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_decrypt(true)
        .with_no_da(true)
        .build()?;
    let parameters = PublicEccParametersBuilder::new_restricted_decryption_key(
        SymmetricDefinitionObject::AES_128_CFB,
        EccCurve::NistP256,
    )
    .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

fn sealed_object_template(policy: Option<Digest>) -> Result<Public, TssError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        // With a policy, only the policy may unseal; without, the (empty) password does.
        .with_user_with_auth(policy.is_none())
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(policy.unwrap_or_default())
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

pub(crate) fn pcr_selection(pcrs: &[u8]) -> Result<PcrSelectionList, TssError> {
    let slots = pcrs.iter().map(|&pcr| PcrSlot::try_from(1u32 << pcr)).collect::<Result<Vec<_>, _>>()?;
    PcrSelectionListBuilder::new().with_selection(HashingAlgorithm::Sha256, &slots).build()
}

/// Runs `f` with the storage primary loaded, and flushes it whatever `f` returns.
fn with_primary<T>(
    ctx: &mut Context,
    f: impl FnOnce(&mut Context, KeyHandle) -> Result<T, TpmError>,
) -> Result<T, TpmError> {
    let template = storage_primary_template().map_err(fail(TpmFault::Failed, "storage key template"))?;
    let primary = ctx
        .execute_with_nullauth_session(|c| {
            c.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map_err(fail(TpmFault::Failed, "cannot create the storage primary key"))?
        .key_handle;
    let out = f(ctx, primary);
    let flushed =
        ctx.flush_context(primary.into()).map_err(fail(TpmFault::Failed, "flushing the primary key"));
    let out = out?;
    flushed?;
    Ok(out)
}

/// Starts a policy session (a trial one to compute a digest), runs PolicyPCR over `pcrs` in it, and
/// hands it to `f`; the session is flushed whatever `f` returns.
fn with_pcr_policy<T>(
    ctx: &mut Context,
    pcrs: &[u8],
    trial: bool,
    f: impl FnOnce(&mut Context, AuthSession) -> Result<T, TpmError>,
) -> Result<T, TpmError> {
    let kind = if trial { SessionType::Trial } else { SessionType::Policy };
    let session = ctx
        .start_auth_session(
            None,
            None,
            None,
            kind,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(fail(TpmFault::Failed, "cannot start a policy session"))?
        .ok_or_else(|| TpmError { fault: TpmFault::Failed, detail: "the TPM gave no session".into() })?;
    let run = |ctx: &mut Context| -> Result<T, TpmError> {
        let (attributes, mask) =
            SessionAttributesBuilder::new().with_decrypt(true).with_encrypt(true).build();
        ctx.tr_sess_set_attributes(session, attributes, mask)
            .map_err(fail(TpmFault::Failed, "session attributes"))?;
        let policy = PolicySession::try_from(session).map_err(fail(TpmFault::Failed, "policy session"))?;
        let selection = pcr_selection(pcrs).map_err(fail(TpmFault::Misconfigured, "PCR selection"))?;
        // An empty digest makes the TPM use the PCRs' current values.
        ctx.policy_pcr(policy, Digest::default(), selection).map_err(fail(TpmFault::Failed, "PolicyPCR"))?;
        f(ctx, session)
    };
    let out = run(ctx);
    let flushed = ctx
        .flush_context(SessionHandle::from(session).into())
        .map_err(fail(TpmFault::Failed, "flushing a session"));
    let out = out?;
    flushed?;
    Ok(out)
}

/// Seals `secret` in the TPM that `tcti` reaches (to the current values of `pcrs`, if any); returns
/// the sealed object's marshalled public part and its private part.
pub(crate) fn seal(tcti: &str, secret: &[u8], pcrs: &[u8]) -> Result<(Vec<u8>, Vec<u8>), TpmError> {
    let mut ctx = context(tcti)?;
    let policy = if pcrs.is_empty() {
        None
    } else {
        Some(with_pcr_policy(&mut ctx, pcrs, true, |ctx, session| {
            let policy =
                PolicySession::try_from(session).map_err(fail(TpmFault::Failed, "policy session"))?;
            ctx.policy_get_digest(policy).map_err(fail(TpmFault::Failed, "PolicyGetDigest"))
        })?)
    };
    let template =
        sealed_object_template(policy).map_err(fail(TpmFault::Failed, "sealed object template"))?;
    let data = SensitiveData::try_from(secret.to_vec()).map_err(fail(TpmFault::Failed, "secret"))?;
    with_primary(&mut ctx, |ctx, primary| {
        let created = ctx
            .execute_with_nullauth_session(|c| c.create(primary, template, None, Some(data), None, None))
            .map_err(fail(TpmFault::Failed, "cannot seal the storage key"))?;
        let public = created.out_public.marshall().map_err(fail(TpmFault::Failed, "marshalling"))?;
        Ok((public, created.out_private.value().to_vec()))
    })
}

/// Unseals what [`seal`] returned.
pub(crate) fn unseal(
    tcti: &str,
    public: &[u8],
    private: &[u8],
    pcrs: &[u8],
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let corrupt =
        |_| TpmError { fault: TpmFault::WrongTpm, detail: "the sealed object does not parse".into() };
    let public = Public::unmarshall(public).map_err(corrupt)?;
    let private = Private::try_from(private.to_vec()).map_err(corrupt)?;
    let mut ctx = context(tcti)?;
    with_primary(&mut ctx, |ctx, primary| {
        let object = ctx
            .execute_with_nullauth_session(|c| c.load(primary, private, public))
            .map_err(fail(TpmFault::Failed, "cannot load the sealed storage key"))?;
        let unsealed = if pcrs.is_empty() {
            ctx.execute_with_nullauth_session(|c| c.unseal(ObjectHandle::from(object)))
                .map_err(fail(TpmFault::Failed, "cannot unseal the storage key"))
        } else {
            with_pcr_policy(ctx, pcrs, false, |ctx, session| {
                ctx.execute_with_session(Some(session), |c| c.unseal(ObjectHandle::from(object)))
                    .map_err(fail(TpmFault::PcrMismatch, "cannot unseal the storage key"))
            })
        };
        let flushed = ctx
            .flush_context(ObjectHandle::from(object))
            .map_err(fail(TpmFault::Failed, "flushing the sealed key"));
        let unsealed = Zeroizing::new(unsealed?.value().to_vec());
        flushed?;
        Ok(unsealed)
    })
}

/// The SHA-256 bank's values of `pcrs` (ascending, each 0..=23) in the TPM that `tcti` reaches.
/// PCR_Read creates no object, so nothing is left to flush.
pub(crate) fn read_pcrs(tcti: &str, pcrs: &[u8]) -> Result<Vec<(u8, [u8; 32])>, TpmError> {
    let mut ctx = context(tcti)?;
    let selection = pcr_selection(pcrs).map_err(fail(TpmFault::Misconfigured, "PCR selection"))?;
    let data = tss_esapi::abstraction::pcr::read_all(&mut ctx, selection)
        .map_err(fail(TpmFault::Failed, "cannot read the PCRs"))?;
    let missing = || TpmError { fault: TpmFault::Failed, detail: "the TPM has no SHA-256 PCR bank".into() };
    let bank = data.pcr_bank(HashingAlgorithm::Sha256).ok_or_else(missing)?;
    pcrs.iter()
        .map(|&index| {
            let slot =
                PcrSlot::try_from(1u32 << index).map_err(fail(TpmFault::Misconfigured, "PCR index"))?;
            let value = bank.get_digest(slot).ok_or_else(missing)?;
            let value: [u8; 32] = value.value().try_into().map_err(|_| missing())?;
            Ok((index, value))
        })
        .collect()
}
