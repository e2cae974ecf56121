//! `sc_volume`: an open encrypted disk (VM mode) or disk group (datastore mode), on files or on the
//! caller's stores, and their creation.

use crate::args::{bytes, bytes_mut, check_out, give, optional_text, text};
use crate::error::{Failure, SC_OK, SC_STOPPED, guard};
use crate::storage::{CStorage, sc_storage};
use sectorcrypt::disk::{CreateOptions, Mode, OpenOptions, Volume};
use sectorcrypt::keys::open_provider;
use sectorcrypt::storage::Storage;
use sectorcrypt::{BackendChoice, KeySize};
use std::ffi::{CString, c_char, c_int, c_void};
use std::path::PathBuf;

/// Open for reading and writing (takes the disk's exclusive lock). Without it the volume is read-only.
pub const SC_OPEN_WRITE: u32 = 1;
/// Move data through the page cache even where O_DIRECT would work (files only).
pub const SC_OPEN_BUFFERED: u32 = 2;

/// `sc_volume_info.mode` of a VM-mode disk.
pub const SC_MODE_DISK: u32 = 0;
/// `sc_volume_info.mode` of a datastore-mode group.
pub const SC_MODE_GROUP: u32 = 1;
/// `sc_volume_info.mode` of a LUKS1 or LUKS2 volume (uuid and generation are zero).
pub const SC_MODE_LUKS: u32 = 2;

/// How to lay out a new disk or group. Pass NULL for all the defaults; a zero field means its default.
#[repr(C)]
pub struct sc_create_options {
    /// Bytes per data unit: a power of two from 512 to 131072 (0: 4096).
    pub data_unit: u32,
    /// 256 for XTS-AES-256, 128 for XTS-AES-128 (0: 256).
    pub key_bits: u32,
    /// A group's stripe in bytes, a multiple of the data unit dividing the size per member (0: 1 MiB).
    pub stripe: u64,
    /// The key-encryption key's id at the provider (NULL: a fresh random id).
    pub key_id: *const c_char,
}

/// What `sc_volume_get_info` reports.
#[repr(C)]
pub struct sc_volume_info {
    /// Logical size in bytes (a group's: all members' data together).
    pub size: u64,
    /// Bytes per data unit.
    pub data_unit: u32,
    /// 128 or 256 (XTS-AES-128 or XTS-AES-256).
    pub key_bits: u32,
    /// `SC_MODE_DISK`, `SC_MODE_GROUP` or `SC_MODE_LUKS`.
    pub mode: u32,
    /// Members (1 for a disk).
    pub members: u32,
    /// Key generation: grows at every rekey.
    pub generation: u64,
    /// The disk's uuid, or the group's.
    pub uuid: [u8; 16],
    /// The cipher backend in use, e.g. `"vaes512"` (owned by the volume, valid until it is closed).
    pub backend: *const c_char,
    /// 1 if open for writing.
    pub writable: u32,
}

/// An open disk or group. Safe to share between threads: reads and writes may run concurrently.
pub struct sc_volume {
    volume: Volume,
    writable: bool,
    backend: CString,
    notices: Vec<CString>,
}

/// Creates a VM-mode disk of `size` data bytes at `path`, which must not exist (nothing is ever
/// overwritten). The file appears complete or not at all.
///
/// # Safety
/// `path` and `key_provider` are NUL-terminated strings; `options` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_disk_create(
    path: *const c_char,
    size: u64,
    key_provider: *const c_char,
    options: *const sc_create_options,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { create_paths(&path, 1, Mode::Vm, size, key_provider, options) }
}

/// Creates a datastore-mode group of `count` member files (none may exist), each holding
/// `size_per_member` data bytes.
///
/// # Safety
/// `members` points to `count` NUL-terminated strings; the rest as `sc_disk_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_group_create(
    members: *const *const c_char,
    count: usize,
    size_per_member: u64,
    key_provider: *const c_char,
    options: *const sc_create_options,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { create_paths(members, count, Mode::Datastore, size_per_member, key_provider, options) }
}

