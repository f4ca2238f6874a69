//! The guest side of sturdy's shared-memory NIC rings (`sturdy_abi::ring` has the layout and the
//! protocol). When `sturdy-hvt` offers rings, [`Net`](crate::Net) moves frames through them and
//! exits to the monitor only to sleep (POLL) or, when the monitor's I/O thread sleeps, to ring its
//! doorbell (an ioeventfd: no exit to the monitor process). Under a monitor that offers no rings
//! (upstream solo5-hvt, CPL 0), `Net` keeps the per-frame hypercalls.

use core::ptr;
use core::sync::atomic::{fence, AtomicU32, AtomicUsize, Ordering};

use sturdy_abi::ring::*;
use sturdy_abi::BootInfo;

use crate::hypercall;

/// Base address of the ring area, or 0 when the monitor offers none.
static AREA: AtomicUsize = AtomicUsize::new(0);

/// Reads the offer in the boot info (called once at boot).
pub(crate) fn init(boot_info: &BootInfo) {
    if boot_info.host_features & HOST_FEATURE_STURDY_RING == 0 || boot_info.net_ring == 0 {
        return;
    }
    let base = boot_info.net_ring as usize;
    if header(base, OFF_MAGIC).load(Ordering::Relaxed) == RING_MAGIC
        && header(base, OFF_VERSION).load(Ordering::Relaxed) == RING_VERSION
    {
        AREA.store(base, Ordering::Relaxed);
    }
}

/// The u32 at `off` in the area's header.
fn header(base: usize, off: u64) -> &'static AtomicU32 {
    // SAFETY: the monitor maps the area read-write for the guest for the whole run (boot info
    // says where); every offset used is a 4-byte aligned field of the header or of a ring's
    // control page, and the monitor accesses these fields only atomically too.
    unsafe { &*((base + off as usize) as *const AtomicU32) }
}

fn area() -> Option<usize> {
    Some(AREA.load(Ordering::Relaxed)).filter(|&a| a != 0)
}

/// Rings the monitor's doorbell: its I/O thread wakes and drains the TX rings.
fn ring_doorbell() {
    // SAFETY: the doorbell port is an ioeventfd; the value is ignored and no memory is accessed.
    unsafe { hypercall::out(DOORBELL_PORT, 0) }
}

/// One NIC's pair of rings.
#[derive(Debug)]
pub(crate) struct NicRing {
    base: usize,
    tx: usize,
    rx: usize,
    slots: u32,
    slot_size: u32,
}

/// The rings of the NIC with `handle`, switching the guest's NICs to rings on first use.
pub(crate) fn open(handle: u64) -> Option<NicRing> {
    let base = area()?;
    let nics = header(base, OFF_NICS).load(Ordering::Relaxed) as usize;
    let slots = header(base, OFF_SLOTS).load(Ordering::Relaxed);
    let slot_size = header(base, OFF_SLOT_SIZE).load(Ordering::Relaxed);
    let entry = (0..nics)
        .map(|i| base + (OFF_NIC_TABLE + NIC_ENTRY_SIZE * i as u64) as usize)
        // SAFETY: entries lie in the header page the monitor wrote; 8-byte aligned u64s.
        .find(|&e| unsafe { ptr::read_volatile(e as *const u64) } == handle)?;
    // SAFETY: as above, the entry's TX and RX offsets follow its handle.
    let (tx, rx) = unsafe {
        (
            ptr::read_volatile((entry + 8) as *const u64),
            ptr::read_volatile((entry + 16) as *const u64),
        )
    };
    let ring = NicRing {
        base,
        tx: base + tx as usize,
        rx: base + rx as usize,
        slots,
        slot_size,
    };
    if header(base, OFF_GUEST_ENABLED).swap(1, Ordering::AcqRel) == 0 {
        ring_doorbell(); // the I/O thread starts serving the NICs
    }
    Some(ring)
}

