//! Run with `--solo5:quiet`: prints exactly `SUCCESS` and nothing else, no banner (docs/hvt-abi.md,
//! Conformance).
#![no_std]
#![no_main]

sturdy_rt::main!(main);
sturdy_rt::manifest!();

fn main(_env: &sturdy_rt::Env) -> i32 {
    test_guests::success()
}
