//! Builds `tests/c/api_test.c` against `include/sectorcrypt.h` and the static library with warnings as
//! errors, and runs it twice: natively, where every backend of this CPU runs, and under valgrind (whose
//! virtual CPU has no VAES, so the portable and AES-NI backends run there): every function of the C
//! ABI, no memory error, no leak.

use sectorcrypt::keys::NativeProvider;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The static library cargo built for this test run: it sits beside the test binary, in `deps`.
fn static_library() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let lib = exe.parent().expect("the deps directory").join("libsectorcrypt_ffi.a");
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

/// `pkg-config` on `ffi/sectorcrypt.pc`: the include directory, and the system libraries a static link
/// needs. The library itself is the one this test run built (`static_library`), not the release one.
fn pkg_config(what: &str) -> Vec<String> {
    let ffi = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", ffi)
        .args([what, "--static", "sectorcrypt"])
        .output()
        .expect("pkg-config runs (apt-get install pkg-config; .ci/deps installs it)");
    assert!(out.status.success(), "pkg-config cannot read ffi/sectorcrypt.pc");
    String::from_utf8(out.stdout).unwrap().split_whitespace().map(str::to_owned).collect()
}

fn compile(source: &Path, out: &Path) {
    let status = Command::new("cc")
        .args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror", "-g", "-O1"])
        .args(pkg_config("--cflags"))
        .arg(source)
        .arg(static_library())
        .args(pkg_config("--libs-only-l").into_iter().filter(|l| l != "-lsectorcrypt_ffi"))
        .arg("-o")
        .arg(out)
        .status()
        .expect("a C compiler (cc) runs");
    assert!(status.success(), "the C test program does not compile cleanly");
}

#[test]
fn pkg_config_version_is_the_crate_version() {
    assert_eq!(pkg_config("--modversion"), [env!("CARGO_PKG_VERSION")]);
}

#[test]
fn c_program_uses_every_function_without_memory_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (kdk, other) = (dir.path().join("kdk"), dir.path().join("other-kdk"));
    NativeProvider::init(&kdk).unwrap();
    NativeProvider::init(&other).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    // A LUKS2 image for sc_luks_open, made by cryptsetup (a cheap KDF: the test is about the ABI).
    let luks = dir.path().join("luks.img");
    std::fs::File::create(&luks).unwrap().set_len(20 << 20).unwrap();
    std::fs::write(dir.path().join("luks-passphrase"), "luks passphrase").unwrap();
    let format = Command::new("cryptsetup")
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
        ])
        .arg("--key-file")
        .arg(dir.path().join("luks-passphrase"))
        .arg(&luks)
        .output()
        .expect("cryptsetup runs (apt-get install cryptsetup-bin; .ci/deps installs it)");
    assert!(format.status.success(), "{}", String::from_utf8_lossy(&format.stderr));
    let program = dir.path().join("api_test");
    compile(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/api_test.c"), &program);

    let native = Command::new(&program).args([&kdk, &other, &work, &luks]).output().unwrap();
    assert!(native.status.success(), "the C test failed:\n{}", String::from_utf8_lossy(&native.stderr));
    // The same run again from an empty directory, under valgrind.
    std::fs::remove_dir_all(&work).unwrap();
    std::fs::create_dir(&work).unwrap();
    let valgrind = Command::new("valgrind")
        .args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
        ])
        .args(["--show-leak-kinds=definite,indirect"])
        .arg(&program)
        .args([&kdk, &other, &work, &luks])
        .output()
        .expect("valgrind runs (apt-get install valgrind; .ci/deps installs it)");
    let stderr = String::from_utf8_lossy(&valgrind.stderr);
    assert!(
        valgrind.status.code() == Some(0),
        "the C test under valgrind exited with {:?}:\n{stderr}",
        valgrind.status.code()
    );
    assert!(String::from_utf8_lossy(&valgrind.stdout).contains("all checks passed"));
}
