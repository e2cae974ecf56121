//! Thin provisioning's rule (`docs/FORMAT.md`, "Unallocated data units"): a data unit whose ciphertext
//! is all zeros was never written (or was discarded) and reads as zeros, and so does each all-zero
//! 512-byte sector of a written unit, which is what a crash leaves where a unit's first write did not
//! land. A write that would produce such a sector is refused, so no written sector is ever taken for an
//! unwritten one.

/// Whether a data unit's ciphertext is all zeros. Real ciphertext almost always has a non-zero first
/// word, so this costs one load per written unit.
pub(crate) fn is_zero(unit: &[u8]) -> bool {
    let (head, rest) = unit.split_at(unit.len().min(16));
    head.iter().all(|&b| b == 0) && rest.iter().all(|&b| b == 0)
}

/// The torn-write granularity: a sector of a write lands whole or not at all (the deep rekey's
/// fingerprinted piece is the same size).
pub(crate) const SECTOR: usize = super::format::PIECE as usize;

/// Zeros the sectors of `out` whose ciphertext sector in `cipher` is all zeros: never written (a unit
/// whose first write a crash tore reads as zeros where that write did not land, not as the decryption
/// of zeros).
pub(crate) fn clear_unwritten_sectors(cipher: &[u8], out: &mut [u8]) {
    for (sector, plain) in cipher.chunks_exact(SECTOR).zip(out.chunks_exact_mut(SECTOR)) {
        if is_zero(sector) {
            plain.fill(0);
        }
    }
}

/// The index of the first unit of `cipher` with an all-zero sector (which would read as unwritten).
pub(crate) fn unwritable(cipher: &[u8], unit: usize) -> Option<usize> {
    cipher.chunks_exact(SECTOR).position(is_zero).map(|sector| sector * SECTOR / unit)
}

/// The byte ranges of `buf`'s runs of written (not all-zero) `unit`-byte units, each at most `most`
/// units long: what a rewrite re-encrypts and writes back, leaving unwritten units holes.
pub(crate) fn written_runs(buf: &[u8], unit: usize, most: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < buf.len() {
        start += buf[start..].chunks_exact(unit).take_while(|u| is_zero(u)).count() * unit;
        let len = buf[start..].chunks_exact(unit).take(most).take_while(|u| !is_zero(u)).count() * unit;
        if len > 0 {
            runs.push(start..start + len);
        }
        start += len;
    }
    runs
}
