//! Shared-memory frame rings between a fabric port and the monitor of its guest.
//!
//! A fabric port is a SOCK_SEQPACKET socket pair, one message per Ethernet frame. Each frame
//! through it costs both sides a system call (sendmmsg, recvmmsg) and often a wake-up; on a
//! virtualised host that is most of what a hop through the fabric costs. This crate is the
//! faster way beside the socket: the fabric creates a memory file holding two single-producer,
//! single-consumer rings of frame slots (monitor to fabric, fabric to monitor), seals its size
//! and offers it as the first message on the socket ([`offer`]: SCM_RIGHTS, with a payload that
//! is no Ethernet frame, [`OFFER`]). A monitor that takes the offer ([`take_offer`]) and serves
//! the rings says so ([`PortRings::set_attached`]); from then on frames go through memory both
//! ways and the socket carries only doorbells ([`DOORBELL`], one byte), sent to a side that
//! announced it sleeps. A monitor that never takes the offer keeps the socket: nothing changes
//! for it.
//!
//! Each side treats the other as hostile. A side's own indices are private (the peer's are read
//! once, then bounded); a frame's length is checked before its bytes are copied out; every access
//! to the shared memory goes through vm-memory's bounds-checked volatile slices; the memory file
//! is sealed against shrinking, so a peer cannot make the other fault by truncating it (a peer
//! that punches holes in it only zeroes pages: they read back as zeros). A producer whose tail
//! runs more than a ring ahead gets [`RingError`]; a consumer that lies about its head only
//! loses its own frames; garbage frames are checked like any other.
//!
//! The only `unsafe` code is in `sys.rs` (the memory file, the socket messages); the shared
//! memory itself is reached through vm-memory.
#![deny(unsafe_code)]

mod sys;

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{fence, AtomicU32, Ordering};

use vm_memory::{Bytes, FileOffset, MmapRegion, VolatileMemory, VolatileSlice};

pub use sys::{offer, send_doorbell, take_offer};

/// The payload of the message that offers the rings' memory file: 12 bytes, shorter than an
/// Ethernet header, so never a frame.
pub const OFFER: &[u8; 12] = b"sturdy-rings";
/// A doorbell: a one-byte message, never a frame.
pub const DOORBELL: u8 = 0xdb;
/// Frame slots per ring.
pub const SLOTS: u32 = 256;
/// Bytes per slot: the frame's length (u32), then the frame.
pub const SLOT_SIZE: usize = 2048;
/// The longest frame a slot holds.
pub const MAX_FRAME: usize = SLOT_SIZE - 4;

const MAGIC: u32 = u32::from_le_bytes(*b"SRNG");
const VERSION: u32 = 1;
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_SLOTS: usize = 8;
const OFF_SLOT_SIZE: usize = 12;
/// Set by the monitor once it serves the rings: the fabric sends through memory from then on.
const OFF_ATTACHED: usize = 64;
/// Set by the fabric when it has seen [`OFF_ATTACHED`]: every frame it sent on the socket before
/// is queued there, and it sends none there any more.
const OFF_FABRIC_SWITCHED: usize = 128;

/// A ring: its header page (the producer's tail, the consumer's head and its "sleeping" flag,
/// each on its own cache line), then the slots.
const RING_HEADER: usize = 4096;
const RING_OFF_TAIL: usize = 0;
const RING_OFF_HEAD: usize = 64;
const RING_OFF_SLEEPING: usize = 128;
const RING_BYTES: usize = RING_HEADER + SLOTS as usize * SLOT_SIZE;
/// The ring the monitor produces (frames from the guest).
const TO_FABRIC: usize = 4096;
/// The ring the fabric produces (frames for the guest).
const TO_MONITOR: usize = TO_FABRIC + RING_BYTES;
/// The memory file's size.
pub const SIZE: usize = TO_MONITOR + RING_BYTES;

/// Which end of the rings this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The fabric: creates the memory, consumes the guest's frames, produces the guest's.
    Fabric,
    /// The guest's monitor.
    Monitor,
}

