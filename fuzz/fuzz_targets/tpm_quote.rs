//! The attestation verifier's parsers (an attestation key's public area, a signature, an attestation, an
//! endorsement key for MakeCredential): any bytes parse or fail cleanly, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| sectorcrypt::trusted::quote::fuzz_parse(input));
