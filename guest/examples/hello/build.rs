//! Links the unikernel with sturdy-rt's (deprivileged) linker script.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Tsturdy-rt.ld");
}
