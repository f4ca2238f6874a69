//! Malformed inputs: each exits 1 with a message naming the problem.

use std::time::Duration;

use crate::harness::*;

/// Offsets of the PT_NOTE segments of an ELF64 file: (phdr offset, p_offset, p_filesz).
fn notes(elf: &[u8]) -> Vec<(usize, usize, usize)> {
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let (phoff, phnum) = (u64_at(0x20), u16_at(0x38));
    (0..phnum)
        .map(|i| phoff + i * 56)
        .filter(|&ph| u32::from_le_bytes(elf[ph..ph + 4].try_into().unwrap()) == 4)
        .map(|ph| (ph, u64_at(ph + 8), u64_at(ph + 32)))
        .collect()
}

/// The note with n_type `type_`: (phdr offset, note offset).
fn note(elf: &[u8], type_: u32) -> (usize, usize) {
    notes(elf)
        .into_iter()
        .find(|&(_, off, _)| {
            u32::from_le_bytes(elf[off + 8..off + 12].try_into().unwrap()) == type_
        })
        .map(|(ph, off, _)| (ph, off))
        .expect("note present")
}

const ABI1: u32 = 0x3149_4241;
const MFT1: u32 = 0x3154_464d;

fn hello() -> Vec<u8> {
    std::fs::read(guest("hello")).unwrap()
}

fn run_image(bytes: &[u8], extra: &[&str]) -> Result_ {
    let dir = TempDir::new("malformed");
    let path = dir.write("kernel", bytes);
    let mut args = extra.to_vec();
    args.push(&path);
    run(&args, Duration::from_secs(20))
}

#[test]
fn not_an_elf_file() {
    run_image(b"#!/bin/sh\necho not a unikernel\n", &[])
        .expect_status(1)
        .expect_stderr("invalid executable");
}

#[test]
fn elf_for_another_machine() {
    let mut elf = hello();
    elf[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    run_image(&elf, &[])
        .expect_status(1)
        .expect_stderr("invalid executable");
}

#[test]
fn elf_for_another_solo5_target() {
    let mut elf = hello();
    let (_, off) = note(&elf, ABI1);
    elf[off + 20..off + 24].copy_from_slice(&2u32.to_le_bytes()); // SPT
    run_image(&elf, &[])
        .expect_status(1)
        .expect_stderr("Executable is not for the solo5-hvt target");
}

#[test]
fn unsupported_abi_version() {
    let mut elf = hello();
    let (_, off) = note(&elf, ABI1);
    elf[off + 24..off + 28].copy_from_slice(&7u32.to_le_bytes());
    run_image(&elf, &[])
        .expect_status(1)
        .expect_stderr("Executable requests unsupported ABI version 7");
}

#[test]
fn truncated_note() {
    let mut elf = hello();
    let (ph, _) = note(&elf, ABI1);
    elf[ph + 32..ph + 40].copy_from_slice(&10u64.to_le_bytes()); // p_filesz < 12
    run_image(&elf, &[])
        .expect_status(1)
        .expect_stderr("invalid executable");
}

#[test]
fn manifest_with_a_bad_size() {
    let mut elf = hello();
    let (_, off) = note(&elf, MFT1);
    // mft.entries sits after the note header (20), the padding (4) and mft.version (4).
    elf[off + 28..off + 32].copy_from_slice(&5u32.to_le_bytes());
    run_image(&elf, &[])
        .expect_status(1)
        .expect_stderr("Solo5 manifest is invalid");
}

#[test]
fn undeclared_devices_are_refused() {
    let dir = TempDir::new("undeclared");
    let disk = dir.file("d.img", 4096);
    run_guest(&[&format!("--block:nope={disk}")], "hello", &[])
        .expect_status(1)
        .expect_stderr("no block device named 'nope'");
    run_guest(&["--net:nope=tap0"], "hello", &[])
        .expect_status(1)
        .expect_stderr("no network device named 'nope'");
}

#[test]
fn declared_device_left_unattached() {
    run_guest(&[], "blk", &[])
        .expect_status(1)
        .expect_stderr("Device 'storage' of type BLOCK_BASIC declared but not attached.");
}

#[test]
fn zero_memory() {
    run_guest(&["--mem=0"], "hello", &[])
        .expect_status(1)
        .expect_stderr("Malformed argument to --mem");
}

#[test]
fn command_line_too_long() {
    let long = "x".repeat(9000);
    run_guest(&[], "hello", &[&long])
        .expect_status(1)
        .expect_stderr("Guest command line too long (max=8191 characters)");
}

#[test]
fn missing_kernel() {
    run(&["--mem=32"], Duration::from_secs(5))
        .expect_status(1)
        .expect_stderr("Missing KERNEL operand");
    run(&["/nonexistent/kernel.hvt"], Duration::from_secs(5))
        .expect_status(1)
        .expect_stderr("/nonexistent/kernel.hvt: No such file or directory");
}

#[test]
fn unknown_option() {
    run(&["--frobnicate", "k"], Duration::from_secs(5))
        .expect_status(1)
        .expect_stderr("Invalid option: --frobnicate")
        .expect_stderr("usage:");
}
