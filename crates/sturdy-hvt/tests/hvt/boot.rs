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
    assert_eq!(field(&status, "CapBnd"), "0000000000000000", "{status}");
    assert_eq!(field(&status, "CapAmb"), "0000000000000000", "{status}");
    running.terminate().expect_status(1);
}

/// The value of `name:` in a /proc status file.
fn field<'s>(status: &'s str, name: &str) -> &'s str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .trim()
}

/// `--uid`/`--gid`: a monitor started by root runs the guest as that user and group, with no
/// supplementary groups and empty capability sets, while its block device, opened before,
/// still works; `--control=@FD` keeps the socket given, and refuses what is not one.
#[test]
fn a_monitor_asked_to_drops_to_its_user_after_opening_its_devices() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (a monitor can only become another user as root)");
    }
    let dir = std::env::temp_dir().join(format!("sturdy-hvt-uid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    // The file stays root's, mode 0600: the monitor can only use it because it opened it
    // before dropping.
    std::fs::set_permissions(&disk, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let r = run_guest(
        &[
            "--uid=4000000001",
            "--gid=4000000002",
            &format!("--block:storage={}", disk.display()),
        ],
        "blk",
        &[],
    );
    r.expect_status(0);

    let mut running = spawn({
        let mut c = hvt();
        c.args([
            "--uid=4000000001",
            "--gid=4000000002",
            "--mem=64",
            guest("idle").to_str().unwrap(),
        ]);
        c
    });
    running.wait_for_line("ready", Duration::from_secs(20));
    let status = std::fs::read_to_string(format!("/proc/{}/status", running.pid())).unwrap();
    for (name, want) in [
        ("Uid", "4000000001\t4000000001\t4000000001\t4000000001"),
        ("Gid", "4000000002\t4000000002\t4000000002\t4000000002"),
        ("Groups", ""),
        ("CapInh", "0000000000000000"),
        ("CapPrm", "0000000000000000"),
        ("CapEff", "0000000000000000"),
        ("CapBnd", "0000000000000000"),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("Seccomp", "2"),
    ] {
        assert_eq!(field(&status, name), want, "{name} in\n{status}");
    }
    running.terminate().expect_status(1);

    let r = run(
        &["--control=@0", guest("hello").to_str().unwrap()],
        Duration::from_secs(20),
    );
    r.expect_status(1)
        .expect_stderr("--control=@0: file descriptor 0 is not a socket");
    std::fs::remove_dir_all(&dir).unwrap();
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
