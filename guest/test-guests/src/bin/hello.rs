//! Prints a greeting and its arguments as received (docs/hvt-abi.md, Conformance: "hello").
#![no_std]
#![no_main]

use sturdy_rt::{println, Env};

sturdy_rt::main!(main);
sturdy_rt::manifest!();

fn main(env: &Env) -> i32 {
    println!("Hello, World");
    println!("args: {}", env.cmdline());
    test_guests::success()
}