/// Formats the caller's store as a VM-mode disk of `size` data bytes (the store must hold 1 MiB more,
/// for the headers). Whatever the store held is lost.
///
/// # Safety
/// `storage` is valid and follows the contract of `sc_storage`; the rest as `sc_disk_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_disk_create_storage(
    storage: *const sc_storage,
    size: u64,
    key_provider: *const c_char,
    options: *const sc_create_options,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { create_stores(storage, 1, Mode::Vm, size, key_provider, options) }
}

/// Formats `count` caller stores as the members of a new group, `size_per_member` data bytes each.
///
/// # Safety
/// `members` points to `count` valid `sc_storage`; the rest as `sc_disk_create`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_group_create_storage(
    members: *const sc_storage,
    count: usize,
    size_per_member: u64,
    key_provider: *const c_char,
    options: *const sc_create_options,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { create_stores(members, count, Mode::Datastore, size_per_member, key_provider, options) }
}

/// Opens the VM-mode disk at `path`, unwrapping its data key through `key_provider` (e.g.
/// `"native:/etc/sectorcrypt/kdk"`). `flags`: `SC_OPEN_WRITE`, `SC_OPEN_BUFFERED`. The cipher backend
/// is the fastest this CPU has, or the one named by the `SECTORCRYPT_BACKEND` environment variable.
///
/// # Safety
/// `path` and `key_provider` are NUL-terminated strings; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_disk_open(
    path: *const c_char,
    key_provider: *const c_char,
    flags: u32,
    out: *mut *mut sc_volume,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_paths(&path, 1, Mode::Vm, key_provider, flags, out) }
}

/// Opens a group from all its `count` member files, in any order.
///
/// # Safety
/// `members` points to `count` NUL-terminated strings; the rest as `sc_disk_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_group_open(
    members: *const *const c_char,
    count: usize,
    key_provider: *const c_char,
    flags: u32,
    out: *mut *mut sc_volume,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_paths(members, count, Mode::Datastore, key_provider, flags, out) }
}

/// Opens the VM-mode disk held by the caller's store.
///
/// # Safety
/// `storage` is valid and its functions and `ctx` follow the contract of `sc_storage` until the
/// volume is closed; the rest as `sc_disk_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_disk_open_storage(
    storage: *const sc_storage,
    key_provider: *const c_char,
    flags: u32,
    out: *mut *mut sc_volume,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_stores(storage, 1, Mode::Vm, key_provider, flags, out) }
}

/// Opens a group held by `count` caller stores, one per member, in any order.
///
/// # Safety
/// `members` points to `count` valid `sc_storage`; the rest as `sc_disk_open_storage`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_group_open_storage(
    members: *const sc_storage,
    count: usize,
    key_provider: *const c_char,
    flags: u32,
    out: *mut *mut sc_volume,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { open_stores(members, count, Mode::Datastore, key_provider, flags, out) }
}

/// Opens the LUKS1 or LUKS2 volume at `path` (cryptsetup's or QEMU's; aes-xts-plain64), unlocking its
/// volume key with the `passphrase_len` bytes at `passphrase` (copied; the caller may wipe its own).
/// `flags` as for `sc_disk_open`. The LUKS header is never written. A wrong passphrase is `SC_EKEY`;
/// another cipher, integrity or an unfinished reencryption, `SC_EUNSUPPORTED`.
///
/// # Safety
/// `path` is a NUL-terminated string; `passphrase` points to `passphrase_len` readable bytes; `out`
/// is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_luks_open(
    path: *const c_char,
    passphrase: *const u8,
    passphrase_len: usize,
    flags: u32,
    out: *mut *mut sc_volume,
) -> c_int {
    // SAFETY: the caller's guarantees, forwarded.
    unsafe {
        open_luks(passphrase, passphrase_len, flags, out, |passphrase, options| {
            // SAFETY: the caller's guarantee.
            let path = std::path::Path::new(text(path, "path")?);
            Ok(Volume::open_luks_file(path, passphrase, options)?)
        })
    }
}

