//! Panics: sturdy-rt prints `panic: intentional panic at <file>:<line>` and exits with 255.
#![no_std]
#![no_main]

sturdy_rt::main!(main);
sturdy_rt::manifest!();

fn main(_env: &sturdy_rt::Env) -> i32 {
    panic!("intentional panic")
}
