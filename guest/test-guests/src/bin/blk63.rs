//! 63 block devices at once, the most a manifest holds (docs/hvt-abi.md, Conformance): writes one
//! block to each of `b0`..`b62`, then reads every one back.
#![no_std]
#![no_main]

use sturdy_rt::{Block, Env};
use test_guests::{check, FmtBuf};

sturdy_rt::main!(main);
sturdy_rt::manifest!(
    block "b0", block "b1", block "b2", block "b3", block "b4", block "b5", block "b6", block "b7",
    block "b8", block "b9", block "b10", block "b11", block "b12", block "b13", block "b14", block "b15",
    block "b16", block "b17", block "b18", block "b19", block "b20", block "b21", block "b22", block "b23",
    block "b24", block "b25", block "b26", block "b27", block "b28", block "b29", block "b30", block "b31",
    block "b32", block "b33", block "b34", block "b35", block "b36", block "b37", block "b38", block "b39",
    block "b40", block "b41", block "b42", block "b43", block "b44", block "b45", block "b46", block "b47",
    block "b48", block "b49", block "b50", block "b51", block "b52", block "b53", block "b54", block "b55",
    block "b56", block "b57", block "b58", block "b59", block "b60", block "b61", block "b62",
);

const DEVICES: usize = 63;
const MAX_BLOCK: usize = 4096;

fn main(_env: &Env) -> i32 {
    let mut buf = [0u8; MAX_BLOCK];
    for pass in ["write", "read"] {
        for i in 0..DEVICES {
            let name = FmtBuf::<4>::format(format_args!("b{i}"));
            let disk = Block::open(name.as_str())
                .unwrap_or_else(|e| test_guests::fail(format_args!("open {}: {e}", name.as_str())));
            let size = disk.block_size();
            check!(
                size <= MAX_BLOCK,
                "{}: block size {size} is larger than the buffer",
                name.as_str()
            );
            let block = &mut buf[..size];
            if pass == "write" {
                block.fill(i as u8);
                check!(
                    disk.write(0, block).is_ok(),
                    "write to {} failed",
                    name.as_str()
                );
            } else {
                block.fill(!0);
                check!(
                    disk.read(0, block).is_ok(),
                    "read from {} failed",
                    name.as_str()
                );
                check!(
                    block.iter().all(|&b| b == i as u8),
                    "{} reads back wrong data",
                    name.as_str()
                );
            }
        }
    }
    test_guests::success()
}