/// Opens the LUKS volume held by the caller's store; see `sc_luks_open` and `sc_disk_open_storage`.
///
/// # Safety
/// `storage` is valid and follows the contract of `sc_storage` until the volume is closed; the rest
/// as `sc_luks_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_luks_open_storage(
    storage: *const sc_storage,
    passphrase: *const u8,
    passphrase_len: usize,
    flags: u32,
    out: *mut *mut sc_volume,
) -> c_int {
    // SAFETY: the caller's guarantees, forwarded.
    unsafe {
        open_luks(passphrase, passphrase_len, flags, out, |passphrase, options| {
            // SAFETY: the caller's guarantee.
            let store = store_list(storage, 1)?.remove(0);
            Ok(Volume::open_luks(Box::new(store), passphrase, options)?)
        })
    }
}

/// The body of both LUKS opens: the passphrase copied into memory wiped on drop, the flags checked,
/// `open` run, the volume handed out.
///
/// # Safety
/// `passphrase` points to `passphrase_len` readable bytes; `out` is NULL or writable.
unsafe fn open_luks(
    passphrase: *const u8,
    passphrase_len: usize,
    flags: u32,
    out: *mut *mut sc_volume,
    open: impl FnOnce(&[u8], OpenOptions) -> Result<Volume, Failure>,
) -> c_int {
    guard(|| {
        check_out(out)?;
        // SAFETY: the caller's guarantee.
        let passphrase =
            zeroize::Zeroizing::new(unsafe { bytes(passphrase, passphrase_len, "passphrase")? }.to_vec());
        let volume = open(&passphrase, open_options(flags)?)?;
        // SAFETY: checked above.
        unsafe { hand_out(volume, Vec::new(), out) };
        Ok(())
    })
}

/// Reads `len` bytes at logical `offset` into `buf` (any offset and length inside the volume).
///
/// # Safety
/// `volume` is NULL or open; `buf` is valid for `len` bytes of writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_read(
    volume: *const sc_volume,
    buf: *mut c_void,
    len: usize,
    offset: u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's guarantees.
        let (volume, buf) = unsafe { (live(volume)?, bytes_mut(buf.cast(), len, "buf")?) };
        Ok(volume.volume.read_at(offset, buf)?)
    })
}

/// Writes `len` bytes from `buf` at logical `offset` (any offset and length inside the volume; partial
/// data units are read, changed and written back, safely against concurrent writers).
///
/// # Safety
/// `volume` is NULL or open; `buf` is valid for `len` bytes of reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_write(
    volume: *const sc_volume,
    buf: *const c_void,
    len: usize,
    offset: u64,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's guarantees.
        let (volume, data) = unsafe { (live(volume)?, bytes(buf.cast(), len, "buf")?) };
        Ok(volume.volume.write_at(offset, data)?)
    })
}

/// Makes every completed write durable (flushes every member's store).
///
/// # Safety
/// `volume` is NULL or open.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_flush(volume: *const sc_volume) -> c_int {
    // SAFETY: the caller's guarantee.
    guard(|| Ok(unsafe { live(volume)? }.volume.flush()?))
}

/// Called after each step of a deep rekey with the bytes under the new data key so far and in all.
pub type sc_progress_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, done: u64, total: u64)>;

