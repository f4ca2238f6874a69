//! A guest that touches memory: `memhog N [MS]` allocates N MiB of its heap 1 MiB at a time
//! (waiting MS milliseconds after each, default 0), writing every 4 KiB page, printing `touched N MiB` every 8 MiB and `touched all: N MiB` at the end,
//! then sleeps in long POLLs forever. For the monitors' memory limit: what a monitor whose guest
//! used its memory costs, and what happens when that is more than its limit. Asking for more
//! than the heap has ends the guest as any allocation failure does (status 255).
#![no_std]
#![no_main]

extern crate alloc;

use alloc::alloc::{alloc, Layout};
use core::time::Duration;

use sturdy_rt::{poll, println, Env};

sturdy_rt::main!(main);
sturdy_rt::manifest!();

const CHUNK: usize = 1 << 20;
const PAGE: usize = 4096;

fn main(env: &Env) -> i32 {
    let mut args = env.args();
    let Some(want) = args.next().and_then(|a| a.parse::<usize>().ok()) else {
        println!("usage: memhog MIB [MS_PER_MIB]");
        return 1;
    };
    let pause = args.next().and_then(|a| a.parse::<u64>().ok()).unwrap_or(0);
    let layout = Layout::from_size_align(CHUNK, PAGE).expect("a valid layout");
    for mib in 1..=want {
        // SAFETY: a non-zero-sized layout; the memory is leaked on purpose. A failed
        // allocation aborts the guest (sturdy-rt's heap), so `p` is never null.
        let p = unsafe { alloc(layout) };
        for offset in (0..CHUNK).step_by(PAGE) {
            // SAFETY: inside the chunk just allocated, which nothing else references.
            unsafe { p.add(offset).write_volatile(1) };
        }
        if mib % 8 == 0 {
            println!("touched {mib} MiB");
        }
        if pause > 0 {
            poll(Duration::from_millis(pause));
        }
    }
    println!("touched all: {want} MiB");
    loop {
        poll(Duration::from_secs(3600));
    }
}
