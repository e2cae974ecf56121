//! The TPM quote verifier's parsers (attestation key public area, signature, attestation): any bytes
//! parse or fail cleanly, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| sectorcrypt::trusted::quote::fuzz_parse(input));
