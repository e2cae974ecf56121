//! Where a kernel reads its input and writes its output.
//!
//! A [`Span`] is either one buffer processed in place or a source and a destination of the same
//! length that do not overlap (the borrow checker proves that for the safe constructors: a shared and
//! an exclusive borrow never alias). Kernels load every block of a group from [`Span::src`] before
//! they store any of it to [`Span::dst`], so the same code is correct for both: in place the two
//! pointers are equal, and each group's loads precede its stores.
//!
//! The methods mirror the slice methods the kernels used before they could write elsewhere
//! (`split_at`, `chunks`, `chunks_exact` with its remainder), so each kernel's structure is unchanged.

use core::marker::PhantomData;

/// `len` bytes read from `src` and written to `dst` (the same address in place).
pub(crate) struct Span<'a> {
    src: *const u8,
    dst: *mut u8,
    len: usize,
    /// The destination is borrowed exclusively (and the source shared) for `'a`.
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> Span<'a> {
    /// `buf`, transformed in place.
    #[inline(always)]
    pub(crate) fn in_place(buf: &'a mut [u8]) -> Span<'a> {
        let dst = buf.as_mut_ptr();
        Span { src: dst, dst, len: buf.len(), _borrow: PhantomData }
    }

    /// `src` transformed into `dst`. The caller has checked that the lengths are equal; the shorter is
    /// used if not, so no access ever leaves either buffer.
    #[inline(always)]
    pub(crate) fn copy(src: &'a [u8], dst: &'a mut [u8]) -> Span<'a> {
        let len = src.len().min(dst.len());
        Span { src: src.as_ptr(), dst: dst.as_mut_ptr(), len, _borrow: PhantomData }
    }

    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where input byte 0 is read. Valid for `len()` bytes of reads.
    #[inline(always)]
    pub(crate) fn src(&self) -> *const u8 {
        self.src
    }

    /// Where output byte 0 is written. Valid for `len()` bytes of writes (and reads, in place).
    #[inline(always)]
    pub(crate) fn dst(&self) -> *mut u8 {
        self.dst
    }

    /// The first `mid` bytes and the rest, as `<[u8]>::split_at_mut`. Panics if `mid > len()`.
    #[inline(always)]
    pub(crate) fn split_at(self, mid: usize) -> (Span<'a>, Span<'a>) {
        assert!(mid <= self.len);
        let rest = Span {
            src: self.src.wrapping_add(mid),
            dst: self.dst.wrapping_add(mid),
            len: self.len - mid,
            _borrow: PhantomData,
        };
        (Span { len: mid, ..self }, rest)
    }

    /// Pieces of `n` bytes, the last one shorter if `len()` is not a multiple of `n`.
    #[inline(always)]
    pub(crate) fn chunks(self, n: usize) -> Chunks<'a> {
        assert!(n > 0);
        Chunks { rest: self, n }
    }

    /// Pieces of exactly `n` bytes; what is left is [`ChunksExact::into_remainder`].
    #[inline(always)]
    pub(crate) fn chunks_exact(self, n: usize) -> ChunksExact<'a> {
        assert!(n > 0);
        let whole = self.len - self.len % n;
        let (body, remainder) = self.split_at(whole);
        ChunksExact { body, remainder, n }
    }

    /// Fills `out` from `offset` of the input. Panics if those bytes are not inside the span.
    #[inline(always)]
    pub(crate) fn read_into(&self, offset: usize, out: &mut [u8]) {
        assert!(offset <= self.len && out.len() <= self.len - offset);
        // SAFETY: the bytes read lie inside the input, checked above; `out` is an exclusive borrow, so
        // other memory than the input the span borrows.
        unsafe { core::ptr::copy_nonoverlapping(self.src.add(offset), out.as_mut_ptr(), out.len()) };
    }

    /// Writes `bytes` at `offset` of the output. Panics if they are not inside the span.
    #[inline(always)]
    pub(crate) fn write(&mut self, offset: usize, bytes: &[u8]) {
        assert!(offset <= self.len && bytes.len() <= self.len - offset);
        // SAFETY: the bytes land inside the output, checked above; `bytes` is a borrow of other memory
        // (an exclusive borrow of the output cannot coexist with `&mut self`).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.dst.add(offset), bytes.len()) };
    }
}

/// See [`Span::chunks`].
pub(crate) struct Chunks<'a> {
    rest: Span<'a>,
    n: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = Span<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<Span<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let take = self.n.min(self.rest.len);
        let rest = core::mem::replace(&mut self.rest, Span::empty());
        let (piece, rest) = rest.split_at(take);
        self.rest = rest;
        Some(piece)
    }
}

/// See [`Span::chunks_exact`].
pub(crate) struct ChunksExact<'a> {
    body: Span<'a>,
    remainder: Span<'a>,
    n: usize,
}

impl<'a> ChunksExact<'a> {
    /// The bytes after the last whole piece.
    #[inline(always)]
    pub(crate) fn into_remainder(self) -> Span<'a> {
        self.remainder
    }

    /// How many whole pieces are left.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.body.len / self.n
    }
}

impl<'a> Iterator for ChunksExact<'a> {
    type Item = Span<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<Span<'a>> {
        if self.body.is_empty() {
            return None;
        }
        let body = core::mem::replace(&mut self.body, Span::empty());
        let (piece, rest) = body.split_at(self.n);
        self.body = rest;
        Some(piece)
    }
}

impl Span<'_> {
    /// No bytes (dangling but never dereferenced pointers).
    #[inline(always)]
    fn empty() -> Self {
        let dst = core::ptr::NonNull::<u8>::dangling().as_ptr();
        Span { src: dst, dst, len: 0, _borrow: PhantomData }
    }
}
