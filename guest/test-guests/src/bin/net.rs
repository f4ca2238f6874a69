//! ARP and ICMP echo responder on NIC `service` (docs/hvt-abi.md, Conformance), for
//! `--ipv4=A.B.C.D` (default 10.0.0.2). Idles in POLL and answers everything that arrived before
//! sleeping again. With `--limit=N` it prints SUCCESS and exits 0 after N echo replies.
#![no_std]
#![no_main]

use core::net::Ipv4Addr;
use core::time::Duration;

use sturdy_rt::{poll, Env};
use test_guests::responder::{Responder, MAX_FRAME};

sturdy_rt::main!(main);
sturdy_rt::manifest!(net "service");

fn main(env: &Env) -> i32 {
    let limit = test_guests::limit_option(env);
    let mut responder = Responder::open(env, "service", "ipv4", Ipv4Addr::new(10, 0, 0, 2));
    let mut buf = [0u8; MAX_FRAME];
    loop {
        if let Err(e) = responder.drain(&mut buf) {
            test_guests::fail(format_args!("service: {e}"));
        }
        if limit.is_some_and(|n| responder.echo_replies() >= n) {
            return test_guests::success();
        }
        poll(Duration::from_secs(60));
    }
}
