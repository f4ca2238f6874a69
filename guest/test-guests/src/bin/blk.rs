//! Block device `storage` (docs/hvt-abi.md, Conformance): writes a pattern to every 10th block and
//! the last, reads each back; checks that the monitor refuses requests at offset == capacity and
//! that the SDK refuses requests that are not one aligned block. Works with any block size up to
//! 4096 bytes.
#![no_std]
#![no_main]

use sturdy_rt::abi::hypercall::RESULT_EINVAL;
use sturdy_rt::{hypercall, println, Block, Env, Error};
use test_guests::check;

sturdy_rt::main!(main);
sturdy_rt::manifest!(block "storage");

const MAX_BLOCK: usize = 4096;

fn main(_env: &Env) -> i32 {
    let disk = Block::open("storage")
        .unwrap_or_else(|e| test_guests::fail(format_args!("open storage: {e}")));
    let (size, capacity) = (disk.block_size(), disk.capacity());
    println!(
        "block size {size}, capacity {capacity} bytes ({} blocks)",
        disk.blocks()
    );
    check!(
        size <= MAX_BLOCK,
        "block size {size} is larger than this test's buffers"
    );
    check!(disk.blocks() > 0, "the device has no blocks");

    let mut wbuf = [0u8; MAX_BLOCK];
    let mut rbuf = [0u8; MAX_BLOCK];
    let (wbuf, rbuf) = (&mut wbuf[..size], &mut rbuf[..size]);
    let last = disk.blocks() - 1;
    let blocks = (0..last).step_by(10).chain([last]);
    for block in blocks {
        let offset = block * size as u64;
        fill(wbuf, block);
        rbuf.fill(0);
        check!(
            disk.write(offset, wbuf) == Ok(()),
            "write of block {block} failed"
        );
        check!(
            disk.read(offset, rbuf) == Ok(()),
            "read of block {block} failed"
        );
        check!(
            wbuf == rbuf,
            "block {block} reads back different from what was written"
        );
    }

    // The monitor's own checks, bypassing the SDK's.
    let ret = hypercall::block_read(disk.handle(), capacity, rbuf);
    check!(
        ret == RESULT_EINVAL,
        "read at offset == capacity: ret={ret}, want EINVAL"
    );
    let ret = hypercall::block_write(disk.handle(), capacity, wbuf);
    check!(
        ret == RESULT_EINVAL,
        "write at offset == capacity: ret={ret}, want EINVAL"
    );

    // The SDK's checks.
    let refused = Err(Error::BadRequest);
    check!(
        disk.read(0, &mut rbuf[..size - 1]) == refused,
        "SDK allowed a short read"
    );
    check!(
        disk.write(0, &wbuf[..size / 2]) == refused,
        "SDK allowed a short write"
    );
    check!(
        disk.read(1, rbuf) == refused,
        "SDK allowed an unaligned read"
    );
    check!(
        disk.write(capacity, wbuf) == refused,
        "SDK allowed a write past the end"
    );
    test_guests::success()
}

/// A pattern that differs from block to block and byte to byte.
fn fill(buf: &mut [u8], block: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (block as u8).wrapping_mul(31) ^ (block >> 8) as u8 ^ (i as u8) ^ (i >> 8) as u8;
    }
    buf[..8].copy_from_slice(&block.to_le_bytes());
}
