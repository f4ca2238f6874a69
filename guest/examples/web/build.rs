//! Links the guest with sturdy-rt's linker script (it runs deprivileged: see sturdy-rt's
//! documentation, "Building a guest").

fn main() {
    println!("cargo:rustc-link-arg-bins=-Tsturdy-rt.ld");
}
