//! Attacks on the monitor with raw hypercalls, bypassing every check of the SDK. The first
//! argument names the attack; the guest prints `attack: NAME`, then makes it.
//!
//! Most attacks must end the run in the monitor (it exits 1); a guest that gets past one prints
//! `FAILURE: not stopped` and exits 1. `blk-handle`, `net-handle` and `flush-handle` expect
//! EINVAL and `net-oversize` any refusal: they print `ret=N` and exit 0 (1 with FAILURE for a
//! wrong result).
#![no_std]
#![no_main]

use core::arch::asm;
use core::ptr::addr_of_mut;

use sturdy_rt::abi::hypercall::{
    BlockIo, Halt, NetIo, Puts, BLOCK_READ, HALT, NET_WRITE, PIO_BASE, PUTS, RESULT_EINVAL,
    STURDY_BLOCK_FLUSH, WALLTIME,
};
use sturdy_rt::hypercall::{self, hypercall, out};
use sturdy_rt::{print, println, Block, Env, Net};

sturdy_rt::main!(main);
sturdy_rt::manifest!(block "storage", net "service");

const ATTACKS: &[&str] = &[
    "puts-oob",
    "puts-len",
    "puts-wrap",
    "arg-oob",
    "blk-handle",
    "net-handle",
    "blk-oob-buf",
    "net-oversize",
    "bad-port",
    "bad-width",
    "write-pagetable",
    "write-text",
    "halt-cookie-oob",
    "ring-tx-tail",
    "ring-rx-head",
    "flush-handle",
    "flush-arg-oob",
];

/// Guest address 0x2000 holds the monitor's page tables (docs/hvt-abi.md, Memory and CPU).
const PAGE_TABLES: u64 = 0x2000;

/// A buffer big enough for the oversized frame, in .bss.
static mut BIG: [u8; 65536] = [0; 65536];

fn main(env: &Env) -> i32 {
    let Some(attack) = env.args().next().filter(|a| ATTACKS.contains(a)) else {
        print!("usage: hostile ATTACK, one of:");
        for attack in ATTACKS {
            print!(" {attack}");
        }
        println!();
        return 1;
    };
    // An address outside guest memory: a 32-bit one unless the guest is nearly 4 GiB, then the
    // first one past 4 GiB, the most any guest has (docs/hvt-abi.md, Memory and CPU).
    let outside = if env.boot_info().mem_size < 0xF000_0000 {
        0xFFFF_0000
    } else {
        1 << 32
    };
    let disk = Block::open("storage")
        .unwrap_or_else(|e| test_guests::fail(format_args!("open storage: {e}")));
    let net = Net::open("service")
        .unwrap_or_else(|e| test_guests::fail(format_args!("open service: {e}")));
    let mut block = [0u8; 512];

    println!("attack: {attack}");
    match attack {
        "puts-oob" => puts(outside, 16),
        "puts-len" => puts(block.as_ptr() as u64, 1 << 40),
        // data + len wraps around to a small address that looks in range.
        "puts-wrap" => puts(0xFFFF_FFFF_FFFF_FF00, 0x200),
        // SAFETY: the monitor must refuse the argument address; nothing here is touched.
        "arg-oob" => unsafe { out(PIO_BASE + PUTS, 0xFFFF_FFF0) },
        "blk-handle" => return expect_einval(hypercall::block_read(77, 0, &mut block)),
        "net-handle" => return expect_einval(hypercall::net_write(disk.handle(), &block)),
        "blk-oob-buf" => block_read_into(disk.handle(), outside),
        "net-oversize" => {
            let big = addr_of_mut!(BIG).cast::<u8>();
            let mut arg = NetIo {
                handle: net.handle(),
                data: big as u64,
                len: 65536,
                ret: 0,
            };
            // SAFETY: BIG is 65536 readable bytes.
            unsafe { hypercall(NET_WRITE, &mut arg) };
            println!("ret={}", arg.ret);
            return 0;
        }
        // SAFETY: port 0x509 is no hypercall; the monitor must stop the guest.
        "bad-port" => unsafe { out(PIO_BASE + 9, 0) },
        // SAFETY: a 1-byte access to a hypercall port; the monitor must stop the guest.
        "bad-width" => unsafe {
            asm!("out dx, al", in("dx") PIO_BASE + WALLTIME, in("al") 0u8, options(nostack))
        },
        "write-pagetable" => block_read_into(disk.handle(), PAGE_TABLES),
        "write-text" => block_read_into(disk.handle(), main as *const () as u64),
        "halt-cookie-oob" => {
            let mut arg = Halt {
                cookie: outside,
                exit_status: 0,
            };
            // SAFETY: the monitor must refuse the cookie; it points at no guest memory.
            unsafe { hypercall(HALT, &mut arg) };
        }
        "ring-tx-tail" => corrupt_ring(env, &net, 8, 64),
        "ring-rx-head" => corrupt_ring(env, &net, 16, 0),
        "flush-handle" => {
            if !disk.can_flush() {
                println!("FAILURE: sturdy-hvt offers no BLOCK_FLUSH to a deprivileged guest");
                return 1;
            }
            return expect_einval(hypercall::block_flush(disk.handle() + 1));
        }
        // SAFETY: deliberately hostile: the argument address is outside guest memory.
        "flush-arg-oob" => unsafe { out(PIO_BASE + STURDY_BLOCK_FLUSH, 0xFFFF_FFF0) },
        _ => unreachable!("checked against ATTACKS"),
    }
    not_stopped(format_args!("{attack}"))
}

