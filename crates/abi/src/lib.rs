//! The Solo5 hvt unikernel ABI (version 2) as Rust types and constants, plus sturdy's own note.
//!
//! This crate is the contract between the monitor (`vmm`, `sturdy-hvt`) and guests built with the
//! guest SDK (`guest/rt`). It has no dependencies and is `no_std` so both sides can use it.
//! `docs/hvt-abi.md` describes the ABI; comments cite its sections by name ("docs/hvt-abi.md,
//! Hypercalls"). sturdy's additions are described in
//! `docs/sturdy-note.md` and in [`sturdy_note`].
//!
//! Every struct here is `#[repr(C)]` with the exact upstream layout (checked at compile time
//! below). The monitor never casts guest bytes to these types: it decodes fields at the `OFF_*`
//! offsets from bytes copied out of guest memory, because guest memory is hostile input.
#![no_std]

pub mod hypercall;
pub mod mft;
pub mod note;
pub mod ring;
pub mod sturdy_note;

/// The ABI version an hvt monitor requires (docs/hvt-abi.md, Notes).
pub const HVT_ABI_VERSION: u32 = 2;

/// Lowest guest address a kernel may be loaded at (docs/hvt-abi.md, Loading).
pub const KERNEL_BASE: u64 = 0x10_0000;

/// Guest physical address of [`BootInfo`] (docs/hvt-abi.md, Boot information).
pub const BOOT_INFO_BASE: u64 = 0x1_0000;

/// Maximum length of the guest command line including its terminating NUL (docs/hvt-abi.md, Boot
/// information).
pub const CMDLINE_SIZE: usize = 8192;

/// Default guest memory in MiB (docs/hvt-abi.md, Memory and CPU).
pub const DEFAULT_MEM_MIB: u64 = 512;

/// Largest guest memory a monitor accepts, in bytes (docs/hvt-abi.md, Memory and CPU).
pub const MAX_MEM_SIZE: u64 = 4 << 30;

/// `struct hvt_boot_info` (docs/hvt-abi.md, Boot information), at [`BOOT_INFO_BASE`] in guest
/// memory, pointed to by RDI.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootInfo {
    /// Guest memory the guest may use (excludes any monitor-reserved tail).
    pub mem_size: u64,
    /// First byte after the loaded kernel (page aligned).
    pub kernel_end: u64,
    /// TSC frequency in Hz.
    pub cpu_cycle_freq: u64,
    /// Guest address of the NUL-terminated command line.
    pub cmdline: u64,
    /// Guest address of the manifest copy.
    pub mft: u64,
    /// What the monitor offers: bit 0 upstream's net ring (sturdy-hvt never sets it), bit 30
    /// sturdy's BLOCK_FLUSH, bit 31 sturdy's NIC rings (`hypercall`, `ring`).
    pub host_features: u32,
    /// Written 0 by the monitor.
    pub guest_features: u32,
    /// Guest address of the net ring, 0 if none.
    pub net_ring: u64,
}

impl BootInfo {
    pub const SIZE: usize = 56;
    pub const OFF_MEM_SIZE: usize = 0;
    pub const OFF_KERNEL_END: usize = 8;
    pub const OFF_CPU_CYCLE_FREQ: usize = 16;
    pub const OFF_CMDLINE: usize = 24;
    pub const OFF_MFT: usize = 32;
    pub const OFF_HOST_FEATURES: usize = 40;
    pub const OFF_GUEST_FEATURES: usize = 44;
    pub const OFF_NET_RING: usize = 48;

    /// The little-endian encoding the monitor writes into guest memory.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put_u64(&mut b, Self::OFF_MEM_SIZE, self.mem_size);
        put_u64(&mut b, Self::OFF_KERNEL_END, self.kernel_end);
        put_u64(&mut b, Self::OFF_CPU_CYCLE_FREQ, self.cpu_cycle_freq);
        put_u64(&mut b, Self::OFF_CMDLINE, self.cmdline);
        put_u64(&mut b, Self::OFF_MFT, self.mft);
        put_u32(&mut b, Self::OFF_HOST_FEATURES, self.host_features);
        put_u32(&mut b, Self::OFF_GUEST_FEATURES, self.guest_features);
        put_u64(&mut b, Self::OFF_NET_RING, self.net_ring);
        b
    }
}

/// Reads a little-endian u64 at `off`. Panics if out of range: callers pass fixed offsets into
/// fixed-size arrays, so a panic here is a bug in this crate, never guest-controlled.
pub fn get_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

/// Reads a little-endian u32 at `off` (see [`get_u64`]).
pub fn get_u32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

/// Reads a little-endian u16 at `off` (see [`get_u64`]).
pub fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Writes a little-endian u64 at `off` (see [`get_u64`]).
pub fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian u32 at `off` (see [`get_u64`]).
pub fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Writes a little-endian u16 at `off` (see [`get_u64`]).
pub fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

const _: () = assert!(core::mem::size_of::<BootInfo>() == BootInfo::SIZE);
const _: () = assert!(core::mem::offset_of!(BootInfo, net_ring) == BootInfo::OFF_NET_RING);
const _: () =
    assert!(core::mem::offset_of!(BootInfo, host_features) == BootInfo::OFF_HOST_FEATURES);