/// What [`PortRings::pop`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Popped {
    /// A frame of this length, copied out.
    Frame(usize),
    /// A frame longer than the slot or the buffer allows (the length the peer wrote); skipped.
    Oversized(usize),
}

/// The peer broke the ring protocol.
#[derive(Debug, thiserror::Error)]
#[error("the peer's ring tail {tail} is {ahead} frames ahead of head {head} (the ring has {SLOTS} slots)")]
pub struct RingError {
    tail: u32,
    head: u32,
    ahead: u32,
}

/// Why an offered memory file was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Its size is not sealed, so the peer could shrink it under the mapping.
    #[error("the rings' memory file is not sealed against shrinking")]
    NotSealed,
    /// It is not the size of the rings.
    #[error("the rings' memory file is {found} bytes, not {SIZE}")]
    Size { found: u64 },
    /// Its header is not one of this version.
    #[error("the rings' memory file has an unknown header (magic {magic:#x}, version {version})")]
    Header { magic: u32, version: u32 },
    /// It could not be read or mapped.
    #[error("the rings' memory file: {0}")]
    Io(#[from] io::Error),
}

/// One side's view of a port's rings: the mapping, and this side's own indices.
pub struct PortRings {
    region: MmapRegion<()>,
    side: Side,
    /// The ring this side produces, and the one it consumes.
    out: usize,
    inc: usize,
    /// Next slot to fill, and the tail last made visible.
    tail: u32,
    published: u32,
    /// Next slot to read, and the head last made visible.
    head: u32,
    released: u32,
    /// The fabric's side: it has said it sends through the rings only.
    switched: bool,
}

impl std::fmt::Debug for PortRings {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("PortRings")
            .field("side", &self.side)
            .field("tail", &self.tail)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl PortRings {
    /// New, empty rings for the fabric's side, and the memory file to [`offer`] the monitor
    /// (sealed against shrinking and growing, close-on-exec).
    pub fn create() -> io::Result<(PortRings, File)> {
        let file = sys::sealed_memfd(SIZE as u64)?;
        let rings = PortRings::map(file.try_clone()?, Side::Fabric)?;
        let mem = rings.mem();
        for (off, v) in [
            (OFF_MAGIC, MAGIC),
            (OFF_VERSION, VERSION),
            (OFF_SLOTS, SLOTS),
            (OFF_SLOT_SIZE, SLOT_SIZE as u32),
        ] {
            mem.store(v, off, Ordering::Relaxed)
                .map_err(io::Error::other)?;
        }
        Ok((rings, file))
    }

    /// The monitor's side of rings the fabric offered in `file`, after checking its seals,
    /// size and header.
    pub fn open(file: File) -> Result<PortRings, OpenError> {
        if !sys::shrink_sealed(&file)? {
            return Err(OpenError::NotSealed);
        }
        let found = file.metadata()?.len();
        if found != SIZE as u64 {
            return Err(OpenError::Size { found });
        }
        let rings = PortRings::map(file, Side::Monitor)?;
        let magic = rings.load(OFF_MAGIC, Ordering::Relaxed);
        let version = rings.load(OFF_VERSION, Ordering::Relaxed);
        if magic != MAGIC
            || version != VERSION
            || rings.load(OFF_SLOTS, Ordering::Relaxed) != SLOTS
            || rings.load(OFF_SLOT_SIZE, Ordering::Relaxed) != SLOT_SIZE as u32
        {
            return Err(OpenError::Header { magic, version });
        }
        Ok(rings)
    }

    fn map(file: File, side: Side) -> io::Result<PortRings> {
        let region = MmapRegion::from_file(FileOffset::new(file, 0), SIZE)
            .map_err(|e| io::Error::other(format!("cannot map the rings: {e}")))?;
        let (out, inc) = match side {
            Side::Fabric => (TO_MONITOR, TO_FABRIC),
            Side::Monitor => (TO_FABRIC, TO_MONITOR),
        };
        Ok(PortRings {
            region,
            side,
            out,
            inc,
            tail: 0,
            published: 0,
            head: 0,
            released: 0,
            switched: false,
        })
    }

    fn mem(&self) -> VolatileSlice<'_, ()> {
        self.region.as_volatile_slice()
    }

