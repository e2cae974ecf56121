//! LUKS volumes made by the real tools (cryptsetup for LUKS1 and LUKS2, on plain files with no device
//! mapper) opened by the library: the volume key it unlocks equals `cryptsetup luksDump
//! --dump-volume-key`'s, and the data path's bytes follow dm-crypt's layout (plain64 IVs in 512-byte
//! units from the segment start), checked against the key and the cipher alone. Needs cryptsetup-bin
//! (`.ci/deps` installs it).

mod common;

use sectorcrypt::disk::{OpenOptions, Volume};
use sectorcrypt::storage::FileStorage;
use sectorcrypt::{BackendChoice, DataUnits, Error, ErrorKind, Xts, XtsKey};
use std::path::{Path, PathBuf};
use std::process::Command;

const PASSPHRASE: &[u8] = b"correct horse battery staple";

/// A LUKS image of `mib` MiB made by `cryptsetup luksFormat` with `args`.
fn luks_format(dir: &Path, name: &str, mib: u64, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(mib << 20).unwrap();
    let key_file = dir.join("passphrase");
    std::fs::write(&key_file, PASSPHRASE).unwrap();
    let out = Command::new("cryptsetup")
        .args(["luksFormat", "--batch-mode", "--key-file"])
        .arg(&key_file)
        .args(args)
        .arg(&path)
        .output()
        .expect("cryptsetup runs (apt-get install cryptsetup-bin; .ci/deps installs it)");
    assert!(out.status.success(), "cryptsetup luksFormat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    path
}

/// The volume key as cryptsetup prints it.
fn cryptsetup_volume_key(dir: &Path, path: &Path) -> Vec<u8> {
    let out = Command::new("cryptsetup")
        .args(["luksDump", "--dump-volume-key", "--batch-mode", "--key-file"])
        .arg(dir.join("passphrase"))
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let dump = text.split_once("MK dump:").expect("an MK dump").1;
    hex::decode(dump.split_whitespace().collect::<String>()).unwrap()
}

fn store(path: &Path, writable: bool) -> Box<FileStorage> {
    Box::new(FileStorage::open(path, writable).unwrap())
}

fn writable() -> OpenOptions {
    OpenOptions { writable: true, ..OpenOptions::default() }
}

/// Every supported combination: both versions, both key sizes, LUKS2 sector sizes 512 and 4096, and
/// each KDF.
#[test]
fn unlocks_what_cryptsetup_makes_and_follows_its_data_layout() {
    let dir = tempfile::tempdir().unwrap();
    let kdf_argon = ["--pbkdf-memory", "8192", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1"];
    let mut cases: Vec<(String, Vec<&str>)> = Vec::new();
    for key_bits in ["256", "512"] {
        for sector in ["512", "4096"] {
            for kdf in ["argon2id", "argon2i", "pbkdf2"] {
                let mut args =
                    vec!["--type", "luks2", "--key-size", key_bits, "--sector-size", sector, "--pbkdf", kdf];
                if kdf == "pbkdf2" {
                    args.extend(["--pbkdf-force-iterations", "1000", "--hash", "sha512"]);
                } else {
                    args.extend(kdf_argon);
                }
                cases.push((format!("luks2-{key_bits}-{sector}-{kdf}"), args));
            }
        }
        // 64 KiB header copies (the secondary at 64 KiB) and a data offset that is no power of two.
        cases.push((
            format!("luks2-{key_bits}-offset"),
            vec![
                "--type",
                "luks2",
                "--key-size",
                key_bits,
                "--sector-size",
                "512",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--luks2-metadata-size",
                "64k",
                "--luks2-keyslots-size",
                "1m",
                "--offset",
                "4200",
            ],
        ));
        cases.push((
            format!("luks1-{key_bits}"),
            vec![
                "--type",
                "luks1",
                "--key-size",
                key_bits,
                "--pbkdf-force-iterations",
                "1000",
                "--hash",
                "sha256",
            ],
        ));
    }
    for (name, args) in cases {
        let path = luks_format(dir.path(), &name, 20, &args);
        let expected_key = cryptsetup_volume_key(dir.path(), &path);
        let key = Volume::hazmat_luks_volume_key(store(&path, false).as_ref(), PASSPHRASE).unwrap();
        assert_eq!(&key[..], &expected_key[..], "{name}: another volume key");

        let header = sectorcrypt::luks::read_header_file(&path).unwrap();
        let volume = Volume::open_luks_file(&path, PASSPHRASE, writable()).unwrap();
        assert_eq!(volume.data_unit(), header.sector_size as usize, "{name}");
        let data = common::pattern(3 * 4096 + 1000, 7);
        volume.write_at(5000, &data).unwrap();
        volume.flush().unwrap();
        let mut back = vec![0u8; data.len()];
        volume.read_at(5000, &mut back).unwrap();
        assert!(back == data, "{name}: read back differs");
        drop(volume);

        // The ciphertext on disk, decrypted with the key alone: sector n has tweak n * (sector / 512).
        let sector = header.sector_size as usize;
        let first = 5000 / sector * sector;
        let end = (5000 + data.len()).div_ceil(sector) * sector;
        let raw = std::fs::read(&path).unwrap();
        let mut plain = raw[header.data_offset as usize + first..header.data_offset as usize + end].to_vec();
        let xts = Xts::new(&XtsKey::from_bytes(&expected_key).unwrap(), BackendChoice::Auto).unwrap();
        let step = (sector / 512) as u64;
        let units = DataUnits::new(sector).unwrap().starting_at(first as u64 / 512).with_step(step).unwrap();
        xts.decrypt_units(&mut plain, units).unwrap();
        assert!(plain[5000 - first..][..data.len()] == data, "{name}: not dm-crypt's layout");
    }
}

#[test]
fn wrong_passphrase_damage_and_truncation_are_clear_errors_that_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
    let path = luks_format(dir.path(), "v.img", 20, &args);
    let original = std::fs::read(&path).unwrap();
    let open = |path: &Path, passphrase: &[u8]| Volume::open_luks_file(path, passphrase, writable());

    let err = open(&path, b"wrong").unwrap_err();
    assert_eq!(err, Error::WrongPassphrase);
    assert_eq!(err.kind(), ErrorKind::KeyRejected);

    // One header copy damaged: the other opens, with a notice. Both: a clear error.
    let header = sectorcrypt::luks::read_header_file(&path).unwrap();
    let copy_len = header.metadata_size as usize;
    let mut one = original.clone();
    one[200] ^= 0xff;
    std::fs::write(dir.path().join("one.img"), &one).unwrap();
    let volume = open(&dir.path().join("one.img"), PASSPHRASE).unwrap();
    assert_eq!(volume.notices().len(), 1, "{:?}", volume.notices());
    drop(volume);
    let mut other = original.clone();
    other[copy_len + 200] ^= 0xff;
    std::fs::write(dir.path().join("other.img"), &other).unwrap();
    let volume = open(&dir.path().join("other.img"), PASSPHRASE).unwrap();
    assert!(volume.notices()[0].to_string().contains("copy 1"), "{:?}", volume.notices());
    drop(volume);
    let mut json = original.clone();
    json[4096 + 10] ^= 0x20; // inside the primary JSON area
    json[copy_len + 4096 + 10] ^= 0x20; // and the secondary's
    std::fs::write(dir.path().join("json.img"), &json).unwrap();
    let err = open(&dir.path().join("json.img"), PASSPHRASE).unwrap_err();
    assert!(err.to_string().contains("both LUKS2 header copies are damaged"), "{err}");

    // A damaged keyslot area: the key no longer merges, so the passphrase opens nothing.
    let slot = &header.keyslots[0];
    let mut area = original.clone();
    area[slot.area_offset as usize + 1000] ^= 1;
    std::fs::write(dir.path().join("area.img"), &area).unwrap();
    assert_eq!(open(&dir.path().join("area.img"), PASSPHRASE).unwrap_err(), Error::WrongPassphrase);

    // Truncated inside the keyslot area, and before the data segment.
    for (name, len) in
        [("cut-area.img", slot.area_offset as usize + 100), ("cut-data.img", header.data_offset as usize)]
    {
        std::fs::write(dir.path().join(name), &original[..len]).unwrap();
        let err = open(&dir.path().join(name), PASSPHRASE).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{name}: {err}");
    }

    // Not LUKS at all.
    std::fs::write(dir.path().join("zeros.img"), vec![0u8; 1 << 20]).unwrap();
    let err = open(&dir.path().join("zeros.img"), PASSPHRASE).unwrap_err();
    assert!(err.to_string().contains("not a LUKS volume"), "{err}");

    // Nothing was written to any of them.
    assert!(std::fs::read(&path).unwrap() == original);
    for (name, bytes) in [("one.img", &one), ("other.img", &other), ("json.img", &json), ("area.img", &area)]
    {
        assert!(std::fs::read(dir.path().join(name)).unwrap() == *bytes, "{name} changed");
    }
}

#[test]
fn unsupported_ciphers_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--type",
        "luks2",
        "--cipher",
        "aes-cbc-essiv:sha256",
        "--key-size",
        "256",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
    ];
    let path = luks_format(dir.path(), "cbc.img", 20, &args);
    let err = Volume::open_luks_file(&path, PASSPHRASE, OpenOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("aes-cbc-essiv:sha256"), "{err}");
}
