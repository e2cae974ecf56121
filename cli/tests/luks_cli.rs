//! `sectorcrypt luks` against images made by the real tools: cryptsetup (LUKS2, LUKS1) and qemu-img
//! (LUKS1, as QEMU writes it), each side reading what the other wrote, `sectorcrypt raw` with the
//! volume key decrypting what `luks write` put on disk, and the refusals. Needs cryptsetup-bin and
//! qemu-utils (`.ci/deps`).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SECTORCRYPT: &str = env!("CARGO_BIN_EXE_sectorcrypt");
const MIB: usize = 1 << 20;
const PASSPHRASE: &str = "luks passphrase";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn sc(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(SECTORCRYPT);
    cmd.args(args).arg("--passphrase-file").arg(dir.join("passphrase")).current_dir(dir);
    cmd
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("passphrase"), PASSPHRASE).unwrap();
    dir
}

fn cryptsetup_image(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(24 << 20).unwrap();
    run(Command::new("cryptsetup")
        .args(["luksFormat", "--batch-mode", "--key-file"])
        .arg(dir.join("passphrase"))
        .args(args)
        .arg(&path));
    path
}

fn volume_key_hex(dir: &Path, path: &Path) -> String {
    let out = run(Command::new("cryptsetup")
        .args(["luksDump", "--dump-volume-key", "--batch-mode", "--key-file"])
        .arg(dir.join("passphrase"))
        .arg(path));
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_once("MK dump:").unwrap().1.split_whitespace().collect()
}

/// `luks write` puts dm-crypt's ciphertext on disk (raw decrypt with the key and the tweak rule gives
/// it back), and ciphertext made by `raw encrypt` reads back through `luks read`; for 512- and
/// 4096-byte sectors.
#[test]
fn luks_and_raw_agree_both_ways() {
    let dir = setup();
    let d = dir.path();
    for sector in [512usize, 4096] {
        let name = format!("v{sector}.img");
        let kdf = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
        let path = cryptsetup_image(
            d,
            &name,
            &[&["--type", "luks2", "--sector-size", &sector.to_string()][..], &kdf].concat(),
        );
        let key = volume_key_hex(d, &path);
        let json = run(Command::new(SECTORCRYPT).args(["luks", "dump", "--json"]).arg(&path)).stdout;
        let header: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let data_offset = header["data_offset"].as_u64().unwrap() as usize;
        assert_eq!(header["sector_size"].as_u64(), Some(sector as u64));

        // sectorcrypt writes sectors 16.. (byte 65536 on), raw decrypts them.
        let data = common::pattern(MIB, sector as u64);
        std::fs::write(d.join("data.bin"), &data).unwrap();
        let before = std::fs::read(&path).unwrap();
        run(&mut sc(d, &["luks", "write", &name, "--offset", "65536", "--from", "data.bin"]));
        let image = std::fs::read(&path).unwrap();
        assert!(
            image[..data_offset] == before[..data_offset],
            "{sector}: the LUKS header or keyslots changed"
        );
        std::fs::write(d.join("cipher.bin"), &image[data_offset + 65536..data_offset + 65536 + MIB]).unwrap();
        let _ = std::fs::remove_file(d.join("plain.bin"));
        let first = (65536 / 512).to_string();
        let step = (sector / 512).to_string();
        run(Command::new(SECTORCRYPT)
            .args(["raw", "decrypt", "--key", &key, "--data-unit", &sector.to_string()])
            .args([
                "--first-unit",
                &first,
                "--tweak-step",
                &step,
                "--from",
                "cipher.bin",
                "--to",
                "plain.bin",
            ])
            .current_dir(d));
        assert!(std::fs::read(d.join("plain.bin")).unwrap() == data, "{sector}: raw decrypt differs");

        // raw encrypts other data for the same place; luks read decrypts it.
        let other = common::pattern(MIB, 99);
        std::fs::write(d.join("other.bin"), &other).unwrap();
        let _ = std::fs::remove_file(d.join("other.enc"));
        run(Command::new(SECTORCRYPT)
            .args(["raw", "encrypt", "--key", &key, "--data-unit", &sector.to_string()])
            .args(["--first-unit", &first, "--tweak-step", &step, "--from", "other.bin", "--to", "other.enc"])
            .current_dir(d));
        let mut image = image;
        image[data_offset + 65536..data_offset + 65536 + MIB]
            .copy_from_slice(&std::fs::read(d.join("other.enc")).unwrap());
        std::fs::write(&path, &image).unwrap();
        let _ = std::fs::remove_file(d.join("back.bin"));
        run(&mut sc(d, &["luks", "read", &name, "--offset", "65536", "--length", "1M", "--to", "back.bin"]));
        assert!(std::fs::read(d.join("back.bin")).unwrap() == other, "{sector}: luks read differs");
    }
}

fn qemu_secret() -> [&'static str; 2] {
    ["--object", "secret,id=sec0,file=passphrase"]
}

/// LUKS1 as QEMU makes it: qemu-img writes, sectorcrypt reads; sectorcrypt writes, qemu-img reads.
#[test]
fn qemu_luks1_images_both_ways() {
    let dir = setup();
    let d = dir.path();
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "luks"])
        .args(qemu_secret())
        .args(["-o", "key-secret=sec0,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,iter-time=10"])
        .args(["q.img", "16M"])
        .current_dir(d));
    let image = common::pattern(16 * MIB, 5);
    std::fs::write(d.join("raw.img"), &image).unwrap();
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "raw.img", "--target-image-opts"])
        .args(qemu_secret())
        .arg("driver=luks,key-secret=sec0,file.filename=q.img")
        .current_dir(d));
    run(&mut sc(d, &["luks", "export", "q.img", "--to", "exported.img"]));
    assert!(
        std::fs::read(d.join("exported.img")).unwrap() == image,
        "sectorcrypt reads other bytes than QEMU wrote"
    );

    let patch = common::pattern(3 * MIB + 777, 6);
    std::fs::write(d.join("patch.bin"), &patch).unwrap();
    run(&mut sc(d, &["luks", "write", "q.img", "--offset", "4321", "--from", "patch.bin"]));
    run(Command::new("qemu-img")
        .args(["convert", "--image-opts"])
        .args(qemu_secret())
        .args(["driver=luks,key-secret=sec0,file.filename=q.img", "-O", "raw", "back.img"])
        .current_dir(d));
    let mut expected = image;
    expected[4321..4321 + patch.len()].copy_from_slice(&patch);
    assert!(
        std::fs::read(d.join("back.img")).unwrap() == expected,
        "QEMU reads other bytes than sectorcrypt wrote"
    );
}

#[test]
fn wrong_passphrase_is_one_line_and_writes_nothing() {
    let dir = setup();
    let d = dir.path();
    let path = cryptsetup_image(
        d,
        "v.img",
        &["--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"],
    );
    let before = std::fs::read(&path).unwrap();
    std::fs::write(d.join("data.bin"), b"some bytes").unwrap();
    std::fs::write(d.join("wrong"), "not it\n").unwrap();
    let out = Command::new(SECTORCRYPT)
        .args(["luks", "write", "v.img", "--offset", "0", "--from", "data.bin", "--passphrase-file", "wrong"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no keyslot opens with this passphrase"), "{stderr}");
    assert!(std::fs::read(&path).unwrap() == before, "a refused write changed the volume");
    // The environment variable works as the passphrase source too.
    let out = Command::new(SECTORCRYPT)
        .args(["luks", "read", "v.img", "--offset", "0", "--length", "16", "--to", "-"])
        .env("SECTORCRYPT_PASSPHRASE", PASSPHRASE)
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), 16);
}
