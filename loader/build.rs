//! Links the firmware binary with `layout.ld` when it is built for the bare-metal target; host
//! builds (tests, clippy) are untouched.

fn main() {
    println!("cargo:rerun-if-changed=layout.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        println!("cargo:rustc-link-arg-bins=-T{dir}/layout.ld");
    }
}