    /// The u32 at `off`, one of this crate's constant, aligned offsets inside the mapping.
    fn load(&self, off: usize, order: Ordering) -> u32 {
        self.mem().load(off, order).unwrap_or(0)
    }

    fn store(&self, off: usize, value: u32, order: Ordering) {
        let _ = self.mem().store(value, off, order);
    }

    fn atomic(&self, off: usize) -> Option<&AtomicU32> {
        self.region.get_atomic_ref::<AtomicU32>(off).ok()
    }

    /// Whether the monitor serves the rings (the fabric sends through memory only then).
    pub fn attached(&self) -> bool {
        self.load(OFF_ATTACHED, Ordering::Acquire) == 1
    }

    /// The monitor's word that it serves the rings from now on.
    pub fn set_attached(&self) {
        self.store(OFF_ATTACHED, 1, Ordering::Release);
    }

    /// The fabric's side: whether to send through the rings (the monitor serves them). The
    /// first time it is so, the monitor is told that the fabric sends nothing on the socket any
    /// more ([`fabric_switched`](Self::fabric_switched)).
    pub fn send_through_rings(&mut self) -> bool {
        if self.switched {
            return true;
        }
        if !self.attached() {
            return false;
        }
        self.store(OFF_FABRIC_SWITCHED, 1, Ordering::Release);
        self.switched = true;
        true
    }

    /// The monitor's side: whether the fabric said it sends through the rings only. Frames it
    /// sent on the socket before are in the socket's queue by the time this reads true.
    pub fn fabric_switched(&self) -> bool {
        self.load(OFF_FABRIC_SWITCHED, Ordering::Acquire) == 1
    }

    fn slot(ring: usize, index: u32) -> usize {
        ring + RING_HEADER + (index % SLOTS) as usize * SLOT_SIZE
    }

