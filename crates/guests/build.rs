//! Builds the guest workspace (`guest/`) so that `cargo build` and `cargo test` of the main
//! workspace always have current guest images.
//!
//! The guests are a separate cargo workspace with their own target and link settings
//! (`guest/.cargo/config.toml`), so this runs a second cargo in `guest/`, as if by hand:
//! `cargo build --release --locked`, with its target directory under the main workspace's
//! (`target/guest`). Environment variables that cargo sets for build scripts, or that configure
//! the outer build, would leak into that cargo and change how it builds; they are removed.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the guests are built for (set in `guest/.cargo/config.toml`).
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("crates/guests is two levels below the workspace root");
    let guest_dir = root.join("guest");
    let target_dir = root.join("target").join("guest");

    // Everything the images are built from, and nothing they are built into: guest/ as a whole
    // would include guest/target.
    for input in [
        "guest/Cargo.toml",
        "guest/Cargo.lock",
        "guest/.cargo",
        "guest/rt",
        "guest/test-guests",
        "guest/examples",
        "crates/abi",
        "crates/bootcfg",
        "crates/kvstore",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guest_dir)
        .args(["build", "--release", "--locked", "--color", "never"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (key, _) in env::vars_os() {
        if leaks_into_inner_cargo(&key) {
            cmd.env_remove(&key);
        }
    }

    let output = cmd.output().unwrap_or_else(|e| {
        panic!(
            "could not run cargo to build the guest images in {}: {e}",
            guest_dir.display()
        )
    });
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        panic!(
            "building the guest images failed (cargo build --release in {}); its output is above",
            guest_dir.display()
        );
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.lines().any(|l| l.starts_with("warning")) {
        println!(
            "cargo:warning=the guest images built with warnings; \
             run `cargo build --release` in guest/ to see them"
        );
    }

    let images = target_dir.join(GUEST_TARGET).join("release");
    println!("cargo:rustc-env=STURDY_GUEST_DIR={}", images.display());
}

/// Whether the variable `key`, inherited by this build script, must not reach the inner cargo.
fn leaks_into_inner_cargo(key: &OsStr) -> bool {
    let Some(key) = key.to_str() else {
        return false;
    };
    // Kept: where cargo lives and its caches, the jobserver shared with the outer build (so the
    // two builds together use no more jobs than asked for), network and registry settings.
    const KEEP: &[&str] = &["CARGO_HOME", "CARGO_MAKEFLAGS"];
    const KEEP_PREFIXES: &[&str] = &["CARGO_NET_", "CARGO_HTTP_", "CARGO_REGISTRIES_"];
    if KEEP.contains(&key) || KEEP_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return false;
    }
    // Removed: everything else cargo sets for a build script (CARGO_PKG_*, CARGO_CFG_*,
    // CARGO_MANIFEST_*, CARGO_ENCODED_RUSTFLAGS, ...) or reads as configuration
    // (CARGO_TARGET_DIR, CARGO_BUILD_*, CARGO_PROFILE_*, ...), the outer build's flags, and the
    // build script's own inputs. RUSTC_WRAPPER (e.g. sccache) stays; RUSTC_WORKSPACE_WRAPPER is
    // how `cargo clippy` runs clippy on the outer workspace, not on the guests.
    key.starts_with("CARGO_")
        || matches!(
            key,
            "RUSTFLAGS"
                | "RUSTDOCFLAGS"
                | "RUSTC_WORKSPACE_WRAPPER"
                | "RUSTC_LINKER"
                | "TARGET"
                | "HOST"
                | "PROFILE"
                | "OUT_DIR"
                | "OPT_LEVEL"
                | "DEBUG"
                | "NUM_JOBS"
        )
}
