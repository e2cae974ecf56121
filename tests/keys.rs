//! The key hierarchy: DEK generation, wrapping, the native provider, backups and the cache.

use sectorcrypt::keys::{Dek, Kek, KeyCache, KeyProvider, KeyRef, NativeProvider, ProviderKind, WrappedDek};
use sectorcrypt::{Error, KeySize};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

fn kek(seed: u8) -> Kek {
    Kek::from_bytes(&[seed; 32]).unwrap()
}

fn native_ref(key_id: &str) -> KeyRef {
    KeyRef::new(ProviderKind::Native, "0011223344556677", key_id).unwrap()
}

fn wrapped_sample(size: KeySize) -> (Dek, WrappedDek) {
    let dek = Dek::generate(size).unwrap();
    let wrapped = WrappedDek::wrap(&dek, &kek(1), &native_ref("disk-1"));
    (dek, wrapped)
}

/// The DEK's bytes, seen only through what they encrypt.
fn fingerprint(dek: &Dek) -> Vec<u8> {
    let xts = sectorcrypt::Xts::new(dek.xts_key(), sectorcrypt::BackendChoice::Auto).unwrap();
    let mut block = vec![0u8; 32];
    xts.encrypt_unit(&mut block, 0).unwrap();
    block
}

#[test]
fn deks_are_random_and_sized() {
    for size in [KeySize::Aes256, KeySize::Aes128] {
        let a = Dek::generate(size).unwrap();
        let b = Dek::generate(size).unwrap();
        assert_eq!(a.size(), size);
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(a.verifier(), b.verifier());
        a.check_verifier(&a.verifier()).unwrap();
        assert_eq!(a.check_verifier(&b.verifier()), Err(Error::DekMismatch));
    }
}

#[test]
fn key_material_never_prints() {
    let dek = Dek::generate(KeySize::Aes256).unwrap();
    assert_eq!(format!("{dek:?}"), "Dek { key: XtsKey { size: Aes256, .. } }");
    assert_eq!(format!("{:?}", kek(0xab)), "Kek(..)");
    let dir = tempfile::tempdir().unwrap();
    let provider = NativeProvider::init(dir.path().join("kdk")).unwrap();
    let shown = format!("{provider:?}");
    assert!(shown.starts_with("NativeProvider { path: ") && shown.ends_with(", .. }"), "{shown}");
    let kdk = std::fs::read(dir.path().join("kdk")).unwrap();
    assert!(!shown.contains(&hex::encode(&kdk[..4])));
}

#[test]
fn wrap_round_trips_and_rewraps() {
    for size in [KeySize::Aes256, KeySize::Aes128] {
        let (dek, wrapped) = wrapped_sample(size);
        let blob = wrapped.to_bytes();
        let parsed = WrappedDek::from_bytes(&blob).unwrap();
        assert_eq!(parsed, wrapped);
        assert_eq!(parsed.dek_size(), size);
        assert_eq!(parsed.key_ref().to_string(), "native:0011223344556677/disk-1");
        let opened = parsed.unwrap(&kek(1)).unwrap();
        assert_eq!(fingerprint(&opened), fingerprint(&dek));

        let new_ref = native_ref("disk-1-v2");
        let rewrapped = wrapped.rewrap(&kek(1), &kek(2), &new_ref).unwrap();
        assert_eq!(rewrapped.key_ref(), &new_ref);
        assert_eq!(rewrapped.verifier(), wrapped.verifier());
        assert_eq!(fingerprint(&rewrapped.unwrap(&kek(2)).unwrap()), fingerprint(&dek));
        assert_eq!(rewrapped.unwrap(&kek(1)).unwrap_err(), Error::KeyUnwrap);
        // A rewrap with the wrong old KEK gives nothing.
        assert_eq!(wrapped.rewrap(&kek(3), &kek(2), &new_ref).unwrap_err(), Error::KeyUnwrap);
    }
}

#[test]
fn wrong_kek_is_one_opaque_error() {
    let (_, wrapped) = wrapped_sample(KeySize::Aes256);
    for seed in [0u8, 2, 0xff] {
        assert_eq!(wrapped.unwrap(&kek(seed)).unwrap_err(), Error::KeyUnwrap);
    }
}

#[test]
fn every_altered_byte_is_refused() {
    for size in [KeySize::Aes256, KeySize::Aes128] {
        let (_, wrapped) = wrapped_sample(size);
        let blob = wrapped.to_bytes();
        for i in 0..blob.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut altered = blob.clone();
                altered[i] ^= flip;
                match WrappedDek::from_bytes(&altered) {
                    Err(Error::WrappedKeyFormat(_) | Error::FormatVersion { .. }) => {}
                    Err(other) => panic!("byte {i}: unexpected {other:?}"),
                    // It parsed (an id or the wrapped bytes changed): it must not unwrap.
                    Ok(parsed) => {
                        assert_eq!(parsed.unwrap(&kek(1)).unwrap_err(), Error::KeyUnwrap, "byte {i}")
                    }
                }
            }
        }
    }
}

