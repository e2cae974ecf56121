//! The trusted key provider's parts: keys released only to hosts whose TPM attests a known base image.
//!
//! So far, the verifier's side of attestation, in pure Rust with no TPM at hand: checking a TPM 2.0
//! quote, its signature and its PCR digest ([`quote`]), and binding an attestation key to an
//! endorsement key by MakeCredential ([`credential`]); and the host's side of an image: the
//! description of a base image by the PCRs a host measured ([`image`]).

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
