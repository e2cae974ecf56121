//! The key persistence store's parser: any bytes as a store file parse or fail cleanly, and a header
//! that parses encodes back to the same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| sectorcrypt::keys::persist::fuzz_parse(input));
