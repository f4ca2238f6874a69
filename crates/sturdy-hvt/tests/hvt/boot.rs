//! Booting, console, clocks, memory layout, faults, W^X: the guests that need no devices.

use std::time::Duration;

use crate::harness::*;

#[test]
fn hello_prints_its_arguments() {
    run_guest(&[], "hello", &["one", "two"])
        .expect_success()
        .expect_stdout("Hello, World")
        .expect_stdout("one two");
}

#[test]
fn hello_runs_at_cpl0_without_the_sturdy_note() {
    run_guest(&["--mem=8"], "hello-cpl0", &["--solo5:quiet", "upstream"])
        .expect_success()
        .expect_stdout("Hello");
}

#[test]
fn quiet_prints_nothing_but_success() {
    let r = run_guest(&[], "quiet", &["--solo5:quiet"]);
    r.expect_status(0);
    assert_eq!(r.stdout, "SUCCESS\n", "{r:#?}");
}

#[test]
fn globals_are_initialised() {
    run_guest(&[], "globals", &[]).expect_success();
}

#[test]
fn floating_point_works_deprivileged() {
    run_guest(&[], "fpu", &[]).expect_success();
}

#[test]
fn clocks_and_one_second_yields() {
    run_guest(&[], "time", &[]).expect_success();
}

#[test]
fn panic_is_reported_with_status_255() {
    run_guest(&[], "panic", &[])
        .expect_status(255)
        .expect_stdout("intentional panic");
}

#[test]
fn write_to_unmapped_memory_is_a_reported_fault() {
    run_guest(&[], "exception", &[])
        .expect_status(255)
        .expect_stderr("#PF")
        .expect_stderr("cr2=0x1000000000")
        .expect_stderr("rip=0x");
}

#[test]
fn zero_page_is_unmapped() {
    run_guest(&[], "zeropage", &[])
        .expect_status(255)
        .expect_stderr("#PF")
        .expect_stderr("cr2=0x0");
}

#[test]
fn writing_text_or_rodata_is_stopped() {
    for attack in ["write-text", "write-rodata"] {
        let r = run_guest(&[], "wx", &[attack]);
        r.expect_status(255)
            .expect_stderr("#PF")
            .expect_stderr("write to a read-only page");
        assert!(!r.stdout.contains("not stopped"), "{r:#?}");
    }
}

#[test]
fn executing_data_or_stack_is_stopped() {
    for attack in ["exec-data", "exec-stack"] {
        let r = run_guest(&[], "wx", &[attack]);
        r.expect_status(255)
            .expect_stderr("#PF")
            .expect_stderr("non-executable");
        assert!(!r.stdout.contains("not stopped"), "{r:#?}");
    }
}

#[test]
fn monitor_runs_under_seccomp_and_exits_1_on_sigterm() {
    let mut running = spawn({
        let mut c = hvt();
        c.args(["--mem=64", guest("idle").to_str().unwrap()]);
        c
    });
    running.wait_for_line("ready", Duration::from_secs(20));
    let status = std::fs::read_to_string(format!("/proc/{}/status", running.pid())).unwrap();
    let seccomp = status
        .lines()
        .find(|l| l.starts_with("Seccomp:"))
        .unwrap_or("");
    assert_eq!(
        seccomp.split_whitespace().nth(1),
        Some("2"),
        "not in seccomp filter mode: {seccomp}"
    );
    let caps = status
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap_or("");
    assert_eq!(
        caps.split_whitespace().nth(1),
        Some("0000000000000000"),
        "capabilities kept: {caps}"
    );
    running.terminate().expect_status(1);
}

#[test]
fn version_and_help() {
    run(&["--version"], Duration::from_secs(5))
        .expect_status(0)
        .expect_stdout("sturdy-hvt");
    run(&["--help"], Duration::from_secs(5))
        .expect_status(0)
        .expect_stdout("--block:NAME=PATH");
}
