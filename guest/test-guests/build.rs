//! Links every test guest with sturdy-rt's linker script: `sturdy-rt-privileged.ld` for the
//! guests declared `sturdy_rt::main!(main, privileged)`, `sturdy-rt.ld` for all others.

use std::fs;

/// Guests that run at CPL 0 like upstream guests, without sturdy's note.
const PRIVILEGED: &[&str] = &["hello-cpl0"];

fn main() {
    println!("cargo:rerun-if-changed=src/bin");
    for entry in fs::read_dir("src/bin").expect("read src/bin") {
        let path = entry.expect("read src/bin").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let script = if PRIVILEGED.contains(&name) {
            "sturdy-rt-privileged.ld"
        } else {
            "sturdy-rt.ld"
        };
        println!("cargo:rustc-link-arg-bin={name}=-T{script}");
    }
}
