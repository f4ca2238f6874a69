//! Reads address 0: the zero page is not mapped, so the CPU raises #PF and the monitor exits with
//! 255 (docs/hvt-abi.md, Conformance). Inline assembly, because a null dereference is undefined
//! behaviour in Rust.
#![no_std]
#![no_main]

use core::arch::asm;

sturdy_rt::main!(main);
sturdy_rt::manifest!();

fn main(_env: &sturdy_rt::Env) -> i32 {
    sturdy_rt::println!("reading address 0");
    let value: u64;
    // SAFETY: a plain load; it must fault, and the monitor ends the run.
    unsafe { asm!("mov {}, qword ptr [0]", out(reg) value, options(nostack, readonly)) };
    test_guests::fail(format_args!(
        "reading address 0 did not fault (read {value:#x})"
    ))
}
