//! Initialised `.data` holds its values, `.bss` is zero, and both can be changed (docs/hvt-abi.md,
//! Conformance).
#![no_std]
#![no_main]

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use sturdy_rt::Env;
use test_guests::check;

sturdy_rt::main!(main);
sturdy_rt::manifest!();

static mut DATA: [u64; 4] = [1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef];
static mut BSS: [u64; 1024] = [0; 1024];

// Volatile accesses, so the compiler cannot answer from the initialisers instead of memory.
fn data(i: usize) -> u64 {
    // SAFETY: in bounds; one thread, no references to the static exist.
    unsafe { read_volatile(addr_of!(DATA[i])) }
}

fn set_data(i: usize, v: u64) {
    // SAFETY: as in `data`.
    unsafe { write_volatile(addr_of_mut!(DATA[i]), v) }
}

fn bss(i: usize) -> u64 {
    // SAFETY: as in `data`.
    unsafe { read_volatile(addr_of!(BSS[i])) }
}

fn set_bss(i: usize, v: u64) {
    // SAFETY: as in `data`.
    unsafe { write_volatile(addr_of_mut!(BSS[i]), v) }
}

fn main(_env: &Env) -> i32 {
    let initial = [1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef];
    for (i, &want) in initial.iter().enumerate() {
        check!(
            data(i) == want,
            ".data[{i}] is {:#x}, want {want:#x}",
            data(i)
        );
    }
    for i in 0..1024 {
        check!(bss(i) == 0, ".bss[{i}] is {:#x}, want 0", bss(i));
    }

    for (i, &was) in initial.iter().enumerate() {
        set_data(i, !was);
    }
    for i in 0..1024 {
        set_bss(i, i as u64 * 3 + 1);
    }
    for (i, &was) in initial.iter().enumerate() {
        check!(
            data(i) == !was,
            ".data[{i}] is {:#x} after a write of {:#x}",
            data(i),
            !was
        );
    }
    for i in 0..1024 {
        let want = i as u64 * 3 + 1;
        check!(
            bss(i) == want,
            ".bss[{i}] is {:#x} after a write of {want:#x}",
            bss(i)
        );
    }
    test_guests::success()
}
