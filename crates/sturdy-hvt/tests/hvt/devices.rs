//! Block devices: every 10th block and the last, both sector sizes, 63 devices at once.

use crate::harness::*;

#[test]
fn block_io_at_512_byte_sectors() {
    let dir = TempDir::new("blk512");
    let disk = dir.file("disk.img", 1 << 20);
    run_guest(&[&format!("--block:storage={disk}")], "blk", &[])
        .expect_success()
        .expect_stdout("512");
}

#[test]
fn block_io_at_4096_byte_sectors() {
    let dir = TempDir::new("blk4k");
    let disk = dir.file("disk.img", 1 << 20);
    run_guest(
        &[
            &format!("--block:storage={disk}"),
            "--block-sector-size:storage=4096",
        ],
        "blk",
        &[],
    )
    .expect_success()
    .expect_stdout("4096");
}

#[test]
fn block_writes_reach_the_backing_file() {
    let dir = TempDir::new("blkfile");
    let disk = dir.file("disk.img", 64 * 512);
    run_guest(&[&format!("--block:storage={disk}")], "blk", &[]).expect_success();
    let bytes = std::fs::read(&disk).unwrap();
    // The guest writes block 0, 10, 20, ... and the last: none of them may still be all zero.
    for block in [0usize, 10, 20, 30, 40, 50, 60, 63] {
        let b = &bytes[block * 512..(block + 1) * 512];
        assert!(b.iter().any(|&x| x != 0), "block {block} was not written");
    }
}

#[test]
fn sixty_three_block_devices() {
    let dir = TempDir::new("blk63");
    let opts: Vec<String> = (0..63)
        .map(|i| format!("--block:b{i}={}", dir.file(&format!("b{i}.img"), 4096)))
        .collect();
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    run_guest(&opts, "blk63", &[]).expect_success();
}

#[test]
fn misaligned_backing_file_is_refused() {
    let dir = TempDir::new("blkmis");
    let disk = dir.file("disk.img", 1000);
    run_guest(&[&format!("--block:storage={disk}")], "blk", &[])
        .expect_status(1)
        .expect_stderr("not a non-zero multiple of the 512-byte sector size");
}
