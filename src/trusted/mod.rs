//! The trusted key provider's parts: keys released only to hosts whose TPM attests a known base image.
//!
//! So far, the verifier's side of attestation, in pure Rust with no TPM at hand: checking a TPM 2.0
//! quote, its signature and its PCR digest ([`quote`]), and binding an attestation key to an
//! endorsement key by MakeCredential ([`credential`]).

pub mod credential;
pub mod quote;
mod tpm;

pub use tpm::AttestError;