#[test]
fn truncated_extended_and_future_blobs_are_clear_errors() {
    let (_, wrapped) = wrapped_sample(KeySize::Aes256);
    let blob = wrapped.to_bytes();
    for len in 0..blob.len() {
        let err = WrappedDek::from_bytes(&blob[..len]).unwrap_err();
        assert!(matches!(err, Error::WrappedKeyFormat(_)), "{len}: {err:?}");
        assert!(err.to_string().starts_with("not a valid wrapped key"), "{err}");
    }
    assert_eq!(WrappedDek::from_bytes(&blob[..5]).unwrap_err(), Error::WrappedKeyFormat("truncated"));
    let mut extended = blob.clone();
    extended.push(0);
    assert_eq!(
        WrappedDek::from_bytes(&extended).unwrap_err(),
        Error::WrappedKeyFormat("trailing bytes after the binding tag")
    );
    let mut future = blob.clone();
    future[4] = 2;
    let err = WrappedDek::from_bytes(&future).unwrap_err();
    assert_eq!(err, Error::FormatVersion { what: "wrapped key", found: 2, supported: 1 });
    assert_eq!(err.to_string(), "wrapped key format version 2 is newer than this build reads (version 1)");
}

#[test]
fn longest_blob_is_max_blob_len() {
    let dek = Dek::generate(KeySize::Aes256).unwrap();
    let long = "x".repeat(64);
    let key_ref = KeyRef::new(ProviderKind::Native, &long, &long).unwrap();
    assert_eq!(WrappedDek::wrap(&dek, &kek(1), &key_ref).to_bytes().len(), sectorcrypt::keys::MAX_BLOB_LEN);
}

#[test]
fn key_ids_are_checked() {
    for bad in ["", "a b", "../x", "é", &"x".repeat(65)] {
        assert!(matches!(KeyRef::new(ProviderKind::Native, "p", bad), Err(Error::KeyId(_))), "{bad:?}");
    }
    KeyRef::new(ProviderKind::Native, "p", &"x".repeat(64)).unwrap();
    KeyRef::new(ProviderKind::Kmip, "kms.example", "vm-01_disk.2").unwrap();
}

