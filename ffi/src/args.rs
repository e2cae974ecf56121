//! Turning C arguments into Rust values, refusing what cannot be valid (NULL, a length that would wrap
//! the address space, a string that is not UTF-8) before anything is touched.

use crate::error::Failure;
use std::ffi::{CStr, c_char};

/// The string `p` points to, named `what` in the error.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives and stays unchanged for `'a`.
pub(crate) unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: the caller guarantees a live NUL-terminated string.
    let text = unsafe { CStr::from_ptr(p) };
    text.to_str().map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// Like [`text`], but NULL is `None`.
///
/// # Safety
/// As [`text`].
pub(crate) unsafe fn optional_text<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded.
    unsafe { text(p, what) }.map(Some)
}

fn check_span(p: *const u8, len: usize, what: &str) -> Result<(), Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    if len > isize::MAX as usize || (p as usize).checked_add(len).is_none() {
        return Err(Failure::invalid(format!("{what}: {len} bytes do not fit in memory")));
    }
    Ok(())
}

/// `len` bytes at `p` (an empty slice for `len == 0`, whatever `p` is).
///
/// # Safety
/// For `len > 0`, `p` is NULL or valid for `len` bytes of reads, unchanged for `'a` by anyone else.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    check_span(p, len, what)?;
    // SAFETY: non-NULL and in range (checked), valid for reads (the caller's guarantee).
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// `len` writable bytes at `p` (an empty slice for `len == 0`, whatever `p` is).
///
/// # Safety
/// For `len > 0`, `p` is NULL or valid for `len` bytes of reads and writes, and no one else touches
/// them for `'a`.
pub(crate) unsafe fn bytes_mut<'a>(p: *mut u8, len: usize, what: &str) -> Result<&'a mut [u8], Failure> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_span(p, len, what)?;
    // SAFETY: non-NULL and in range (checked), valid and exclusive (the caller's guarantee).
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Whether `[a, a + len)` and `[b, b + len)` share a byte.
pub(crate) fn overlap(a: *const u8, b: *const u8, len: usize) -> bool {
    let (a, b) = (a as usize, b as usize);
    len > 0 && a < b.saturating_add(len) && b < a.saturating_add(len)
}

/// Stores `value` in `*out`, or fails if `out` is NULL (before anything was made).
pub(crate) fn check_out<T>(out: *mut *mut T) -> Result<(), Failure> {
    if out.is_null() { Err(Failure::invalid("the output pointer is NULL")) } else { Ok(()) }
}

/// Hands `value` to C: `*out` owns it until the matching free function.
///
/// # Safety
/// `out` is non-NULL ([`check_out`]) and valid for a pointer write.
pub(crate) unsafe fn give<T>(out: *mut *mut T, value: T) {
    // SAFETY: the caller guarantees `out`.
    unsafe { out.write(Box::into_raw(Box::new(value))) };
}
