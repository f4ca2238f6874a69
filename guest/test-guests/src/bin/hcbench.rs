//! Measures the cost of a hypercall round trip: N WALLTIME hypercalls (first argument, default
//! 100000), timed with the TSC. Prints `walltime_hypercall_ns=<ns per call>`.
#![no_std]
#![no_main]

use sturdy_rt::{hypercall, println, Env, Instant};

sturdy_rt::main!(main);
sturdy_rt::manifest!();

fn main(env: &Env) -> i32 {
    let calls: u64 = match env.args().next() {
        None => 100_000,
        Some(arg) => match arg.parse() {
            Ok(n) if n > 0 => n,
            _ => test_guests::fail(format_args!("usage: hcbench [CALLS], not {arg:?}")),
        },
    };
    let start = Instant::now();
    for _ in 0..calls {
        hypercall::walltime();
    }
    let elapsed = start.elapsed();
    println!(
        "walltime_hypercall_ns={}",
        elapsed.as_nanos() / u128::from(calls)
    );
    test_guests::success()
}
