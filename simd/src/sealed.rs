//! Key schedules on pages of their own that a core dump leaves out.
//!
//! An expanded key schedule is as secret as the key. A process that links this crate (a hypervisor, a
//! storage filter) may well want core dumps of itself, but not of its keys: [`Sealed`] puts a value on
//! whole pages of its own and marks them `MADV_DONTDUMP`, so a dump has a hole where the keys were.
//! The value is dropped in place (the key types zeroize themselves on drop) before the pages go back.
//!
//! The pages are a mapping of their own (`mmap`), not heap memory: advice on heap pages outlives the
//! value and splits the heap's mapping, and a process that makes engines by the million (the fuzz
//! targets do) ran out of mappings that way. A mapping of its own is gone, advice and all, at `munmap`.

extern crate alloc;

use alloc::alloc::{Layout, handle_alloc_error};
use core::ops::Deref;
use core::ptr::NonNull;

const PAGE: usize = 4096;

/// A `T` alone on its own pages, left out of core dumps where the OS allows it.
pub(crate) struct Sealed<T> {
    ptr: NonNull<T>,
}

// SAFETY: `Sealed<T>` owns its `T` as a `Box<T>` would; sending or sharing it is sending or sharing `T`.
unsafe impl<T: Send> Send for Sealed<T> {}
// SAFETY: as above; only `&T` is ever handed out.
unsafe impl<T: Sync> Sync for Sealed<T> {}

impl<T> Sealed<T> {
    /// Whole pages for one `T`; a page's alignment serves every key type (checked when compiled).
    fn layout() -> Layout {
        const { assert!(align_of::<T>() <= PAGE, "a sealed type must not need more than page alignment") };
        let size = size_of::<T>().max(1).next_multiple_of(PAGE);
        match Layout::from_size_align(size, PAGE) {
            Ok(layout) => layout,
            // A page's alignment and a size far below isize::MAX: cannot fail for a key type.
            Err(_) => handle_alloc_error(Layout::new::<T>()),
        }
    }

    /// Moves `value` onto pages of its own and asks the OS to leave them out of core dumps (an OS that
    /// cannot is not an error: the value is still alone on its pages).
    pub(crate) fn new(value: T) -> Sealed<T> {
        use rustix::mm::{MapFlags, ProtFlags};
        let layout = Self::layout();
        // SAFETY: a new private anonymous mapping, placed by the kernel; nothing else refers to it.
        let mapped = unsafe {
            rustix::mm::mmap_anonymous(
                core::ptr::null_mut(),
                layout.size(),
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        };
        let Some(ptr) = mapped.ok().and_then(|raw| NonNull::new(raw.cast::<T>())) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the mapping is page aligned (at least `T`'s alignment, checked in `layout`), zeroed,
        // writable and large enough for a `T`.
        unsafe { ptr.as_ptr().write(value) };
        #[cfg(target_os = "linux")]
        {
            // SAFETY: the range is exactly this mapping, which this value owns; the advice changes
            // only what a core dump contains, never the memory's contents or mapping.
            let _ = unsafe {
                rustix::mm::madvise(ptr.as_ptr().cast(), layout.size(), rustix::mm::Advice::LinuxDontDump)
            };
        }
        Sealed { ptr }
    }

    /// Where the value lives (for tests that look it up in the process's memory map).
    #[cfg(test)]
    pub(crate) fn address(&self) -> usize {
        self.ptr.as_ptr() as usize
    }
}

impl<T> Deref for Sealed<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `ptr` holds an initialised `T` from `new` until `drop`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for Sealed<T> {
    fn drop(&mut self) {
        // SAFETY: the `T` written by `new` is dropped exactly once, here (the key types zeroize on drop),
        // and the mapping is unmapped with the length it was made with; nothing refers to it after.
        unsafe {
            core::ptr::drop_in_place(self.ptr.as_ptr());
            let _ = rustix::mm::munmap(self.ptr.as_ptr().cast(), Self::layout().size());
        }
    }
}
