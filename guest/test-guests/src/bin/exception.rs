//! Writes to an address beyond the 4 GiB the page tables map: the CPU raises #PF, the monitor
//! reports it and exits with 255 (docs/hvt-abi.md, Conformance). Never prints SUCCESS.
#![no_std]
#![no_main]

sturdy_rt::main!(main);
sturdy_rt::manifest!();

const UNMAPPED: usize = 0x10_0000_0000;

fn main(_env: &sturdy_rt::Env) -> i32 {
    sturdy_rt::println!("writing to unmapped address {UNMAPPED:#x}");
    // SAFETY: not safe at all: this write must fault, and the monitor ends the run.
    unsafe { (UNMAPPED as *mut u64).write_volatile(1) };
    test_guests::fail(format_args!("the write to {UNMAPPED:#x} did not fault"))
}
