//! A VM-mode encrypted disk through the library: a native key provider, a new disk, a write at an odd
//! offset, a read back, and what the file holds at rest.
//!
//! `cargo run --release --example vm_disk`

use sectorcrypt::disk::{CreateOptions, EncryptedDisk, OpenOptions};
use sectorcrypt::keys::{KeyProvider, NativeProvider};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // The key-derivation key (KDK) stays with the host; KEKs are derived from it, DEKs are wrapped by them.
    let provider = NativeProvider::init(dir.path().join("kdk"))?;
    let path = dir.path().join("vm1.disk");
    let options = CreateOptions { key_id: Some("vm1".into()), ..CreateOptions::default() };
    EncryptedDisk::create(&path, 64 << 20, &options, &provider)?;

    let disk =
        EncryptedDisk::open(&path, &provider, OpenOptions { writable: true, ..OpenOptions::default() })?;
    let message = b"guest data: only ciphertext reaches the file";
    disk.write_at(1_000_003, message)?; // not unit aligned: read-modify-write of one 4 KiB unit
    disk.flush()?;
    let mut back = vec![0u8; message.len()];
    disk.read_at(1_000_003, &mut back)?;
    assert_eq!(&back, message);

    let header = disk.header().expect("a sectorcrypt disk has a sectorcrypt header");
    let at_rest = std::fs::read(&path)?;
    let found = at_rest.windows(message.len()).any(|w| w == message);
    println!(
        "disk {} ({} MiB, {}, KEK {}, {} on {}): plaintext at rest: {found}",
        path.display(),
        disk.size() >> 20,
        header.cipher.name(),
        header.wrapped_dek.key_ref(),
        disk.io_engine_name()?,
        disk.backend().name(),
    );
    println!("provider: {}", provider.name());
    Ok(())
}
