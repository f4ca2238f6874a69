//! The responder of `net` on two NICs at once (docs/hvt-abi.md, Conformance): `service0` for
//! `--ipv4-0=` (default 10.0.0.2) and `service1` for `--ipv4-1=` (default 10.1.0.2). `--limit=N`
//! counts the echo replies on both together.
#![no_std]
#![no_main]

use core::net::Ipv4Addr;
use core::time::Duration;

use sturdy_rt::{poll, Env};
use test_guests::responder::{Responder, MAX_FRAME};

sturdy_rt::main!(main);
sturdy_rt::manifest!(net "service0", net "service1");

fn main(env: &Env) -> i32 {
    let limit = test_guests::limit_option(env);
    let mut responders = [
        Responder::open(env, "service0", "ipv4-0", Ipv4Addr::new(10, 0, 0, 2)),
        Responder::open(env, "service1", "ipv4-1", Ipv4Addr::new(10, 1, 0, 2)),
    ];
    let mut buf = [0u8; MAX_FRAME];
    let mut ready = poll(Duration::ZERO);
    loop {
        for responder in responders.iter_mut().filter(|r| ready.contains(r.net())) {
            if let Err(e) = responder.drain(&mut buf) {
                test_guests::fail(format_args!("handle {}: {e}", responder.net().handle()));
            }
        }
        let replies: u64 = responders.iter().map(Responder::echo_replies).sum();
        if limit.is_some_and(|n| replies >= n) {
            return test_guests::success();
        }
        ready = poll(Duration::from_secs(60));
    }
}