#[test]
fn native_kek_derivation_matches_an_independent_hkdf() {
    // Expected values computed with Python's hmac module (RFC 5869 by hand), not with this crate.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kdk");
    std::fs::write(&path, (0u8..32).collect::<Vec<_>>()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let provider = NativeProvider::open(&path).unwrap();
    assert_eq!(provider.fingerprint(), "94c6bc986a866482");

    let key_ref = provider.create_kek(Some("disk-1")).unwrap();
    assert_eq!(key_ref.to_string(), "native:94c6bc986a866482/disk-1");
    let expected = Kek::from_bytes(
        &hex::decode("1ee050e2a452e8ff084b9c9a47473e460a35df7299cfeca438afb67228bf7258").unwrap(),
    )
    .unwrap();
    let dek = Dek::generate(KeySize::Aes256).unwrap();
    let wrapped = WrappedDek::wrap(&dek, &provider.get_kek(&key_ref).unwrap(), &key_ref);
    wrapped.unwrap(&expected).unwrap();
    assert_eq!(provider.unwrap_dek(&wrapped).unwrap().verifier(), dek.verifier());

    // Another id is another KEK.
    let other = provider.create_kek(Some("disk-2")).unwrap();
    assert_eq!(wrapped.unwrap(&provider.get_kek(&other).unwrap()).unwrap_err(), Error::KeyUnwrap);
    // Fresh ids are random.
    assert_ne!(provider.create_kek(None).unwrap(), provider.create_kek(None).unwrap());
}

#[test]
fn native_provider_refuses_bad_kdk_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kdk");
    let provider = NativeProvider::init(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let kdk = std::fs::read(&path).unwrap();
    assert_eq!(kdk.len(), 32);

    // init never overwrites, and leaves the file as it was.
    let err = NativeProvider::init(&path).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), kdk);
    assert_eq!(leftovers(dir.path()), ["kdk"]);

    let reason = |path: &Path| NativeProvider::open(path).unwrap_err().to_string();
    assert!(reason(&dir.path().join("missing")).contains("cannot open the KDK file"));
    assert!(reason(dir.path()).contains("not a regular file"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(reason(&path).contains("mode 0640: group or others may access it"), "{}", reason(&path));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
    assert!(reason(&path).contains("mode 0604"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for len in [0usize, 31, 33, 64] {
        let short = dir.path().join(format!("kdk{len}"));
        std::fs::write(&short, vec![1; len]).unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            reason(&short).contains(&format!("exactly 32 bytes, this one has {len}")),
            "{}",
            reason(&short)
        );
    }
    assert_eq!(NativeProvider::open(&path).unwrap().fingerprint(), provider.fingerprint());

    // A key made from another KDK, or by another kind of provider, is named as such.
    let other = NativeProvider::init(dir.path().join("other")).unwrap();
    let foreign = other.create_kek(Some("k")).unwrap();
    let err = provider.get_kek(&foreign).unwrap_err().to_string();
    assert!(err.contains("was made from another KDK"), "{err}");
    let kmip = KeyRef::new(ProviderKind::Kmip, "kms", "1").unwrap();
    assert!(provider.get_kek(&kmip).unwrap_err().to_string().contains("held by a kmip provider"));
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn backup_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let provider = NativeProvider::init(dir.path().join("kdk")).unwrap();
    let backup = dir.path().join("kdk.backup");
    assert!(provider.backup(b"short", &backup).unwrap_err().to_string().contains("at least 8 characters"));
    assert!(!backup.exists());
    provider.backup(b"correct horse battery", &backup).unwrap();
    assert!(
        provider
            .backup(b"correct horse battery", &backup)
            .unwrap_err()
            .to_string()
            .contains("already exists")
    );
    let blob = std::fs::read(&backup).unwrap();
    assert_eq!(blob.len(), 4 + 1 + 12 + 16 + 12 + 32 + 16);

    let restored = dir.path().join("restored");
    assert_eq!(
        NativeProvider::restore(&backup, b"correct horse batterz", &restored).unwrap_err(),
        Error::BackupPassphrase
    );
    assert!(!restored.exists());
    let back = NativeProvider::restore(&backup, b"correct horse battery", &restored).unwrap();
    assert_eq!(back.fingerprint(), provider.fingerprint());
    assert_eq!(std::fs::read(&restored).unwrap(), std::fs::read(dir.path().join("kdk")).unwrap());
    assert_eq!(std::fs::metadata(&restored).unwrap().permissions().mode() & 0o777, 0o600);
    // Restore never overwrites.
    let err = NativeProvider::restore(&backup, b"correct horse battery", &restored).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    // Altered, truncated and future-version backups.
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let target = dir.path().join("never");
    for i in [5usize, 20, 40, 50, blob.len() - 1] {
        let mut altered = blob.clone();
        altered[i] ^= 1;
        let err = NativeProvider::restore(write("altered", &altered), b"correct horse battery", &target)
            .unwrap_err();
        assert_eq!(err, Error::BackupPassphrase, "byte {i}");
    }
    let mut costly = blob.clone();
    costly[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
    let err =
        NativeProvider::restore(write("costly", &costly), b"correct horse battery", &target).unwrap_err();
    assert!(matches!(err, Error::BackupFormat(_)), "{err:?}");
    let err =
        NativeProvider::restore(write("short", &blob[..40]), b"correct horse battery", &target).unwrap_err();
    assert_eq!(err, Error::BackupFormat("wrong length (truncated or extended)"));
    let mut future = blob.clone();
    future[4] = 9;
    let err =
        NativeProvider::restore(write("future", &future), b"correct horse battery", &target).unwrap_err();
    assert_eq!(err, Error::FormatVersion { what: "key backup", found: 9, supported: 1 });
    let err = NativeProvider::restore(write("wrapped", b"SCWK\x01"), b"correct horse battery", &target)
        .unwrap_err();
    assert!(matches!(err, Error::BackupFormat(_)));
    assert!(!target.exists());
}

/// A provider that counts how often it is asked for a KEK.
#[derive(Debug, Default)]
struct Counting {
    gets: AtomicUsize,
}

impl KeyProvider for Counting {
    fn name(&self) -> String {
        "counting".into()
    }
    fn create_kek(&self, key_id: Option<&str>) -> sectorcrypt::Result<KeyRef> {
        KeyRef::new(ProviderKind::Kmip, "test", key_id.unwrap_or("fresh"))
    }
    fn get_kek(&self, key_ref: &KeyRef) -> sectorcrypt::Result<Kek> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        Kek::from_bytes(&[key_ref.key_id().len() as u8; 32])
    }
}

#[test]
fn cache_serves_repeats_and_evicts_oldest() {
    let cache = KeyCache::new(Counting::default(), 2);
    let (a, b, c) = (native_ref("a"), native_ref("bb"), native_ref("ccc"));
    let gets = || cache.inner().gets.load(Ordering::Relaxed);
    let (dek, _) = wrapped_sample(KeySize::Aes256);
    let wrapped = WrappedDek::wrap(&dek, &cache.get_kek(&a).unwrap(), &a);
    assert_eq!(gets(), 1);
    for _ in 0..3 {
        cache.unwrap_dek(&wrapped).unwrap();
    }
    assert_eq!(gets(), 1);
    cache.get_kek(&b).unwrap();
    cache.get_kek(&c).unwrap();
    assert_eq!(
        (cache.len(), cache.contains(&a), cache.contains(&b), cache.contains(&c)),
        (2, false, true, true)
    );
    cache.unwrap_dek(&wrapped).unwrap();
    assert_eq!(gets(), 4);
    cache.evict(&a);
    assert!(!cache.contains(&a));
    cache.clear();
    assert!(cache.is_empty());
}
