//! The C ABI of sectorcrypt, for storage filters and hypervisor data paths written in C (nbdkit, QEMU's
//! block layer, SPDK, vSphere storage filters).
//!
//! The header `include/sectorcrypt.h` is generated from this crate by cbindgen (`ffi/cbindgen.toml`)
//! and committed; `tests/header.rs` fails when it is stale. The rules every function follows:
//!
//! - It returns 0 on success or a negative `SC_E*` code; the calling thread's last failure is then
//!   described by [`sc_last_error`] (one line), [`sc_last_errno`] (the OS error behind it, if any) and
//!   [`sc_last_error_transient`] (whether the same call may succeed later).
//! - A NULL pointer, a length that does not fit, a size out of range: `SC_EINVAL`, never a crash. No
//!   Rust panic crosses the boundary: one is caught and reported as `SC_EINTERNAL`.
//! - Key bytes are copied once, into memory that is zeroized when the object is freed and that a core
//!   dump leaves out; the caller's buffer is never kept.
//! - Objects (`sc_xts`, `sc_volume`) may be used from several threads at once; each is freed exactly
//!   once by its `_free`/`_close` function, which accepts NULL.

#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]

mod args;
mod error;
mod keys;
mod storage;
mod volume;
mod xts;

pub use error::*;
pub use keys::*;
pub use storage::*;
pub use volume::*;
pub use xts::*;

use std::ffi::{c_char, c_int};

/// The version of this ABI. It grows when a function or a struct changes incompatibly; functions
/// added later leave it alone. Compare [`sc_abi_version`] with the header's `SC_ABI_VERSION`.
pub const SC_ABI_VERSION: c_int = 1;

/// The ABI version of the library that is linked (see `SC_ABI_VERSION`).
#[unsafe(no_mangle)]
pub extern "C" fn sc_abi_version() -> c_int {
    SC_ABI_VERSION
}

/// The library's version, e.g. `"0.1.0"` (a static string).
#[unsafe(no_mangle)]
pub extern "C" fn sc_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
