//! `hello` without sturdy's note: runs at CPL 0 like an upstream guest. On PVM hosts CPL 0 code
//! is emulated instruction by instruction (slow, and SSE arithmetic fails), so it writes its
//! output with plain console writes and no formatting.
#![no_std]
#![no_main]

use sturdy_rt::console::write;

sturdy_rt::main!(main, privileged);
sturdy_rt::manifest!();

fn main(env: &sturdy_rt::Env) -> i32 {
    write(b"Hello, World\nargs: ");
    write(env.cmdline().as_bytes());
    write(b"\nSUCCESS\n");
    0
}
