//! A guest that only computes: prints `spinning`, then runs a busy loop forever without ever
//! exiting to the monitor, for CPU quota tests and the `benches/sandbox.sh` measurement.
#![no_std]
#![no_main]

use sturdy_rt::{println, Env};

sturdy_rt::main!(main);
sturdy_rt::manifest!();

fn main(_env: &Env) -> i32 {
    println!("spinning");
    let mut x: u64 = 1;
    loop {
        // Something the compiler cannot drop: a value read back through a volatile pointer.
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        // SAFETY: `x` is a local, alive for the call.
        x = unsafe { core::ptr::read_volatile(&x) };
    }
}
