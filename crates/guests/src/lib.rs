//! Where the guest images are.
//!
//! This crate's build script builds the guest workspace (`guest/`: the `sturdy-rt` SDK and the
//! test guests) whenever the main workspace is built, so the images are always current. Each
//! binary of `guest/test-guests/src/bin/NAME.rs` becomes the image `NAME`.

use std::path::PathBuf;

/// The directory holding the guest images.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("STURDY_GUEST_DIR"))
}

/// The path of guest image `name` (e.g. `"hello"`). Panics if there is no such image.
pub fn path(name: &str) -> PathBuf {
    let path = dir().join(name);
    assert!(
        path.is_file(),
        "no guest image {name:?} at {}: is there a guest/test-guests/src/bin/{name}.rs? \
         (the images are built by `cargo build` of the main workspace)",
        path.display()
    );
    path
}
