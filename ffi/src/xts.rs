//! `sc_xts`: the cipher alone, on buffers of data units with plain64 tweaks (the CLI's `raw` command).

use crate::args::{bytes, bytes_mut, check_out, give, optional_text, overlap};
use crate::error::{Failure, guard};
use sectorcrypt::{BackendChoice, DataUnits, Xts, XtsKey};
use std::ffi::{c_char, c_int};

/// An XTS-AES key expanded for one backend. Safe to share between threads.
pub struct sc_xts {
    xts: Xts,
}

/// Makes a cipher from `key` (Key1 || Key2: 32 bytes for XTS-AES-128, 64 for XTS-AES-256; equal halves
/// are refused) on `backend` (`"auto"` or NULL for the fastest this CPU has, or `"vaes512"`,
/// `"vaes256"`, `"aesni"`, `"portable"`). The key bytes are copied; the caller may wipe its own.
/// On success `*out` owns the cipher until `sc_xts_free`.
///
/// # Safety
/// `key` points to `key_len` readable bytes; `backend` is NULL or a NUL-terminated string; `out` is
/// NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_xts_new(
    key: *const u8,
    key_len: usize,
    backend: *const c_char,
    out: *mut *mut sc_xts,
) -> c_int {
    guard(|| {
        check_out(out)?;
        // SAFETY: the caller's guarantees, checked for NULL by the helpers.
        let (key, backend) = unsafe { (bytes(key, key_len, "key")?, optional_text(backend, "backend")?) };
        let choice: BackendChoice = backend.unwrap_or("auto").parse()?;
        let key = XtsKey::from_bytes(key)?;
        let xts = Xts::new(&key, choice)?;
        // SAFETY: `out` is non-NULL (checked) and writable (the caller's guarantee).
        unsafe { give(out, sc_xts { xts }) };
        Ok(())
    })
}

/// Frees a cipher and wipes its key schedule. NULL is ignored.
///
/// # Safety
/// `xts` is NULL or came from `sc_xts_new` and is not used after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_xts_free(xts: *mut sc_xts) {
    if !xts.is_null() {
        // SAFETY: the caller hands back ownership of a box made by `sc_xts_new`.
        drop(unsafe { Box::from_raw(xts) });
    }
}

/// Encrypts `buf` in place: `len` bytes of whole data units of `data_unit` bytes (a power of two from
/// 512 to 131072), the last of which may be shorter but holds at least 16 bytes; unit `i` has tweak
/// number `first_unit + i`. `len == 0` does nothing.
///
/// # Safety
/// `xts` is NULL or a live cipher; `buf` is valid for `len` bytes of reads and writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_xts_encrypt(
    xts: *const sc_xts,
    buf: *mut u8,
    len: usize,
    data_unit: usize,
    first_unit: u64,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { crypt(xts, None, buf, len, data_unit, first_unit, 1, false) }
}

/// Decrypts `buf` in place; see `sc_xts_encrypt`.
///
/// # Safety
/// As `sc_xts_encrypt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_xts_decrypt(
    xts: *const sc_xts,
    buf: *mut u8,
    len: usize,
    data_unit: usize,
    first_unit: u64,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { crypt(xts, None, buf, len, data_unit, first_unit, 1, true) }
}

/// Encrypts `len` bytes of `src` into `dst`, as fast as in place (no copy is made). The buffers must
/// not overlap, except that `src == dst` is the same as `sc_xts_encrypt`.
///
/// # Safety
/// `xts` is NULL or a live cipher; `src` is valid for `len` bytes of reads and `dst` for `len` bytes
/// of writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_xts_encrypt_to(
    xts: *const sc_xts,
    src: *const u8,
    dst: *mut u8,
    len: usize,
    data_unit: usize,
    first_unit: u64,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { crypt(xts, Some(src), dst, len, data_unit, first_unit, 1, false) }
}

/// Decrypts `len` bytes of `src` into `dst`; see `sc_xts_encrypt_to`.
///
/// # Safety
/// As `sc_xts_encrypt_to`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_xts_decrypt_to(
    xts: *const sc_xts,
    src: *const u8,
    dst: *mut u8,
    len: usize,
    data_unit: usize,
    first_unit: u64,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { crypt(xts, Some(src), dst, len, data_unit, first_unit, 1, true) }
}

/// As `sc_xts_encrypt`, but unit `i` has tweak number `first_unit + i * step` (`step >= 1`; 8 is
/// LUKS2 on 4 KiB sectors, whose tweaks count 512-byte sectors).
///
/// # Safety
/// As `sc_xts_encrypt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_xts_encrypt_step(
    xts: *const sc_xts,
    buf: *mut u8,
    len: usize,
    data_unit: usize,
    first_unit: u64,
    step: u64,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { crypt(xts, None, buf, len, data_unit, first_unit, step, false) }
}

/// As `sc_xts_decrypt`, with a tweak step; see `sc_xts_encrypt_step`.
///
/// # Safety
/// As `sc_xts_encrypt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_xts_decrypt_step(
    xts: *const sc_xts,
    buf: *mut u8,
    len: usize,
    data_unit: usize,
    first_unit: u64,
    step: u64,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { crypt(xts, None, buf, len, data_unit, first_unit, step, true) }
}

/// The one body of the six functions above: every argument is checked before a byte changes.
///
/// # Safety
/// `xts` is NULL or a live cipher; `src` (if given) and `dst` are valid for `len` bytes (reads, and
/// reads and writes).
#[allow(clippy::too_many_arguments)]
unsafe fn crypt(
    xts: *const sc_xts,
    src: Option<*const u8>,
    dst: *mut u8,
    len: usize,
    data_unit: usize,
    first_unit: u64,
    step: u64,
    decrypt: bool,
) -> c_int {
    guard(|| {
        // SAFETY: the caller guarantees a live cipher or NULL.
        let Some(sc_xts { xts }) = (unsafe { xts.as_ref() }) else {
            return Err(Failure::invalid("the cipher (sc_xts) is NULL"));
        };
        let units = DataUnits::new(data_unit)?.starting_at(first_unit).with_step(step)?;
        if len == 0 {
            return Ok(());
        }
        // `src == dst` is in place; any other overlap would feed the kernels their own output.
        let src = src.filter(|&src| src != dst.cast_const());
        if let Some(src) = src
            && overlap(src, dst, len)
        {
            return Err(Failure::invalid("the source and destination buffers overlap"));
        }
        // SAFETY: the caller guarantees `len` bytes at each pointer; they do not overlap (checked).
        let out = unsafe { bytes_mut(dst, len, if src.is_some() { "dst" } else { "buf" })? };
        match src {
            Some(src) => {
                // SAFETY: as above.
                let src = unsafe { bytes(src, len, "src")? };
                if decrypt {
                    xts.decrypt_units_to(src, out, units)
                } else {
                    xts.encrypt_units_to(src, out, units)
                }
            }
            None if decrypt => xts.decrypt_units(out, units),
            None => xts.encrypt_units(out, units),
        }?;
        Ok(())
    })
}
