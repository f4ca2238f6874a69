//! sturdy's shared-memory NIC rings, version 1: the fast path for network frames between a
//! deprivileged sturdy-rt guest and `sturdy-hvt`, without one VM exit per frame (an exit costs
//! tens of microseconds on PVM hosts, an ioeventfd doorbell a few: `docs/hvt-abi.md`, PVM hosts).
//!
//! Offered only to deprivileged guests, and signalled by [`HOST_FEATURE_STURDY_RING`] in
//! `boot_info.host_features` (bit 0 stays upstream's own ring, whose format differs, so an
//! upstream guest never mistakes this one for it). `boot_info.net_ring` is the guest address of
//! the area. A guest that never sets [`OFF_GUEST_ENABLED`] keeps plain per-frame hypercalls.
//!
//! Area layout (little-endian; offsets from the area's base, which is 2 MiB aligned):
//! ```text
//!    0 u32 magic = RING_MAGIC          12 u32 slots (per ring, power of two)
//!    4 u32 version = 1                 16 u32 slot_size (bytes, power of two)
//!    8 u32 nics                        24 u32 guest_enabled (guest writes 1)
//!   64 u32 guest_sleeping   (guest is entering or in POLL; written by the guest)
//!  128 u32 host_sleeping    (monitor I/O thread is entering or in its wait; written by the host)
//!  256 NicRings[nics] { u64 handle; u64 tx_offset; u64 rx_offset }   (24 bytes each)
//! ```
//! Each ring (TX: guest produces, host consumes; RX: host produces, guest consumes):
//! ```text
//!    0 u32 head  (consumer index, free running)
//!   64 u32 tail  (producer index, free running; tail - head = frames queued, <= slots)
//! 4096 slot[i] at 4096 + i * slot_size: { u32 len; u8 frame[slot_size - 4] }
//! ```
//! Protocol: a producer writes the slot, then stores `tail + 1` with release ordering; a consumer
//! loads `tail` with acquire ordering, reads the slot, then stores `head + 1` with release.
//! Sleeping without lost wake-ups: a side stores its `*_sleeping = 1`, issues a full fence,
//! re-checks its rings, and only then sleeps (guest: POLL hypercall; host: epoll). A producer
//! stores `tail`, issues a full fence, and wakes the other side if its `*_sleeping` is 1: the
//! guest wakes the host with a 4-byte `out` to [`DOORBELL_PORT`] (an ioeventfd: no exit to the
//! monitor process); the host wakes the guest by ending its POLL.
//!
//! Everything the guest writes here is hostile input to the monitor: it checks indices (at most
//! `slots` frames queued) and lengths (at most the NIC's largest frame and the slot) on every use.

/// `boot_info.host_features` bit: the area at `boot_info.net_ring` is a sturdy ring area.
pub const HOST_FEATURE_STURDY_RING: u32 = 1 << 31;
/// Port of the guest-to-host doorbell (inside the hypercall port range the TSS opens).
pub const DOORBELL_PORT: u16 = 0x5f0;

pub const RING_MAGIC: u32 = 0x474e_5253; // "SRNG"
pub const RING_VERSION: u32 = 1;

pub const OFF_MAGIC: u64 = 0;
pub const OFF_VERSION: u64 = 4;
pub const OFF_NICS: u64 = 8;
pub const OFF_SLOTS: u64 = 12;
pub const OFF_SLOT_SIZE: u64 = 16;
pub const OFF_GUEST_ENABLED: u64 = 24;
pub const OFF_GUEST_SLEEPING: u64 = 64;
pub const OFF_HOST_SLEEPING: u64 = 128;
pub const OFF_NIC_TABLE: u64 = 256;
/// Size of one NIC table entry: handle, TX ring offset, RX ring offset.
pub const NIC_ENTRY_SIZE: u64 = 24;

/// Within a ring.
pub const RING_OFF_HEAD: u64 = 0;
pub const RING_OFF_TAIL: u64 = 64;
pub const RING_OFF_SLOTS: u64 = 4096;
/// Within a slot: the frame length, then the frame.
pub const SLOT_OFF_FRAME: u64 = 4;

/// Slots per ring.
pub const SLOTS: u32 = 256;
/// Smallest slot: holds a 1500-byte MTU frame (1514 bytes) and its length.
pub const MIN_SLOT_SIZE: u32 = 2048;

/// Slot size for a NIC whose largest frame is `max_frame` bytes.
pub const fn slot_size(max_frame: u32) -> u32 {
    let need = max_frame + SLOT_OFF_FRAME as u32;
    if need <= MIN_SLOT_SIZE {
        MIN_SLOT_SIZE
    } else {
        need.next_power_of_two()
    }
}

/// Bytes of one ring with `slots` slots of `slot_size` bytes.
pub const fn ring_bytes(slots: u32, slot_size: u32) -> u64 {
    RING_OFF_SLOTS + slots as u64 * slot_size as u64
}
