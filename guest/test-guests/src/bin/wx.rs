//! W^X as the monitor enforces it for deprivileged guests: text is not writable, rodata is not
//! writable, data and stack are not executable. The first argument picks one attempt; each must
//! end in a CPU exception the monitor reports (exit 255). A guest that gets past it prints
//! `FAILURE: not stopped` and exits 1.
#![no_std]
#![no_main]

use core::ptr::addr_of_mut;

use sturdy_rt::{println, Env};

sturdy_rt::main!(main);
sturdy_rt::manifest!();

/// In .rodata: the compiler may place a non-mut static without interior mutability there.
static READ_ONLY: [u8; 16] = [0x5a; 16];

/// In .data: where code must not run.
static mut DATA_CODE: [u8; 16] = [0; 16];

const RET: u8 = 0xc3;

const ATTEMPTS: [&str; 4] = ["write-text", "write-rodata", "exec-data", "exec-stack"];

fn main(env: &Env) -> i32 {
    let Some(attempt) = env.args().next().filter(|a| ATTEMPTS.contains(a)) else {
        println!("usage: wx write-text|write-rodata|exec-data|exec-stack");
        return 1;
    };
    println!("attempt: {attempt}");
    match attempt {
        "write-text" => write_byte(main as *const () as *mut u8),
        "write-rodata" => write_byte(READ_ONLY.as_ptr().cast_mut()),
        "exec-data" => {
            let code = addr_of_mut!(DATA_CODE).cast::<u8>();
            // SAFETY: DATA_CODE is ours; one thread and no references to it.
            unsafe { code.write_volatile(RET) };
            call(code);
        }
        "exec-stack" => {
            let mut code = [0u8; 16];
            // SAFETY: a write to our own local array, volatile so it is not optimised away.
            unsafe { code.as_mut_ptr().write_volatile(RET) };
            call(code.as_ptr());
        }
        _ => unreachable!("checked against ATTEMPTS"),
    }
    test_guests::fail(format_args!("not stopped ({attempt})"))
}

/// Writes one byte at `at`, which must fault.
fn write_byte(at: *mut u8) {
    // SAFETY: not safe: `at` is in a read-only segment and the write must fault. Volatile, so
    // the compiler emits it although the memory is immutable as far as Rust knows.
    unsafe { at.write_volatile(0) };
}

/// Calls the `ret` instruction at `code`, which must fault on the fetch.
fn call(code: *const u8) {
    // SAFETY: not safe: `code` is in a non-executable page and the call must fault. Were it
    // executed, it is a lone `ret`, which returns here.
    let f: extern "C" fn() = unsafe { core::mem::transmute(code) };
    f();
}
