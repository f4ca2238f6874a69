//! The console's limit: a guest flooding its console gets its burst and then its rate, the
//! rest is dropped, and stderr says how much. Assertions are on bytes, never on timings: the
//! bytes that passed plus those reported dropped are exactly what the guest wrote.

use std::time::{Duration, Instant};

use crate::harness::*;

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

/// Bytes dropped, summed over every notice on `stderr`, and how many notices there were.
fn dropped(stderr: &str) -> (u64, usize) {
    let notices: Vec<u64> = stderr
        .lines()
        .filter(|l| l.starts_with("sturdy-hvt: console: ... "))
        .map(|l| {
            let (_, rest) = l.split_once(" dropped (").expect("a notice says how much");
            let (bytes, _) = rest.split_once(" bytes").expect("and in bytes");
            bytes.parse::<u64>().expect("a number of bytes")
        })
        .collect();
    (notices.iter().sum(), notices.len())
}

/// The flood guest writing `limit` bytes without newlines, with monitor options `opts`;
/// the run and how long it took.
fn flood(opts: &[&str], limit: u64) -> (Result_, Duration) {
    let started = Instant::now();
    let limit = format!("--limit={limit}");
    let r = run_guest(opts, "flood", &["--solo5:quiet", &limit]);
    (r, started.elapsed())
}

#[test]
fn a_flood_passes_its_burst_and_rate_and_the_rest_is_dropped_and_counted() {
    let (rate, burst) = (64 * KIB, 256 * KIB);
    let (r, took) = flood(&["--console-rate=64K", "--console-burst=256K"], 64 * MIB);
    r.expect_status(0);
    let passed = r.stdout.len() as u64;
    let (dropped, notices) = dropped(&r.stderr);
    assert_eq!(passed + dropped, 64 * MIB, "{}", r.stderr);
    assert!(notices >= 1, "{}", r.stderr);
    // At most the burst and the rate over the whole run passed; at least the burst did.
    let most = burst + (rate as f64 * took.as_secs_f64()) as u64;
    assert!(
        (burst..=most).contains(&passed),
        "{passed} bytes passed in {took:?} (burst {burst}, rate {rate}/s)"
    );
    // What passed is the guest's own bytes, in order: `abc...z` from the start of each 64 KiB.
    let expected = |i: usize| b'a' + (i % (64 << 10) % 26) as u8;
    let wrong = (0..burst as usize).find(|&i| r.stdout.as_bytes()[i] != expected(i));
    assert_eq!(wrong, None, "stdout differs from what the guest wrote");
    assert!(
        r.stderr
            .contains("over the limit of 64 KiB/s, burst 256 KiB)"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_console_is_limited_by_default() {
    let (r, _) = flood(&[], 64 * MIB);
    r.expect_status(0);
    let (dropped, _) = dropped(&r.stderr);
    assert!(dropped > 0, "nothing dropped: {}", r.stderr);
    assert_eq!(r.stdout.len() as u64 + dropped, 64 * MIB);
    assert!(
        r.stderr
            .contains("over the limit of 256 KiB/s, burst 1 MiB)"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_rate_of_zero_lifts_the_limit() {
    let (r, _) = flood(&["--console-rate=0"], 16 * MIB);
    r.expect_status(0);
    assert_eq!(r.stdout.len() as u64, 16 * MIB);
    assert_eq!(dropped(&r.stderr), (0, 0), "{}", r.stderr);
}

#[test]
fn bad_console_limits_are_refused() {
    run_guest(&["--console-burst=0"], "hello", &[])
        .expect_status(1)
        .expect_stderr("--console-burst=0: expected a number of bytes");
    run_guest(&["--console-rate=fast"], "hello", &[])
        .expect_status(1)
        .expect_stderr("--console-rate=fast: expected a number of bytes");
}
