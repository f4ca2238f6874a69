//! Hypercalls (docs/hvt-abi.md, Hypercalls): the guest executes `out dx, eax` with
//! `dx = PIO_BASE + nr` and `eax` the 32-bit guest address of the argument struct below.

/// Port of hypercall number 0; hypercall `nr` uses port `PIO_BASE + nr`.
pub const PIO_BASE: u16 = 0x500;

/// Hypercall numbers.
pub const WALLTIME: u16 = 1;
pub const PUTS: u16 = 2;
pub const POLL: u16 = 3;
pub const BLOCK_WRITE: u16 = 4;
pub const BLOCK_READ: u16 = 5;
pub const NET_WRITE: u16 = 6;
pub const NET_READ: u16 = 7;
pub const HALT: u16 = 8;
/// Highest hypercall number of the Solo5 ABI.
pub const MAX: u16 = HALT;

/// sturdy's BLOCK_FLUSH (not in Solo5): makes every write to block device `handle` that
/// returned before it durable on the host's storage (`fdatasync` of the backing file).
/// Offered, and signalled by [`HOST_FEATURE_BLOCK_FLUSH`] in `boot_info.host_features`, only to
/// guests that carry sturdy's note and run deprivileged (`docs/sturdy-note.md`); to any other
/// guest, and under upstream monitors, its port is an invalid port access that ends the run, so
/// a guest issues it only after seeing the bit. A failed flush is fatal to the monitor, like a
/// failed block write: what the guest wrote may be lost, and it must not carry on as if not.
pub const STURDY_BLOCK_FLUSH: u16 = 0x20;

/// `boot_info.host_features` bit: [`STURDY_BLOCK_FLUSH`] is available.
pub const HOST_FEATURE_BLOCK_FLUSH: u32 = 1 << 30;

/// Result codes written into the `ret` fields.
pub const RESULT_OK: i32 = 0;
pub const RESULT_AGAIN: i32 = 1;
pub const RESULT_EINVAL: i32 = 2;
pub const RESULT_EUNSPEC: i32 = 3;

/// Largest cookie a HALT may point to (docs/hvt-abi.md, Hypercalls).
pub const HALT_COOKIE_MAX: usize = 512;

/// Exit status of a guest abort or a CPU exception (docs/hvt-abi.md, Monitor command line).
pub const EXIT_ABORT: u8 = 255;

/// WALLTIME: `u64 nsecs` (out).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Walltime {
    pub nsecs: u64,
}
impl Walltime {
    pub const SIZE: usize = 8;
    pub const OFF_NSECS: usize = 0;
}

/// PUTS: bytes written to the monitor's stdout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Puts {
    pub data: u64,
    pub len: u64,
}
impl Puts {
    pub const SIZE: usize = 16;
    pub const OFF_DATA: usize = 0;
    pub const OFF_LEN: usize = 8;
}

/// POLL: wait until a NIC is readable or the timeout passes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Poll {
    pub timeout_nsecs: u64,
    pub ready_set: u64,
    pub ret: i32,
}
impl Poll {
    pub const SIZE: usize = 24;
    pub const OFF_TIMEOUT_NSECS: usize = 0;
    pub const OFF_READY_SET: usize = 8;
    pub const OFF_RET: usize = 16;
}

/// BLOCK_WRITE and BLOCK_READ.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockIo {
    pub handle: u64,
    pub offset: u64,
    pub data: u64,
    pub len: u64,
    pub ret: i32,
}
impl BlockIo {
    pub const SIZE: usize = 40;
    pub const OFF_HANDLE: usize = 0;
    pub const OFF_OFFSET: usize = 8;
    pub const OFF_DATA: usize = 16;
    pub const OFF_LEN: usize = 24;
    pub const OFF_RET: usize = 32;
}

/// STURDY_BLOCK_FLUSH: `ret` is OK, or EINVAL if `handle` is not a block device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockFlush {
    pub handle: u64,
    pub ret: i32,
}
impl BlockFlush {
    pub const SIZE: usize = 16;
    pub const OFF_HANDLE: usize = 0;
    pub const OFF_RET: usize = 8;
}

/// NET_WRITE and NET_READ (`len` is in/out for NET_READ).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetIo {
    pub handle: u64,
    pub data: u64,
    pub len: u64,
    pub ret: i32,
}
impl NetIo {
    pub const SIZE: usize = 32;
    pub const OFF_HANDLE: usize = 0;
    pub const OFF_DATA: usize = 8;
    pub const OFF_LEN: usize = 16;
    pub const OFF_RET: usize = 24;
}

/// HALT: end the run with `exit_status & 0xff`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Halt {
    pub cookie: u64,
    pub exit_status: i32,
}
impl Halt {
    pub const SIZE: usize = 16;
    pub const OFF_COOKIE: usize = 0;
    pub const OFF_EXIT_STATUS: usize = 8;
}

const _: () = assert!(core::mem::size_of::<Walltime>() == Walltime::SIZE);
const _: () = assert!(core::mem::size_of::<Puts>() == Puts::SIZE);
const _: () = assert!(core::mem::size_of::<Poll>() == Poll::SIZE);
const _: () = assert!(core::mem::offset_of!(Poll, ret) == Poll::OFF_RET);
const _: () = assert!(core::mem::size_of::<BlockIo>() == BlockIo::SIZE);
const _: () = assert!(core::mem::offset_of!(BlockIo, ret) == BlockIo::OFF_RET);
const _: () = assert!(core::mem::size_of::<BlockFlush>() == BlockFlush::SIZE);
const _: () = assert!(core::mem::offset_of!(BlockFlush, ret) == BlockFlush::OFF_RET);
const _: () = assert!(core::mem::size_of::<NetIo>() == NetIo::SIZE);
const _: () = assert!(core::mem::offset_of!(NetIo, ret) == NetIo::OFF_RET);
const _: () = assert!(core::mem::size_of::<Halt>() == Halt::SIZE);
