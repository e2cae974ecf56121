//! `include/sectorcrypt.h` is what cbindgen makes of this crate: a stale committed header fails here.
//! `SECTORCRYPT_BLESS=1` rewrites it instead.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = crate_dir.join("../include/sectorcrypt.h");
    if std::env::var_os("SECTORCRYPT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("include/sectorcrypt.h is writable");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/sectorcrypt.h is stale: regenerate it with `SECTORCRYPT_BLESS=1 cargo test -p sectorcrypt-ffi --test header`"
    );
}
