//! The smallest sturdy unikernel: prints a greeting and its arguments, then exits 0.
//! `sturdy-hvt hello-world Hello from sturdy`.
#![no_std]
#![no_main]

use sturdy_rt::{println, Env};

sturdy_rt::main!(main);
sturdy_rt::manifest!();

fn main(env: &Env) -> i32 {
    let mut words = env.args().peekable();
    if words.peek().is_none() {
        println!("Hello from a sturdy unikernel!");
    } else {
        let line: alloc::vec::Vec<&str> = words.collect();
        println!("{}", line.join(" "));
    }
    0
}

extern crate alloc;
