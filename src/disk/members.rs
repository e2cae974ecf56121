//! The members of a volume: a store each, with its header pair read, written and checked.
//!
//! A header update writes the copy that is not current first (with the next sequence number), flushes,
//! then the other, so a crash at any point leaves a complete copy with the old or the new content.
//! Opening checks that the given stores form what was asked for: one VM-mode disk, or every member of
//! one group, in agreement about the layout, the wrapped key and the key generation.

use super::format::{HEADER_LEN, HEADER_OFFSETS, Header, HeaderPair, Mode, uuid_string};
use crate::error::{DiskFault, Error, Result};
use crate::files::{FileKinds, open_file};
use crate::storage::{FileStorage, Storage};
use std::path::Path;

/// One disk file or group member.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) storage: Box<dyn Storage>,
    pub(crate) headers: HeaderPair,
}

pub(crate) fn disk_error(name: &str, fault: DiskFault, reason: impl Into<String>) -> Error {
    Error::Disk { path: name.to_owned(), fault, reason: reason.into() }
}

pub(crate) fn storage_error(storage: &dyn Storage, err: std::io::Error) -> Error {
    Error::io(storage.name(), err)
}

impl Member {
    pub(crate) fn name(&self) -> &str {
        self.storage.name()
    }

    pub(crate) fn header(&self) -> &Header {
        self.headers.header()
    }

    /// Locks the store, reads its header pair and checks that the store holds the whole data area.
    pub(crate) fn open(storage: Box<dyn Storage>, writable: bool) -> Result<Member> {
        let headers = lock_and_read(storage.as_ref(), writable)?;
        Ok(Member { storage, headers })
    }

    /// Writes `header` as both copies: see [`update_pair`].
    pub(crate) fn write_pair(&mut self, header: &Header) -> Result<()> {
        update_pair(self.storage.as_ref(), &mut self.headers, header)
    }

    /// Writes one header copy and flushes it.
    pub(crate) fn write_copy(&self, header: &Header, slot: usize) -> Result<()> {
        write_copy(self.storage.as_ref(), header, slot)
    }

    /// Reads the header pair again (after a repair wrote single copies).
    pub(crate) fn reread(&mut self) -> Result<()> {
        self.headers = read_pair(self.storage.as_ref())?;
        Ok(())
    }
}

/// Writes `header` as both copies of `storage`'s header pair, the one that is not current first, and
/// reads them back into `pair`. Once the first copy is written and flushed the new header is current: a
/// failure after that point says so ([`Error::Unfinished`]) instead of suggesting nothing changed.
pub(crate) fn update_pair(storage: &dyn Storage, pair: &mut HeaderPair, header: &Header) -> Result<()> {
    let first = 1 - pair.current;
    let mut next = header.clone();
    next.sequence = pair.header().sequence + 1;
    write_copy(storage, &next, first)?;
    next.sequence += 1;
    let second = write_copy(storage, &next, 1 - first).and_then(|()| {
        *pair = read_pair(storage)?;
        Ok(())
    });
    second.map_err(|cause| Error::Unfinished {
        path: storage.name().to_owned(),
        what: "the header update",
        cause: Box::new(cause),
    })
}

/// Writes one header copy and flushes it.
fn write_copy(storage: &dyn Storage, header: &Header, slot: usize) -> Result<()> {
    let fail = |err| storage_error(storage, err);
    storage.write_at(&header.encode(slot), HEADER_OFFSETS[slot]).map_err(fail)?;
    storage.flush().map_err(fail)
}

/// Locks `storage`, reads its header pair and checks that it holds the whole data area.
/// Takes the store's advisory lock: exclusive to write, shared to read.
pub(crate) fn lock(storage: &dyn Storage, writable: bool) -> Result<()> {
    storage.lock(writable).map_err(|err| {
        if err.kind() == std::io::ErrorKind::WouldBlock {
            disk_error(storage.name(), DiskFault::Busy, "is open for writing by another process")
        } else {
            storage_error(storage, err)
        }
    })
}

fn lock_and_read(storage: &dyn Storage, writable: bool) -> Result<HeaderPair> {
    lock(storage, writable)?;
    let headers = read_pair(storage)?;
    let header = headers.header();
    let len = storage.size().map_err(|err| storage_error(storage, err))?;
    let needed = header.data_offset + header.data_size;
    if len < needed {
        return Err(disk_error(
            storage.name(),
            DiskFault::Truncated,
            format!("truncated: {len} bytes, but its header describes {needed}"),
        ));
    }
    Ok(headers)
}