impl NicRing {
    fn head(ring: usize) -> &'static AtomicU32 {
        header(ring, RING_OFF_HEAD)
    }

    fn tail(ring: usize) -> &'static AtomicU32 {
        header(ring, RING_OFF_TAIL)
    }

    fn slot(&self, ring: usize, index: u32) -> usize {
        ring + RING_OFF_SLOTS as usize + (index % self.slots) as usize * self.slot_size as usize
    }

    /// Takes one received frame into `buf`; `None` if none is waiting.
    pub(crate) fn read(&self, buf: &mut [u8]) -> Option<usize> {
        let head = Self::head(self.rx).load(Ordering::Relaxed);
        if head == Self::tail(self.rx).load(Ordering::Acquire) {
            return None;
        }
        let slot = self.slot(self.rx, head);
        // SAFETY: the slot lies in the RX ring, which the host does not write between publishing
        // it (tail, acquire above) and our release of it (head, below).
        let len = unsafe { ptr::read_volatile(slot as *const u32) } as usize;
        let len = len
            .min(buf.len())
            .min(self.slot_size as usize - SLOT_OFF_FRAME as usize);
        // SAFETY: as above; `len` fits both the slot's frame area and `buf`.
        unsafe {
            ptr::copy_nonoverlapping(
                (slot + SLOT_OFF_FRAME as usize) as *const u8,
                buf.as_mut_ptr(),
                len,
            )
        };
        Self::head(self.rx).store(head.wrapping_add(1), Ordering::Release);
        Some(len)
    }

    /// Whether a frame is waiting.
    pub(crate) fn rx_pending(&self) -> bool {
        Self::head(self.rx).load(Ordering::Relaxed) != Self::tail(self.rx).load(Ordering::Acquire)
    }

    /// Whether [`write`](Self::write) has a free slot.
    pub(crate) fn can_write(&self) -> bool {
        let tail = Self::tail(self.tx).load(Ordering::Relaxed);
        tail.wrapping_sub(Self::head(self.tx).load(Ordering::Acquire)) < self.slots
    }

    /// Queues `frame` for the host; `false` if the ring is full (the host is then woken).
    pub(crate) fn write(&self, frame: &[u8]) -> bool {
        let tail = Self::tail(self.tx).load(Ordering::Relaxed);
        if tail.wrapping_sub(Self::head(self.tx).load(Ordering::Acquire)) >= self.slots {
            ring_doorbell();
            return false;
        }
        let slot = self.slot(self.tx, tail);
        let len = frame
            .len()
            .min(self.slot_size as usize - SLOT_OFF_FRAME as usize);
        // SAFETY: the slot lies in the TX ring and is ours until we publish it (tail, below);
        // `len` fits its frame area.
        unsafe {
            ptr::copy_nonoverlapping(
                frame.as_ptr(),
                (slot + SLOT_OFF_FRAME as usize) as *mut u8,
                len,
            );
            ptr::write_volatile(slot as *mut u32, len as u32);
        }
        Self::tail(self.tx).store(tail.wrapping_add(1), Ordering::Release);
        fence(Ordering::SeqCst);
        if header(self.base, OFF_HOST_SLEEPING).load(Ordering::Relaxed) == 1 {
            ring_doorbell();
        }
        true
    }
}

/// Handles of the NICs whose RX ring holds frames, as a POLL ready set; 0 without rings.
pub(crate) fn rx_ready() -> u64 {
    let Some(base) = area() else { return 0 };
    if header(base, OFF_GUEST_ENABLED).load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let nics = header(base, OFF_NICS).load(Ordering::Relaxed) as usize;
    let mut set = 0;
    for i in 0..nics {
        let e = base + (OFF_NIC_TABLE + NIC_ENTRY_SIZE * i as u64) as usize;
        // SAFETY: table entries lie in the header page the monitor wrote (see `open`).
        let (handle, rx) = unsafe {
            (
                ptr::read_volatile(e as *const u64),
                ptr::read_volatile((e + 16) as *const u64),
            )
        };
        let rx = base + rx as usize;
        if handle < 64
            && NicRing::head(rx).load(Ordering::Relaxed)
                != NicRing::tail(rx).load(Ordering::Acquire)
        {
            set |= 1 << handle;
        }
    }
    set
}

/// Whether the guest's NICs are served by rings (so POLL has nothing else to check).
pub(crate) fn active() -> bool {
    area().is_some_and(|base| header(base, OFF_GUEST_ENABLED).load(Ordering::Relaxed) == 1)
}

/// Tells the I/O thread the guest is (or no longer is) about to sleep in POLL, so that it ends
/// the POLL when it queues a frame. Returns the ready set re-checked after announcing.
pub(crate) fn announce_sleep() -> u64 {
    let Some(base) = area() else { return 0 };
    header(base, OFF_GUEST_SLEEPING).store(1, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    rx_ready()
}

pub(crate) fn end_sleep() {
    if let Some(base) = area() {
        header(base, OFF_GUEST_SLEEPING).store(0, Ordering::Relaxed);
    }
}