/// Deep rekey: a new data key (wrapped under the KEK `new_key_id` names at `key_provider`, or a fresh
/// one when NULL), and every data unit re-encrypted to it, while other threads keep reading and writing
/// `volume` (I/O to the few megabytes being rewritten waits for them). On a volume whose deep rekey
/// was interrupted (a crash, a kill, an I/O error, a stop), resumes it. Blocks until done, or until
/// `sc_volume_deep_rekey_stop` asks it to stop (then returns `SC_STOPPED`); `progress` (may be NULL)
/// is called with `ctx` after each step. Needs a volume opened with `SC_OPEN_WRITE`.
///
/// # Safety
/// `volume` is NULL or open; `key_provider` is NULL or a C string; `new_key_id` is NULL or a C
/// string; `progress`, when not NULL, may be called with `ctx` from this thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_deep_rekey(
    volume: *const sc_volume,
    key_provider: *const c_char,
    new_key_id: *const c_char,
    progress: sc_progress_fn,
    ctx: *mut c_void,
) -> c_int {
    let mut finished = true;
    let rc = guard(|| {
        // SAFETY: the caller's guarantees.
        let (volume, spec, key_id) = unsafe {
            (live(volume)?, text(key_provider, "key_provider")?, optional_text(new_key_id, "new_key_id")?)
        };
        let provider = open_provider(spec)?;
        let mut report = |step: sectorcrypt::disk::RekeyProgress| {
            if let Some(callback) = progress {
                // SAFETY: the caller's guarantee about `progress` and `ctx`.
                unsafe { callback(ctx, step.done, step.total) };
            }
        };
        finished = volume.volume.deep_rekey(provider.as_ref(), key_id, &mut report)?.finished;
        Ok(())
    });
    if rc == SC_OK && !finished { SC_STOPPED } else { rc }
}

/// Asks the deep rekey running on `volume` (in another thread), or the next one to start, to stop
/// after the step it is writing (a few megabytes); that call then returns `SC_STOPPED`. Returns at
/// once. Use it before closing a volume whose rekey runs in a thread of its own.
///
/// # Safety
/// `volume` is NULL or open.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_deep_rekey_stop(volume: *const sc_volume) -> c_int {
    guard(|| {
        // SAFETY: the caller's guarantee.
        unsafe { live(volume)? }.volume.stop_deep_rekey();
        Ok(())
    })
}

/// Makes `len` bytes at `offset` read as zeros, giving whole data units back to the stores (TRIM);
/// partial units at either end are written as zeros.
///
/// # Safety
/// `volume` is NULL or open.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_discard(volume: *const sc_volume, offset: u64, len: u64) -> c_int {
    // SAFETY: the caller's guarantee.
    guard(|| unsafe { live(volume)? }.volume.discard(offset, len).map(drop).map_err(Into::into))
}

/// The volume's logical size in bytes (0 for NULL).
///
/// # Safety
/// `volume` is NULL or open.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_size(volume: *const sc_volume) -> u64 {
    // SAFETY: the caller's guarantee.
    unsafe { volume.as_ref() }.map_or(0, |v| v.volume.size())
}

/// Fills `*info` with the volume's layout and state.
///
/// # Safety
/// `volume` is NULL or open; `info` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_get_info(volume: *const sc_volume, info: *mut sc_volume_info) -> c_int {
    guard(|| {
        // SAFETY: the caller's guarantee.
        let v = unsafe { live(volume)? };
        if info.is_null() {
            return Err(Failure::invalid("info is NULL"));
        }
        let (mode, uuid, generation) = match v.volume.header() {
            Some(h) if h.mode == Mode::Vm => (SC_MODE_DISK, h.uuid, h.generation),
            Some(h) => (SC_MODE_GROUP, h.place.group_uuid, h.generation),
            None => (SC_MODE_LUKS, [0; 16], 0),
        };
        let value = sc_volume_info {
            size: v.volume.size(),
            data_unit: v.volume.data_unit() as u32,
            key_bits: match v.volume.key_size() {
                KeySize::Aes128 => 128,
                _ => 256,
            },
            mode,
            members: v.volume.names().len() as u32,
            generation,
            uuid,
            backend: v.backend.as_ptr(),
            writable: u32::from(v.writable),
        };
        // SAFETY: non-NULL (checked) and writable (the caller's guarantee).
        unsafe { info.write(value) };
        Ok(())
    })
}