    /// The next free slot of the outgoing ring for a frame of `len` bytes, or None if the
    /// ring is full (or `len` does not fit a slot).
    fn reserve(&self, len: usize) -> Option<usize> {
        // The peer's head is only believed up to a full ring: a lying consumer loses its own
        // frames, never makes this side write outside its slots.
        let head = self.load(self.out + RING_OFF_HEAD, Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        (len <= MAX_FRAME && used < SLOTS).then(|| Self::slot(self.out, self.tail))
    }

    /// Queues `frame` on the outgoing ring; false if the ring is full or the frame longer than
    /// [`MAX_FRAME`]. The peer sees it after [`publish`](Self::publish).
    pub fn push(&mut self, frame: &[u8]) -> bool {
        let Some(slot) = self.reserve(frame.len()) else {
            return false;
        };
        let mem = self.mem();
        if mem.write_slice(frame, slot + 4).is_err() {
            return false;
        }
        let _ = mem.store(frame.len() as u32, slot, Ordering::Relaxed);
        self.tail = self.tail.wrapping_add(1);
        true
    }

    /// [`push`](Self::push) from a volatile slice (a frame in guest memory), copied once.
    pub fn push_slice(&mut self, frame: VolatileSlice<'_, ()>) -> bool {
        let Some(slot) = self.reserve(frame.len()) else {
            return false;
        };
        let mem = self.mem();
        let Ok(dst) = mem.get_slice(slot + 4, frame.len()) else {
            return false;
        };
        frame.copy_to_volatile_slice(dst);
        let _ = mem.store(frame.len() as u32, slot, Ordering::Relaxed);
        self.tail = self.tail.wrapping_add(1);
        true
    }

    /// Whether the outgoing ring has room for another frame.
    pub fn has_room(&self) -> bool {
        self.reserve(0).is_some()
    }

    /// Makes the frames pushed so far visible to the peer. Returns whether the peer announced
    /// it sleeps: then it must be woken with [`send_doorbell`] (the flag is cleared here, so a
    /// sleeping peer gets one doorbell, not one per batch).
    pub fn publish(&mut self) -> bool {
        if self.tail == self.published {
            return false;
        }
        self.store(self.out + RING_OFF_TAIL, self.tail, Ordering::Release);
        self.published = self.tail;
        // Pairs with the fence in `prepare_sleep`: either the peer sees the new tail before it
        // sleeps, or this side sees its flag.
        fence(Ordering::SeqCst);
        self.atomic(self.out + RING_OFF_SLEEPING)
            .is_some_and(|flag| flag.swap(0, Ordering::SeqCst) == 1)
    }

    /// Whether the incoming ring's tail moved past what this side has read (a corrupt tail
    /// counts: [`pop`](Self::pop) then reports it).
    pub fn pending(&self) -> bool {
        self.load(self.inc + RING_OFF_TAIL, Ordering::Acquire) != self.head
    }

    /// Takes the next frame of the incoming ring, copied into `buf`. The slot is handed back
    /// to the peer at [`release`](Self::release).
    pub fn pop(&mut self, buf: &mut [u8]) -> Result<Option<Popped>, RingError> {
        let Some((slot, len)) = self.next()? else {
            return Ok(None);
        };
        if len > MAX_FRAME || len > buf.len() {
            return Ok(Some(Popped::Oversized(len)));
        }
        if self.mem().read_slice(&mut buf[..len], slot + 4).is_err() {
            return Ok(Some(Popped::Oversized(len)));
        }
        Ok(Some(Popped::Frame(len)))
    }

    /// [`pop`](Self::pop) into a volatile slice (a guest's buffer), copied once.
    pub fn pop_slice(&mut self, buf: VolatileSlice<'_, ()>) -> Result<Option<Popped>, RingError> {
        let Some((slot, len)) = self.next()? else {
            return Ok(None);
        };
        if len > MAX_FRAME || len > buf.len() {
            return Ok(Some(Popped::Oversized(len)));
        }
        match (self.mem().get_slice(slot + 4, len), buf.subslice(0, len)) {
            (Ok(src), Ok(dst)) => {
                src.copy_to_volatile_slice(dst);
                Ok(Some(Popped::Frame(len)))
            }
            _ => Ok(Some(Popped::Oversized(len))),
        }
    }

    /// The next incoming slot and the length its producer wrote there (unchecked).
    fn next(&mut self) -> Result<Option<(usize, usize)>, RingError> {
        let tail = self.load(self.inc + RING_OFF_TAIL, Ordering::Acquire);
        let ahead = tail.wrapping_sub(self.head);
        if ahead > SLOTS {
            return Err(RingError {
                tail,
                head: self.head,
                ahead,
            });
        }
        if ahead == 0 {
            return Ok(None);
        }
        let slot = Self::slot(self.inc, self.head);
        let len = self.load(slot, Ordering::Relaxed) as usize;
        self.head = self.head.wrapping_add(1);
        Ok(Some((slot, len)))
    }

    /// Hands the slots read so far back to the peer.
    pub fn release(&mut self) {
        if self.head != self.released {
            self.store(self.inc + RING_OFF_HEAD, self.head, Ordering::Release);
            self.released = self.head;
        }
    }

    /// Announces that this side is about to sleep until a doorbell. Returns false, and takes
    /// the announcement back, if frames arrived meanwhile: then it must not sleep.
    pub fn prepare_sleep(&self) -> bool {
        self.store(self.inc + RING_OFF_SLEEPING, 1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.pending() {
            self.woke();
            return false;
        }
        true
    }

    /// Takes back the announcement of [`prepare_sleep`](Self::prepare_sleep) after waking.
    pub fn woke(&self) {
        self.store(self.inc + RING_OFF_SLEEPING, 0, Ordering::Relaxed);
    }
}

/// Offers `rings`' memory file on `socket` and returns the rings: see [`offer`].
pub fn create_and_offer(socket: BorrowedFd<'_>) -> io::Result<PortRings> {
    let (rings, file) = PortRings::create()?;
    offer(socket, &file)?;
    Ok(rings)
}

#[cfg(test)]
mod tests;
