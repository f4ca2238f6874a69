//! Hypercalls (docs/hvt-abi.md, Hypercalls): `out dx, eax` with `dx = 0x500 + nr` and `eax` the
//! 32-bit guest address of a `#[repr(C)]` argument struct, which the monitor reads and writes in
//! place.
//!
//! Applications use [`Block`](crate::Block), [`Net`](crate::Net) and the other safe APIs. The
//! functions here issue one hypercall each without the SDK's own checks, which is what tests of
//! the monitor need: they return the monitor's result code (`sturdy_abi::hypercall::RESULT_*`).

use core::arch::asm;

use sturdy_abi::hypercall::{
    BlockFlush, BlockIo, Halt, NetIo, Poll, Puts, Walltime, BLOCK_READ, BLOCK_WRITE, HALT,
    NET_READ, NET_WRITE, PIO_BASE, POLL, PUTS, STURDY_BLOCK_FLUSH, WALLTIME,
};

/// Writes `value` to I/O port `port` with a 4-byte `out`.
///
/// # Safety
///
/// For a hypercall port, `value` is the address of an argument struct and the monitor will
/// access it and the memory it points to (see [`hypercall`]).
pub unsafe fn out(port: u16, value: u32) {
    // SAFETY: `out` touches no memory the compiler knows about, but the monitor may read and
    // write guest memory before it returns: no `nomem`, so the asm is a compiler memory barrier
    // and the argument struct's fields are written before and read after it.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack, preserves_flags))
    }
}

/// Issues hypercall `nr` with the argument struct at `arg`.
///
/// Panics if `arg` is not a 32-bit address (guest memory is below 4 GiB, docs/hvt-abi.md, Memory
/// and CPU, so a stack or static struct always is).
///
/// # Safety
///
/// `arg` must point to the argument struct of hypercall `nr`, valid for reads and writes, and
/// every buffer the struct points to must be valid for the access the monitor makes: reads for
/// PUTS and the write calls, writes for the read calls and WALLTIME/POLL results.
pub unsafe fn hypercall<T>(nr: u16, arg: *mut T) {
    let addr = u32::try_from(arg as usize).expect("hypercall argument above 4 GiB");
    // SAFETY: the caller guarantees the struct and its buffers are valid for the monitor.
    unsafe { out(PIO_BASE + nr, addr) }
}

/// WALLTIME: the host's wall clock in nanoseconds since the Unix epoch.
pub fn walltime() -> u64 {
    let mut arg = Walltime::default();
    // SAFETY: `arg` is a valid WALLTIME struct; the monitor writes `nsecs` only.
    unsafe { hypercall(WALLTIME, &mut arg) };
    arg.nsecs
}

/// PUTS: writes `bytes` to the monitor's standard output.
pub fn puts(bytes: &[u8]) {
    let mut arg = Puts {
        data: bytes.as_ptr() as u64,
        len: bytes.len() as u64,
    };
    // SAFETY: `arg` is a valid PUTS struct pointing to `bytes`, which the monitor only reads.
    unsafe { hypercall(PUTS, &mut arg) };
}

/// POLL: waits up to `timeout_nsecs` for a network device to become readable (0: just check).
/// Returns the ready set (bit `i` set: device with handle `i` is readable).
pub fn poll(timeout_nsecs: u64) -> u64 {
    let mut arg = Poll {
        timeout_nsecs,
        ..Poll::default()
    };
    // SAFETY: `arg` is a valid POLL struct; the monitor writes `ready_set` and `ret` only.
    unsafe { hypercall(POLL, &mut arg) };
    arg.ready_set
}

/// BLOCK_WRITE: writes `data` at byte `offset` of block device `handle`.
pub fn block_write(handle: u64, offset: u64, data: &[u8]) -> i32 {
    let mut arg = BlockIo {
        handle,
        offset,
        data: data.as_ptr() as u64,
        len: data.len() as u64,
        ret: 0,
    };
    // SAFETY: `arg` is a valid BLOCK_WRITE struct pointing to `data`, which the monitor reads.
    unsafe { hypercall(BLOCK_WRITE, &mut arg) };
    arg.ret
}

/// BLOCK_READ: reads `data.len()` bytes at byte `offset` of block device `handle` into `data`.
pub fn block_read(handle: u64, offset: u64, data: &mut [u8]) -> i32 {
    let mut arg = BlockIo {
        handle,
        offset,
        data: data.as_mut_ptr() as u64,
        len: data.len() as u64,
        ret: 0,
    };
    // SAFETY: `arg` is a valid BLOCK_READ struct; the monitor writes at most `data.len()` bytes
    // into `data`, which we borrow mutably.
    unsafe { hypercall(BLOCK_READ, &mut arg) };
    arg.ret
}

/// sturdy's BLOCK_FLUSH: makes the writes to block device `handle` durable on the host.
/// Only under a monitor that offers it (`HOST_FEATURE_BLOCK_FLUSH`): elsewhere the monitor
/// ends the run at this call.
pub fn block_flush(handle: u64) -> i32 {
    let mut arg = BlockFlush { handle, ret: 0 };
    // SAFETY: `arg` is a valid BLOCK_FLUSH struct; the monitor writes `ret` only.
    unsafe { hypercall(STURDY_BLOCK_FLUSH, &mut arg) };
    arg.ret
}

/// NET_WRITE: sends the Ethernet frame `frame` on network device `handle`.
pub fn net_write(handle: u64, frame: &[u8]) -> i32 {
    let mut arg = NetIo {
        handle,
        data: frame.as_ptr() as u64,
        len: frame.len() as u64,
        ret: 0,
    };
    // SAFETY: `arg` is a valid NET_WRITE struct pointing to `frame`, which the monitor reads.
    unsafe { hypercall(NET_WRITE, &mut arg) };
    arg.ret
}

/// NET_READ: receives one frame from network device `handle` into `buf`.
/// Returns the result code and the frame's length.
pub fn net_read(handle: u64, buf: &mut [u8]) -> (i32, usize) {
    let mut arg = NetIo {
        handle,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ret: 0,
    };
    // SAFETY: `arg` is a valid NET_READ struct; the monitor writes at most `buf.len()` bytes
    // into `buf`, which we borrow mutably.
    unsafe { hypercall(NET_READ, &mut arg) };
    // Never trust a length beyond the buffer, even from the monitor.
    (arg.ret, (arg.len as usize).min(buf.len()))
}

/// HALT: ends the run with `status` as the monitor's exit status (`status & 0xff`).
pub fn halt(status: i32) -> ! {
    let mut arg = Halt {
        cookie: 0,
        exit_status: status,
    };
    loop {
        // SAFETY: `arg` is a valid HALT struct without a cookie. The monitor does not return;
        // if one did, halting again is all we can do.
        unsafe { hypercall(HALT, &mut arg) };
    }
}
