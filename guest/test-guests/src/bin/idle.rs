//! A guest that uses little and does nothing, for measuring a monitor's footprint: touches each
//! 4 KiB page of a 2 MiB region, prints `ready`, then sleeps in long POLLs forever.
#![no_std]
#![no_main]

use core::ptr::addr_of_mut;
use core::time::Duration;

use sturdy_rt::{poll, println, Env};

sturdy_rt::main!(main);
sturdy_rt::manifest!();

const PAGE: usize = 4096;

#[repr(C, align(4096))]
struct Region([u8; 2 << 20]);

/// In .bss: no room in the image, and untouched until the loop below.
static mut REGION: Region = Region([0; 2 << 20]);

fn main(_env: &Env) -> i32 {
    let region = addr_of_mut!(REGION).cast::<u8>();
    for offset in (0..size_of::<Region>()).step_by(PAGE) {
        // SAFETY: inside REGION; one thread and no references to it.
        unsafe { region.add(offset).write_volatile(1) };
    }
    println!("ready");
    loop {
        poll(Duration::from_secs(3600));
    }
}
