//! A hostile guest hands the monitor bad pointers, lengths, handles and ports: each is refused
//! cleanly (exit 1 with a message, or EINVAL), the monitor never crashes.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::harness::*;

fn attack(name: &str) -> Result_ {
    let dir = TempDir::new("hostile");
    let disk = dir.file("disk.img", 64 * 512);
    let (ours, theirs) = seqpacket_pair();
    let mut cmd = hvt();
    cmd.args([
        &format!("--block:storage={disk}"),
        &format!("--net:service=@{}", theirs.as_raw_fd()),
        guest("hostile").to_str().unwrap(),
        name,
    ]);
    inherit_fd(&mut cmd, theirs.as_raw_fd());
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(theirs);
    let r = wait(child, Duration::from_secs(30));
    drop(ours);
    assert!(
        r.stdout.contains(&format!("attack: {name}")),
        "attack did not start: {r:#?}"
    );
    r
}

#[test]
fn out_of_range_pointers_and_lengths_stop_the_guest() {
    for name in [
        "puts-oob",
        "puts-len",
        "puts-wrap",
        "arg-oob",
        "blk-oob-buf",
        "halt-cookie-oob",
        "flush-arg-oob",
    ] {
        attack(name)
            .expect_status(1)
            .expect_stderr("Invalid guest access");
    }
}

#[test]
fn monitor_structures_and_text_cannot_be_written_through_hypercalls() {
    attack("write-pagetable")
        .expect_status(1)
        .expect_stderr("Invalid guest access: gpa=0x2000");
    attack("write-text")
        .expect_status(1)
        .expect_stderr("Invalid guest access");
}

#[test]
fn bad_handles_and_sizes_get_einval() {
    for name in ["blk-handle", "net-handle", "net-oversize", "flush-handle"] {
        attack(name).expect_status(0).expect_stdout("ret=2");
    }
}

#[test]
fn bad_ports_and_widths_stop_the_guest() {
    attack("bad-port")
        .expect_status(1)
        .expect_stderr("Invalid guest port access: port=0x509");
    attack("bad-width")
        .expect_status(1)
        .expect_stderr("Invalid guest port access: port=0x50");
}

#[test]
fn corrupt_nic_ring_indices_stop_the_guest() {
    attack("ring-tx-tail")
        .expect_status(1)
        .expect_stderr("guest TX tail 100000");
    attack("ring-rx-head")
        .expect_status(1)
        .expect_stderr("guest RX head 100000");
}
