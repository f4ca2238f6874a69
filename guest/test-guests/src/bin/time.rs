//! Clocks and timeouts (docs/hvt-abi.md, Conformance): monotonic time increases, the wall clock is
//! plausible, and a POLL with a 1 s timeout (no NIC, so nothing can wake it) lasts 1 s +- 0.2 s on
//! both clocks.
#![no_std]
#![no_main]

use core::time::Duration;

use sturdy_rt::time::wall_clock;
use sturdy_rt::{poll, println, Env, Instant};
use test_guests::check;

sturdy_rt::main!(main);
sturdy_rt::manifest!();

/// 2020-01-01T00:00:00Z.
const YEAR_2020: Duration = Duration::from_secs(1_577_836_800);
const TOLERANCE: Duration = Duration::from_millis(200);

fn main(_env: &Env) -> i32 {
    let before = Instant::now();
    let wall = wall_clock();
    let after = Instant::now();
    check!(
        after > before,
        "monotonic clock did not advance: {before:?} then {after:?}"
    );
    check!(
        wall > YEAR_2020,
        "wall clock is {wall:?} since the epoch, before 2020"
    );

    for i in 0..3 {
        let (mono0, wall0) = (Instant::now(), wall_clock());
        let ready = poll(Duration::from_secs(1));
        let (mono1, wall1) = (Instant::now(), wall_clock());
        check!(
            ready.is_empty(),
            "poll reported devices {:#x} ready, but there are none",
            ready.bits()
        );
        let mono = mono1 - mono0;
        let wall = wall1.saturating_sub(wall0);
        println!(
            "poll {i}: monotonic {} us, wall {} us",
            mono.as_micros(),
            wall.as_micros()
        );
        check!(
            mono.abs_diff(Duration::from_secs(1)) <= TOLERANCE,
            "1 s poll took {mono:?} (monotonic)"
        );
        check!(
            wall.abs_diff(Duration::from_secs(1)) <= TOLERANCE,
            "1 s poll took {wall:?} (wall clock)"
        );
    }
    test_guests::success()
}
