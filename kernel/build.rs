//! Links the bare-metal kernel with its linker script. Host builds (unit tests, clippy) link
//! normally.

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("link.ld");
        println!(
            "cargo:rustc-link-arg-bin=ward-kernel=-T{}",
            script.display()
        );
        // A fixed-address executable (ET_EXEC): the loader maps segments where they are linked
        // and applies no relocations.
        println!("cargo:rustc-link-arg-bin=ward-kernel=--no-pie");
        println!("cargo:rustc-link-arg-bin=ward-kernel=-znorelro");
        println!("cargo:rustc-link-arg-bin=ward-kernel=-zmax-page-size=4096");
    }
}
