//! Puts sturdy-rt's linker scripts where the linker finds them.
//!
//! A guest binary is linked with `-Tsturdy-rt.ld` (or `-Tsturdy-rt-privileged.ld`); the linker
//! looks for the script in the link search path, to which this adds OUT_DIR. The privileged
//! script is the same layout without the sturdy note's program header (`note_sturdy`): a PT_NOTE
//! cannot be optional, and an empty one makes the file invalid (docs/hvt-abi.md, Notes).

use std::{env, fs, path::PathBuf};

/// The lines of sturdy-rt.ld that mention the sturdy note's program header: its declaration, the
/// output section placed in it, and the check that the note is there.
const STURDY_NOTE_LINES: usize = 3;

fn main() {
    println!("cargo:rerun-if-changed=sturdy-rt.ld");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = fs::read_to_string("sturdy-rt.ld").expect("read sturdy-rt.ld");

    let (note, rest): (Vec<&str>, Vec<&str>) = script
        .lines()
        .partition(|line| line.contains("note_sturdy"));
    assert_eq!(
        note.len(),
        STURDY_NOTE_LINES,
        "sturdy-rt.ld: expected {STURDY_NOTE_LINES} lines naming note_sturdy, found {note:#?}"
    );
    let privileged = rest.join("\n") + "\n";

    fs::write(out.join("sturdy-rt.ld"), &script).expect("write sturdy-rt.ld");
    fs::write(out.join("sturdy-rt-privileged.ld"), privileged)
        .expect("write sturdy-rt-privileged.ld");
    println!("cargo:rustc-link-search={}", out.display());
}
