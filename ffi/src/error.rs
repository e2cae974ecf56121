//! Error codes, the calling thread's last error, and the guard that keeps panics on this side.

use sectorcrypt::{Error, ErrorKind};
use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Success.
pub const SC_OK: c_int = 0;
/// Not an error: a deep rekey stopped, as `sc_volume_deep_rekey_stop` asked, before its end; the
/// volume is in the middle of it, fully usable, and the next `sc_volume_deep_rekey` resumes it.
pub const SC_STOPPED: c_int = 1;
/// An argument is NULL, out of range or malformed (a length that is not whole data units, an offset
/// past the end, an unknown backend, equal key halves, a bad provider spec, a store too small), or a
/// store holds no sectorcrypt disk at all (no magic in either header copy).
pub const SC_EINVAL: c_int = -1;
/// The key does not unwrap the disk's data key (a damaged wrapped key, or a key of the same id with
/// other bytes).
pub const SC_EKEY: c_int = -2;
/// The key provider cannot be reached or is not ready (transient: retry later).
pub const SC_EUNAVAILABLE: c_int = -3;
/// The key provider refused: it does not hold the disk's key (another KDK), denies this caller, or the
/// key was revoked.
pub const SC_EREFUSED: c_int = -4;
/// The disk's header is damaged (both copies), truncated or of an unknown version, or the files given do
/// not form the group.
pub const SC_ECORRUPT: c_int = -5;
/// A file, member or key does not exist.
pub const SC_ENOTFOUND: c_int = -6;
/// The target exists already (creation never overwrites).
pub const SC_EEXIST: c_int = -7;
/// Not permitted: a read-only volume written to, or the OS denied access.
pub const SC_EPERM: c_int = -8;
/// Busy: another process holds the disk open for writing, or the OS said to try again (transient).
pub const SC_EBUSY: c_int = -9;
/// This CPU or this build cannot do it (e.g. a backend the CPU lacks).
pub const SC_EUNSUPPORTED: c_int = -10;
/// An I/O error of the storage (see `sc_last_errno`).
pub const SC_EIO: c_int = -11;
/// A bug in sectorcrypt (an internal panic was caught). Please report it.
pub const SC_EINTERNAL: c_int = -12;

/// What failed, as it is kept for [`sc_last_error`].
pub(crate) struct Failure {
    code: c_int,
    message: String,
    errno: c_int,
    transient: bool,
}

impl Failure {
    /// A bad argument found at the boundary.
    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure { code: SC_EINVAL, message: message.into(), errno: 0, transient: false }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        let code = match err.kind() {
            ErrorKind::InvalidInput => SC_EINVAL,
            ErrorKind::KeyRejected => SC_EKEY,
            ErrorKind::ProviderUnavailable => SC_EUNAVAILABLE,
            ErrorKind::ProviderRefused => SC_EREFUSED,
            ErrorKind::Corrupt => SC_ECORRUPT,
            ErrorKind::NotFound => SC_ENOTFOUND,
            ErrorKind::AlreadyExists => SC_EEXIST,
            ErrorKind::PermissionDenied => SC_EPERM,
            ErrorKind::Busy => SC_EBUSY,
            ErrorKind::Unsupported => SC_EUNSUPPORTED,
            _ => SC_EIO,
        };
        Failure {
            code,
            message: err.to_string(),
            errno: err.os_error().unwrap_or(0),
            transient: err.is_transient(),
        }
    }
}

struct Last {
    message: CString,
    errno: c_int,
    transient: bool,
}

thread_local! {
    static LAST: RefCell<Last> = RefCell::new(Last { message: CString::default(), errno: 0, transient: false });
}

fn remember(failure: Failure) -> c_int {
    // A message with a NUL inside (from a path, say) is cut there rather than lost.
    let bytes: Vec<u8> = failure.message.into_bytes().into_iter().take_while(|&b| b != 0).collect();
    let message = CString::new(bytes).unwrap_or_default();
    LAST.with(|last| {
        *last.borrow_mut() = Last { message, errno: failure.errno, transient: failure.transient };
    });
    failure.code
}

/// Runs the body of an ABI function: its failure becomes a code and the thread's last error, and a
/// panic (a bug) becomes `SC_EINTERNAL` instead of unwinding into C, which would be undefined.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SC_OK,
        Ok(Err(failure)) => remember(failure),
        Err(_) => remember(Failure {
            code: SC_EINTERNAL,
            message: "internal error in sectorcrypt (a bug: please report it)".into(),
            errno: 0,
            transient: false,
        }),
    }
}

/// The calling thread's last error message (one line, no newline), or `""` if no call of this thread
/// has failed. Valid until the thread's next failing call; do not free it.
#[unsafe(no_mangle)]
pub extern "C" fn sc_last_error() -> *const c_char {
    LAST.with(|last| last.borrow().message.as_ptr())
}

/// The OS error code (`errno`) behind the calling thread's last error, or 0 if it had none.
#[unsafe(no_mangle)]
pub extern "C" fn sc_last_errno() -> c_int {
    LAST.with(|last| last.borrow().errno)
}

/// 1 if the calling thread's last error may go away by itself (a key server down, a lock held, an
/// interrupted call), so retrying later makes sense; 0 if not.
#[unsafe(no_mangle)]
pub extern "C" fn sc_last_error_transient() -> c_int {
    LAST.with(|last| c_int::from(last.borrow().transient))
}

/// The name of an `SC_E*` code (`"SC_EINVAL"`...), or `"SC_E?"` for a code that is none of them. A
/// static string.
#[unsafe(no_mangle)]
pub extern "C" fn sc_strerror(code: c_int) -> *const c_char {
    let name: &'static [u8] = match code {
        SC_OK => b"SC_OK\0",
        SC_EINVAL => b"SC_EINVAL\0",
        SC_EKEY => b"SC_EKEY\0",
        SC_EUNAVAILABLE => b"SC_EUNAVAILABLE\0",
        SC_EREFUSED => b"SC_EREFUSED\0",
        SC_ECORRUPT => b"SC_ECORRUPT\0",
        SC_ENOTFOUND => b"SC_ENOTFOUND\0",
        SC_EEXIST => b"SC_EEXIST\0",
        SC_EPERM => b"SC_EPERM\0",
        SC_EBUSY => b"SC_EBUSY\0",
        SC_EUNSUPPORTED => b"SC_EUNSUPPORTED\0",
        SC_EIO => b"SC_EIO\0",
        SC_EINTERNAL => b"SC_EINTERNAL\0",
        _ => b"SC_E?\0",
    };
    name.as_ptr().cast()
}
