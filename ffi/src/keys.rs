//! Key providers, as C names them: a spec string such as `native:/etc/sectorcrypt/kdk`.

use crate::args::text;
use crate::error::guard;
use sectorcrypt::keys::open_provider;
use std::ffi::{c_char, c_int};

/// Checks that the key provider `key_provider` names can be used: the spec parses and the provider
/// opens (for `native:PATH`, the KDK file exists, is readable and well formed). Opening a disk still
/// needs the provider to hold that disk's key. Useful before a server starts serving.
///
/// # Safety
/// `key_provider` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_key_provider_check(key_provider: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: the caller's guarantee.
        let spec = unsafe { text(key_provider, "key_provider")? };
        open_provider(spec)?;
        Ok(())
    })
}