/// Reads both header copies of a store. A copy past the end of a short store reads as damaged; when
/// neither copy can be read at all, the store's I/O error is the error (with its OS code), not damage.
pub(crate) fn read_pair(storage: &dyn Storage) -> Result<HeaderPair> {
    let size = storage.size().map_err(|err| storage_error(storage, err))?;
    let read_errors: std::cell::RefCell<Vec<std::io::Error>> = Default::default();
    HeaderPair::decode(|slot| {
        let at = HEADER_OFFSETS[slot];
        let len = size.saturating_sub(at).min(HEADER_LEN as u64) as usize;
        let mut buf = vec![0u8; len];
        match storage.read_at(&mut buf, at) {
            Ok(()) => Ok(buf),
            Err(err) => {
                // The decoder keeps the message; the error itself, with its OS code, stays here.
                let told = std::io::Error::new(err.kind(), err.to_string());
                read_errors.borrow_mut().push(err);
                Err(told)
            }
        }
    })
    .map_err(|err| {
        let mut read_errors = read_errors.take();
        match err {
            Error::Header(_) if read_errors.len() == 2 => storage_error(storage, read_errors.swap_remove(0)),
            Error::Header(reason) => {
                disk_error(storage.name(), DiskFault::Corrupt, format!("disk header: {reason}"))
            }
            Error::NotADisk => disk_error(storage.name(), DiskFault::NotADisk, Error::NotADisk.to_string()),
            other => other,
        }
    })
}

/// Reads both header copies of a disk file without any key (for `info`).
pub fn read_headers(path: &Path) -> Result<HeaderPair> {
    let file = open_file(path, false, FileKinds::RegularOrBlockDevice)?;
    read_pair(&FileStorage::from_file(path, file, false))
}

/// Opens a disk file or member file, with an O_DIRECT data descriptor where `direct` asks for it and
/// the data units are aligned for it on any device (4 KiB and more).
pub(crate) fn open_file_member(path: &Path, writable: bool, direct: bool) -> Result<Member> {
    let file = open_file(path, writable, FileKinds::RegularOrBlockDevice)?;
    let mut storage = FileStorage::from_file(path, file, writable);
    let headers = lock_and_read(&storage, writable)?;
    if direct && headers.header().data_unit >= 4096 {
        storage.open_direct(path);
    }
    Ok(Member { storage: Box::new(storage), headers })
}

/// Checks that `members` form one disk (VM) or one complete group (datastore), and puts them in
/// member order.
pub(crate) fn check_members(members: &mut [Member], mode: Mode, writable: bool) -> Result<()> {
    if members.is_empty() {
        return Err(disk_error("", DiskFault::MissingMember, "no disk given"));
    }
    if mode == Mode::Vm && members.len() != 1 {
        return Err(disk_error(members[1].name(), DiskFault::Mismatch, "a VM-mode disk is opened alone"));
    }
    for member in members.iter() {
        let found = member.header().mode;
        if found != mode {
            let command = match found {
                Mode::Vm => "disk",
                Mode::Datastore => "group",
            };
            return Err(disk_error(
                member.name(),
                DiskFault::Mismatch,
                format!(
                    "is a {}-mode disk, not {} mode (use `sectorcrypt {command}`)",
                    found.name(),
                    mode.name()
                ),
            ));
        }
    }
    members.sort_by_key(|m| m.header().place.member_index);
    super::rekey::finish_interrupted(members, writable)?;
    check_group(members)
}