/// Writes a far-off index into a field of one of `net`'s shared rings (`ring_field` 8: its TX
/// ring, 16: its RX ring, in the NIC table entry; `index_off` 64: tail, 0: head), rings the
/// doorbell and waits: the monitor's I/O thread must stop the guest (sturdy_rt::abi::ring).
fn corrupt_ring(env: &Env, net: &Net, ring_field: usize, index_off: usize) {
    let info = env.boot_info();
    if info.host_features & sturdy_rt::abi::ring::HOST_FEATURE_STURDY_RING == 0 {
        test_guests::fail(format_args!("the monitor offers no NIC rings"));
    }
    let base = info.net_ring as usize;
    // SAFETY: the ring area is guest memory the monitor maps read-write for the guest; the
    // NIC table's first entry is this guest's only NIC. The writes are the attack.
    unsafe {
        let entry = base + sturdy_rt::abi::ring::OFF_NIC_TABLE as usize;
        assert_eq!(core::ptr::read_volatile(entry as *const u64), net.handle());
        let ring = base + core::ptr::read_volatile((entry + ring_field) as *const u64) as usize;
        core::ptr::write_volatile((ring + index_off) as *mut u32, 100_000);
        out(sturdy_rt::abi::ring::DOORBELL_PORT, 0);
    }
    sturdy_rt::poll(core::time::Duration::from_secs(5));
}

/// PUTS of `len` bytes at guest address `data`.
fn puts(data: u64, len: u64) {
    let mut arg = Puts { data, len };
    // SAFETY: the monitor must refuse the range; the guest itself touches nothing.
    unsafe { hypercall(PUTS, &mut arg) };
}

/// BLOCK_READ of the first 512 bytes into guest address `data`, which the monitor must not
/// write.
fn block_read_into(handle: u64, data: u64) {
    let mut arg = BlockIo {
        handle,
        offset: 0,
        data,
        len: 512,
        ret: 0,
    };
    // SAFETY: the monitor must refuse the destination. If it wrote there anyway the guest is
    // corrupt, which is what this test is about; it reports and exits at once.
    unsafe { hypercall(BLOCK_READ, &mut arg) };
    println!("ret={}", arg.ret);
}

fn expect_einval(ret: i32) -> i32 {
    println!("ret={ret}");
    if ret == RESULT_EINVAL {
        0
    } else {
        println!("FAILURE: want EINVAL ({RESULT_EINVAL})");
        1
    }
}

fn not_stopped(what: core::fmt::Arguments) -> ! {
    test_guests::fail(format_args!("not stopped ({what})"))
}
