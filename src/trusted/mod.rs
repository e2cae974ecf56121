//! The trusted key provider's parts: keys released only to hosts whose TPM attests a known base image.
//!
//! So far, the verifier's side of attestation: checking a TPM 2.0 quote, its signature and its PCR
//! digest in pure Rust, with no TPM at hand ([`quote`]).

pub mod quote;