/// How many notices the volume has: things a person may want to know that did not stop the open (a
/// damaged header copy that `sectorcrypt disk repair` rewrites, a fallback from io_uring).
///
/// # Safety
/// `volume` is NULL or open.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_notice_count(volume: *const sc_volume) -> usize {
    // SAFETY: the caller's guarantee.
    unsafe { volume.as_ref() }.map_or(0, |v| v.notices.len())
}

/// Notice `index` as one line (owned by the volume, valid until it is closed), or NULL past the end.
///
/// # Safety
/// `volume` is NULL or open.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_notice(volume: *const sc_volume, index: usize) -> *const c_char {
    // SAFETY: the caller's guarantee.
    unsafe { volume.as_ref() }
        .and_then(|v| v.notices.get(index))
        .map_or(std::ptr::null(), |notice| notice.as_ptr())
}

/// Closes the volume and wipes its data key. It does not flush: call `sc_volume_flush` first for
/// durability. NULL is ignored.
///
/// # Safety
/// `volume` is NULL or open, and no other thread uses it during or after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sc_volume_close(volume: *mut sc_volume) {
    if !volume.is_null() {
        // SAFETY: the caller hands back ownership of a box made by an open function.
        drop(unsafe { Box::from_raw(volume) });
    }
}

/// # Safety
/// `volume` is NULL or open.
unsafe fn live<'a>(volume: *const sc_volume) -> Result<&'a sc_volume, Failure> {
    // SAFETY: the caller's guarantee.
    unsafe { volume.as_ref() }.ok_or_else(|| Failure::invalid("the volume (sc_volume) is NULL"))
}

/// The `count` items at `items`, refusing NULL and zero.
///
/// # Safety
/// `items` is NULL or points to `count` valid items.
unsafe fn list<'a, T>(items: *const T, count: usize, what: &str) -> Result<&'a [T], Failure> {
    if items.is_null() || count == 0 {
        return Err(Failure::invalid(format!("no {what} given")));
    }
    if count > u32::MAX as usize {
        return Err(Failure::invalid(format!("{count} {what} are too many")));
    }
    // SAFETY: non-NULL (checked); `count` items (the caller's guarantee).
    Ok(unsafe { std::slice::from_raw_parts(items, count) })
}

/// # Safety
/// `paths` points to `count` NUL-terminated strings.
unsafe fn path_list(paths: *const *const c_char, count: usize) -> Result<Vec<PathBuf>, Failure> {
    // SAFETY: the caller's guarantee.
    let items = unsafe { list(paths, count, "paths")? };
    // SAFETY: each is a NUL-terminated string (the caller's guarantee); NULL is refused.
    items.iter().map(|&p| unsafe { text(p, "a path") }.map(PathBuf::from)).collect()
}

/// # Safety
/// `stores` points to `count` valid `sc_storage`.
unsafe fn store_list(stores: *const sc_storage, count: usize) -> Result<Vec<CStorage>, Failure> {
    // SAFETY: the caller's guarantee.
    let items = unsafe { list(stores, count, "stores")? };
    // SAFETY: each follows the contract of `sc_storage` (the caller's guarantee).
    items.iter().enumerate().map(|(i, s)| unsafe { CStorage::new(s, i) }).collect()
}

/// # Safety
/// `options` is NULL or valid.
unsafe fn create_options(options: *const sc_create_options) -> Result<CreateOptions, Failure> {
    let mut out = CreateOptions::default();
    // SAFETY: the caller's guarantee.
    let Some(options) = (unsafe { options.as_ref() }) else { return Ok(out) };
    if options.data_unit != 0 {
        out.data_unit = options.data_unit as usize;
    }
    out.cipher = match options.key_bits {
        0 | 256 => KeySize::Aes256,
        128 => KeySize::Aes128,
        bits => return Err(Failure::invalid(format!("key_bits must be 128 or 256, not {bits}"))),
    };
    if options.stripe != 0 {
        out.stripe = options.stripe;
    }
    // SAFETY: the caller's guarantee.
    out.key_id = unsafe { optional_text(options.key_id, "key_id")? }.map(str::to_owned);
    Ok(out)
}

