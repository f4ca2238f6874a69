//! Prints the MTU of NIC `service` from the manifest copy, as `mtu=N` (docs/hvt-abi.md,
//! Conformance: MTU 9000 reported from the TAP device).
#![no_std]
#![no_main]

use sturdy_rt::{println, Net};

sturdy_rt::main!(main);
sturdy_rt::manifest!(net "service");

fn main(_env: &sturdy_rt::Env) -> i32 {
    let net = Net::open("service")
        .unwrap_or_else(|e| test_guests::fail(format_args!("open service: {e}")));
    println!("mtu={}", net.mtu());
    test_guests::success()
}
