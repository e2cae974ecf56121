//! The KMIP client's hand-written decoding: any bytes as a key server's answer go through the TTLV
//! decoder (which must re-encode what it accepts to the same bytes) and every reading of a response
//! (status, identifiers, state, key material, versions); nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| sectorcrypt::keys::kmip::fuzz_response(input));