/// Every member agrees with member 0, no member is missing or given twice.
pub(crate) fn check_group(members: &[Member]) -> Result<()> {
    let Some(first_member) = members.first() else {
        return Err(disk_error("", DiskFault::MissingMember, "no disk given"));
    };
    let first = first_member.header();
    let count = first.place.member_count as usize;
    for (index, member) in members.iter().enumerate() {
        let header = member.header();
        let fail = |fault, reason: String| Err(disk_error(member.name(), fault, reason));
        if header.place.group_uuid != first.place.group_uuid {
            return fail(
                DiskFault::Mismatch,
                format!(
                    "belongs to group {}, not to group {} of {}",
                    uuid_string(&header.place.group_uuid),
                    uuid_string(&first.place.group_uuid),
                    first_member.name()
                ),
            );
        }
        if header.place.member_index as usize != index {
            let twice =
                index > 0 && members[index - 1].header().place.member_index == header.place.member_index;
            return if twice {
                fail(
                    DiskFault::Mismatch,
                    format!("member {} of the group is given twice", header.place.member_index),
                )
            } else {
                fail(
                    DiskFault::MissingMember,
                    format!(
                        "member {index} of {count} is missing (this is member {})",
                        header.place.member_index
                    ),
                )
            };
        }
        if header.generation != first.generation {
            return fail(
                DiskFault::Mismatch,
                format!(
                    "is at key generation {}, member 0 at {} (an interrupted rekey?): run `group repair`",
                    header.generation, first.generation
                ),
            );
        }
        let first_record = members.iter().find_map(|m| m.header().reencryption.as_ref());
        if let (Some(mine), Some(theirs)) = (&header.reencryption, first_record)
            && mine.new_dek != theirs.new_dek
        {
            return fail(
                DiskFault::Mismatch,
                "disagrees with the other members about the new key of their deep rekey".into(),
            );
        }
        let same_layout = header.data_unit == first.data_unit
            && header.data_size == first.data_size
            && header.data_offset == first.data_offset
            && header.place.stripe == first.place.stripe
            && header.place.member_count == first.place.member_count
            && header.wrapped_dek == first.wrapped_dek;
        if !same_layout {
            return fail(
                DiskFault::Mismatch,
                "disagrees with member 0 about the layout or the wrapped key".into(),
            );
        }
    }
    if members.len() != count {
        let last = &members[members.len() - 1];
        return Err(disk_error(
            last.name(),
            DiskFault::MissingMember,
            format!("the group has {count} members, {} given", members.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{CreateOptions, Volume};
    use crate::keys::NativeProvider;
    use crate::storage::MemStorage;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Memory storage whose writes fail once `writes_left` runs out.
    #[derive(Debug)]
    struct FailingWrites(Arc<MemStorage>, Arc<AtomicUsize>);

    impl Storage for FailingWrites {
        fn name(&self) -> &str {
            "failing"
        }
        fn size(&self) -> std::io::Result<u64> {
            self.0.size()
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            self.0.read_at(buf, offset)
        }
        fn write_at(&self, data: &[u8], offset: u64) -> std::io::Result<()> {
            let left = self.1.load(Ordering::Relaxed);
            if left == 0 {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            self.1.store(left - 1, Ordering::Relaxed);
            self.0.write_at(data, offset)
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_header_update_stopped_after_its_first_copy_says_it_took_effect() {
        let dir = tempfile::tempdir().unwrap();
        let provider = NativeProvider::init(dir.path().join("kdk")).unwrap();
        let memory = Arc::new(MemStorage::new("mem", (1 << 20) + (1 << 16)));
        Volume::create_on(&[memory.as_ref()], Mode::Vm, 1 << 16, &CreateOptions::default(), &provider)
            .unwrap();
        let writes_left = Arc::new(AtomicUsize::new(usize::MAX));
        let store = FailingWrites(memory.clone(), writes_left.clone());
        let mut member = Member::open(Box::new(store), true).unwrap();
        let next = Header { generation: 7, ..member.header().clone() };

        // The first copy fails: nothing changed, a plain I/O error.
        writes_left.store(0, Ordering::Relaxed);
        let err = member.write_pair(&next).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(read_pair(memory.as_ref()).unwrap().header().generation, 1);

        // The second copy fails: the new header is current, and the error says so and names repair.
        writes_left.store(1, Ordering::Relaxed);
        let err = member.write_pair(&next).unwrap_err();
        assert!(matches!(err, Error::Unfinished { .. }), "{err:?}");
        assert_eq!(err.os_error(), Some(libc::EIO));
        assert!(err.to_string().contains("run `repair`"), "{err}");
        let pair = read_pair(memory.as_ref()).unwrap();
        assert_eq!(pair.header().generation, 7);
        assert!(pair.problems().iter().any(Option::is_some), "the other copy is stale");
    }
}