/// # Safety
/// As the public functions that call it.
unsafe fn create_paths(
    paths: *const *const c_char,
    count: usize,
    mode: Mode,
    size: u64,
    key_provider: *const c_char,
    options: *const sc_create_options,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's guarantees.
        let (paths, spec, options) = unsafe {
            (path_list(paths, count)?, text(key_provider, "key_provider")?, create_options(options)?)
        };
        let provider = open_provider(spec)?;
        Ok(Volume::create(&paths, mode, size, &options, provider.as_ref())?)
    })
}

/// # Safety
/// As the public functions that call it.
unsafe fn create_stores(
    stores: *const sc_storage,
    count: usize,
    mode: Mode,
    size: u64,
    key_provider: *const c_char,
    options: *const sc_create_options,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's guarantees.
        let (stores, spec, options) = unsafe {
            (store_list(stores, count)?, text(key_provider, "key_provider")?, create_options(options)?)
        };
        let provider = open_provider(spec)?;
        let stores: Vec<&dyn Storage> = stores.iter().map(|s| s as &dyn Storage).collect();
        Ok(Volume::create_on(&stores, mode, size, &options, provider.as_ref())?)
    })
}

fn open_options(flags: u32) -> Result<OpenOptions, Failure> {
    if flags & !(SC_OPEN_WRITE | SC_OPEN_BUFFERED) != 0 {
        return Err(Failure::invalid(format!("unknown open flags {flags:#x}")));
    }
    Ok(OpenOptions {
        writable: flags & SC_OPEN_WRITE != 0,
        direct: flags & SC_OPEN_BUFFERED == 0,
        backend: BackendChoice::from_env()?,
        ..OpenOptions::default()
    })
}

/// # Safety
/// `out` is NULL or writable.
unsafe fn hand_out(volume: Volume, provider_notices: Vec<String>, out: *mut *mut sc_volume) {
    let notices = provider_notices
        .into_iter()
        .chain(volume.notices().iter().map(ToString::to_string))
        .map(|n| CString::new(n.replace('\0', " ")).unwrap_or_default())
        .collect();
    let writable = volume.is_writable();
    let backend = CString::new(volume.backend().name()).unwrap_or_default();
    // SAFETY: the caller checked `out` with `check_out`.
    unsafe { give(out, sc_volume { volume, writable, backend, notices }) };
}

/// # Safety
/// As the public functions that call it.
unsafe fn open_paths(
    paths: *const *const c_char,
    count: usize,
    mode: Mode,
    key_provider: *const c_char,
    flags: u32,
    out: *mut *mut sc_volume,
) -> c_int {
    guard(|| {
        check_out(out)?;
        // SAFETY: the caller's guarantees.
        let (paths, spec) = unsafe { (path_list(paths, count)?, text(key_provider, "key_provider")?) };
        let options = open_options(flags)?;
        let provider = open_provider(spec)?;
        let volume = Volume::open(&paths, mode, provider.as_ref(), options)?;
        // SAFETY: checked above.
        unsafe { hand_out(volume, provider.take_notices(), out) };
        Ok(())
    })
}

/// # Safety
/// As the public functions that call it.
unsafe fn open_stores(
    stores: *const sc_storage,
    count: usize,
    mode: Mode,
    key_provider: *const c_char,
    flags: u32,
    out: *mut *mut sc_volume,
) -> c_int {
    guard(|| {
        check_out(out)?;
        // SAFETY: the caller's guarantees.
        let (stores, spec) = unsafe { (store_list(stores, count)?, text(key_provider, "key_provider")?) };
        let options = open_options(flags)?;
        let provider = open_provider(spec)?;
        let stores = stores.into_iter().map(|s| Box::new(s) as Box<dyn Storage>).collect();
        let volume = Volume::open_on(stores, mode, provider.as_ref(), options)?;
        // SAFETY: checked above.
        unsafe { hand_out(volume, provider.take_notices(), out) };
        Ok(())
    })
}
