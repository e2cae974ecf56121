//! The trusted key provider: keys released only to hosts whose TPM attests a known base image, as
//! vSphere Trust Authority releases them (`docs/TRUSTED.md` has the roles and the message flow).
//!
//! The verifier's checks, in pure Rust with no TPM at hand, which the attestation authority runs:
//! a TPM 2.0 quote, its signature and its PCR digest ([`quote`]), and the binding of an attestation
//! key to an endorsement key by MakeCredential ([`credential`]). The host's side, on its TPM through
//! tss-esapi: the EK, an AK, ActivateCredential and quotes ([`host`], feature `tpm`), and the
//! description of a base image by the PCRs it measured ([`image`]). Between the two: the messages
//! ([`protocol`]), HTTPS with failover ([`client`]), and the provider that runs the flow and keeps
//! keys persisted ([`TrustedProvider`], configured by [`TrustedConfig`]).

pub mod client;
pub mod config;
pub mod credential;
#[cfg(feature = "tpm")]
pub mod host;
pub mod image;
pub mod protocol;
#[cfg(feature = "tpm")]
mod provider;
pub mod quote;
mod tpm;

pub use config::TrustedConfig;
pub use protocol::ImageInfo;
#[cfg(feature = "tpm")]
pub use provider::TrustedProvider;
pub use tpm::AttestError;
