//! Host side of sturdy's shared-memory NIC rings (`sturdy_abi::ring` has the layout and the
//! protocol): the area in guest memory, and the monitor I/O thread that moves frames between the
//! rings and the NICs' host descriptors, so a busy guest exits only to sleep.
//!
//! A NIC on a fabric port that offered its own shared-memory rings (`sturdy_port_ring`) moves
//! its frames through those instead of the socket: guest ring to port ring and back, one copy
//! each way and no system call while both sides poll. The socket then brings doorbells (and
//! frames the fabric sent before the rings were served), and takes this thread's doorbells when
//! the fabric sleeps.

use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sturdy_abi::ring::*;
use sturdy_poll::PollWindow;
use sturdy_port_ring::{Popped, PortRings};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::net::ETHERNET_HEADER;
use crate::memory::{Access, GuestMemory};

/// Size granularity of the area: it sits in 2 MiB guest pages.
const AREA_ALIGN: u64 = 2 << 20;

/// A NIC served through rings.
#[derive(Clone, Copy, Debug)]
pub struct RingNic {
    pub handle: u64,
    pub fd: RawFd,
    /// Largest frame (MTU + Ethernet header).
    pub max_frame: u32,
    tx: u64,
    rx: u64,
}

/// Where the rings are and how they are shaped.
#[derive(Debug)]
pub struct RingArea {
    pub base: u64,
    pub size: u64,
    slots: u32,
    slot_size: u32,
    nics: Vec<RingNic>,
}

impl RingArea {
    /// Lays out rings for `nics` (handle, host fd, largest frame) in an area ending at `end`;
    /// its base is 0 if they do not fit below `end` (the caller refuses the guest then).
    pub fn plan(nics: &[(u64, RawFd, u32)], end: u64) -> RingArea {
        let slot_size = nics
            .iter()
            .map(|n| slot_size(n.2))
            .max()
            .unwrap_or(MIN_SLOT_SIZE);
        let ring = ring_bytes(SLOTS, slot_size);
        let size = (4096 + 2 * ring * nics.len() as u64).div_ceil(AREA_ALIGN) * AREA_ALIGN;
        let base = end.saturating_sub(size);
        let nics = nics
            .iter()
            .enumerate()
            .map(|(i, &(handle, fd, max_frame))| {
                let tx = base + 4096 + 2 * ring * i as u64;
                RingNic {
                    handle,
                    fd,
                    max_frame,
                    tx,
                    rx: tx + ring,
                }
            })
            .collect();
        RingArea {
            base,
            size,
            slots: SLOTS,
            slot_size,
            nics,
        }
    }

    /// Writes the area's header and NIC table (the rings start zeroed: empty).
    pub fn write_header(&self, mem: &GuestMemory) -> Result<(), crate::memory::GuestAccessError> {
        let mut h = vec![0u8; (OFF_NIC_TABLE + NIC_ENTRY_SIZE * self.nics.len() as u64) as usize];
        let put32 = |h: &mut Vec<u8>, off: u64, v: u32| sturdy_abi::put_u32(h, off as usize, v);
        put32(&mut h, OFF_MAGIC, RING_MAGIC);
        put32(&mut h, OFF_VERSION, RING_VERSION);
        put32(&mut h, OFF_NICS, self.nics.len() as u32);
        put32(&mut h, OFF_SLOTS, self.slots);
        put32(&mut h, OFF_SLOT_SIZE, self.slot_size);
        for (i, n) in self.nics.iter().enumerate() {
            let e = (OFF_NIC_TABLE + NIC_ENTRY_SIZE * i as u64) as usize;
            sturdy_abi::put_u64(&mut h, e, n.handle);
            sturdy_abi::put_u64(&mut h, e + 8, n.tx - self.base);
            sturdy_abi::put_u64(&mut h, e + 16, n.rx - self.base);
        }
        mem.setup_write(self.base, &h)
    }

    /// Whether the guest switched its NICs to the rings.
    pub fn enabled(&self, mem: &GuestMemory) -> bool {
        mem.load_u32(self.base + OFF_GUEST_ENABLED, Ordering::Acquire)
            .unwrap_or(0)
            == 1
    }

    /// Whether `handle` is served through the rings.
    pub fn serves(&self, handle: u64) -> bool {
        self.nics.iter().any(|n| n.handle == handle)
    }

    /// Handles whose RX ring holds frames for the guest, as a POLL ready set.
    pub fn rx_ready(&self, mem: &GuestMemory) -> u64 {
        self.nics
            .iter()
            .filter(|n| n.handle < 64)
            .filter(|n| {
                let head = mem
                    .load_u32(n.rx + RING_OFF_HEAD, Ordering::Acquire)
                    .unwrap_or(0);
                let tail = mem
                    .load_u32(n.rx + RING_OFF_TAIL, Ordering::Acquire)
                    .unwrap_or(0);
                head != tail
            })
            .fold(0, |set, n| set | 1 << n.handle)
    }

    fn slot(&self, ring: u64, index: u32) -> u64 {
        ring + RING_OFF_SLOTS + u64::from(index % self.slots) * u64::from(self.slot_size)
    }
}

/// A fabric port's shared-memory rings, and a descriptor of its socket for doorbells.
pub struct FabricRings {
    pub rings: PortRings,
    pub socket: OwnedFd,
}

/// The I/O thread's view of one NIC: the indices the host owns.
struct NicState {
    nic: RingNic,
    tx_head: u32,
    rx_tail: u32,
    /// The descriptor is a message socket (SOCK_SEQPACKET or SOCK_DGRAM, e.g. a fabric port):
    /// frames move in batches, one sendmmsg/recvmmsg for up to [`BATCH`] of them. A TAP takes
    /// one read or write per frame.
    batched: bool,
    /// The descriptor is a SOCK_SEQPACKET socket: an empty message is its peer's end.
    seqpacket: bool,
    /// The peer closed its end (a SOCK_SEQPACKET socket read to its end): nothing more comes.
    peer_closed: bool,
    /// The host descriptor would block at the last try: the guest's queued frames wait for
    /// the retry, not for a doorbell.
    tx_stalled: bool,
    /// The fabric port's rings, when it offered them: frames go through them, not the socket.
    port: Option<FabricRings>,
    /// epoll reported the socket readable (edge-triggered): read it to its end on the next pass.
    /// Only for a NIC with port rings; others read their descriptor on every pass.
    socket_ready: bool,
    /// The fabric said it sends through the rings only, and the socket was read after that:
    /// until then it is read on every pass, so no frame the fabric sent on it before the
    /// switch waits there for the thread's next sleep.
    socket_switched: bool,
    /// The guest's RX ring was full at the last pass: frames waiting for it wait for the
    /// retry, not for a doorbell.
    rx_full: bool,
}

impl NicState {
    fn new(nic: RingNic, port: Option<FabricRings>) -> NicState {
        let ty = socket_type(nic.fd);
        NicState {
            nic,
            tx_head: 0,
            rx_tail: 0,
            batched: ty == Some(libc::SOCK_SEQPACKET) || ty == Some(libc::SOCK_DGRAM),
            seqpacket: ty == Some(libc::SOCK_SEQPACKET),
            peer_closed: false,
            tx_stalled: false,
            port,
            socket_ready: true,
            socket_switched: false,
            rx_full: false,
        }
    }
}

/// Frames moved by one sendmmsg/recvmmsg.
const BATCH: usize = 64;

/// The socket type of `fd`, if it is a socket: SOCK_SEQPACKET and SOCK_DGRAM keep message
/// boundaries (one message is one frame).
fn socket_type(fd: RawFd) -> Option<libc::c_int> {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes (one int) into `ty`, and its size to `len`;
    // on a descriptor that is no socket it fails with ENOTSOCK and writes nothing.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(ty)
}

/// Why the I/O thread stopped the guest.
#[derive(Debug, thiserror::Error)]
#[error("NIC ring of handle {handle}: {what}")]
pub struct RingError {
    handle: u64,
    what: String,
}

/// How a guest range the ring names that is no guest memory it may use stops the guest.
fn guest_access(handle: u64) -> impl Fn(crate::memory::GuestAccessError) -> RingError + Copy {
    move |e| RingError {
        handle,
        what: e.to_string(),
    }
}

/// Starts the I/O thread and waits until it is set up, so that the seccomp filter installed
/// afterwards never meets the thread's start-up system calls. `ports` are the fabric port rings
/// of the area's NICs, in its order; `doorbell` is the guest's ioeventfd; `wake` ends the
/// guest's POLL. Returns the thread's epoll descriptor (the others are the caller's).
pub fn spawn_io_thread(
    mem: Arc<GuestMemory>,
    area: Arc<RingArea>,
    ports: Vec<Option<FabricRings>>,
    doorbell: EventFd,
    wake: EventFd,
) -> std::io::Result<RawFd> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sturdy-hvt-io".into())
        .spawn(move || {
            let result = IoThread::new(&area, ports, &doorbell).and_then(|mut t| {
                let _ = ready_tx.send(Ok(t.epoll.as_raw_fd()));
                t.run(&mem, &area, &doorbell, &wake)
            });
            if let Err(e) = result {
                // A guest that corrupts its rings is stopped like any other bad guest access.
                let _ = ready_tx.send(Err(e.to_string()));
                eprintln!("sturdy-hvt: {e}");
                std::process::exit(1);
            }
        })?;
    match ready_rx.recv() {
        Ok(Ok(epoll)) => Ok(epoll),
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(_) => Err(std::io::Error::other("the I/O thread ended during set-up")),
    }
}

const DOORBELL_TOKEN: u64 = u64::MAX;

/// The longest the I/O thread polls (rings and NICs) after its last frame before it sleeps.
/// On this kind of host a sleep and its wake-up cost tens of microseconds of CPU time and more of
/// latency on each side (an idle vCPU of a nested host halts), and a guest must ring the doorbell
/// to wake a sleeping thread; a flowing exchange (a TCP window, a request and its response) has
/// its next frame within a few hundred microseconds. KVM's own halt polling waits as long by
/// default (200 us). The window adapts ([`PollWindow`]); `STURDY_IO_POLL_US` replaces it.
const POLL_MAX: Duration = Duration::from_micros(200);

/// The I/O thread's state: its epoll set, the host-owned ring indices, the event buffer.
struct IoThread {
    epoll: Epoll,
    nics: Vec<NicState>,
    events: Vec<EpollEvent>,
    enabled: bool,
    poll: PollWindow,
}

fn sys_error(what: &str, e: std::io::Error) -> RingError {
    RingError {
        handle: 0,
        what: format!("{what}: {e}"),
    }
}

impl IoThread {
    fn new(
        area: &RingArea,
        ports: Vec<Option<FabricRings>>,
        doorbell: &EventFd,
    ) -> Result<IoThread, RingError> {
        let epoll = Epoll::new().map_err(|e| sys_error("epoll", e))?;
        epoll
            .ctl(
                ControlOperation::Add,
                doorbell.as_raw_fd(),
                EpollEvent::new(EventSet::IN, DOORBELL_TOKEN),
            )
            .map_err(|e| sys_error("epoll_ctl", e))?;
        let mut ports = ports.into_iter();
        let nics = area
            .nics
            .iter()
            .map(|&nic| NicState::new(nic, ports.next().flatten()))
            .collect();
        Ok(IoThread {
            epoll,
            nics,
            events: vec![EpollEvent::default(); 16],
            enabled: false,
            poll: PollWindow::new(POLL_MAX, "STURDY_IO_POLL_US"),
        })
    }

    fn run(
        &mut self,
        mem: &GuestMemory,
        area: &RingArea,
        doorbell: &EventFd,
        wake: &EventFd,
    ) -> Result<(), RingError> {
        loop {
            if !self.enabled && area.enabled(mem) {
                // Edge-triggered: every pass drains a NIC until EAGAIN or a full ring.
                for (i, n) in self.nics.iter().enumerate() {
                    let ev = EpollEvent::new(EventSet::IN | EventSet::EDGE_TRIGGERED, i as u64);
                    self.epoll
                        .ctl(ControlOperation::Add, n.nic.fd, ev)
                        .map_err(|e| sys_error("epoll_ctl", e))?;
                    if let Some(port) = &n.port {
                        // The fabric sends through the rings from now on.
                        port.rings.set_attached();
                    }
                }
                self.enabled = true;
            }
            let mut progress = false;
            let mut stalled = false;
            if self.enabled {
                let mut pushed = false;
                for n in &mut self.nics {
                    let ((sent, tx_stalled), (received, rx_full)) = if n.port.is_some() {
                        (
                            drain_tx_to_port(mem, area, n)?,
                            fill_rx_from_port(mem, area, n)?,
                        )
                    } else {
                        (drain_tx(mem, area, n)?, fill_rx(mem, area, n)?)
                    };
                    n.tx_stalled = tx_stalled;
                    n.rx_full = rx_full;
                    progress |= sent + received > 0;
                    pushed |= received > 0;
                    stalled |= tx_stalled || rx_full;
                }
                if pushed {
                    fence(Ordering::SeqCst);
                    if mem
                        .load_u32(area.base + OFF_GUEST_SLEEPING, Ordering::Relaxed)
                        .unwrap_or(0)
                        == 1
                    {
                        let _ = wake.write(1);
                    }
                }
            }
            if progress {
                self.poll.start(Instant::now());
                continue;
            }
            if self.poll.polling(Instant::now()) {
                // Other threads of this CPU (the guest's vCPU among them) go first.
                std::thread::yield_now();
                continue;
            }
            // Sleep without losing a doorbell: announce, fence, re-check, then wait.
            let sleeping = area.base + OFF_HOST_SLEEPING;
            let _ = mem.store_u32(sleeping, 1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            // Frames queued for a host descriptor that would block are not pending: waiting for
            // them would spin on EAGAIN; they are retried after the short sleep below.
            let tx_pending = self.enabled
                && self
                    .nics
                    .iter()
                    .any(|n| !n.tx_stalled && tx_tail(mem, n) != n.tx_head);
            // Announced on each port's rings too, so the fabric rings the socket; frames that
            // came meanwhile keep the thread awake, unless the guest's RX ring is full (they
            // are retried after the short sleep below, like a full host socket's).
            let port_pending = self.enabled
                && self.nics.iter().any(|n| {
                    n.port
                        .as_ref()
                        .is_some_and(|p| !p.rings.prepare_sleep() && !n.rx_full)
                });
            if !tx_pending && !port_pending {
                // A full RX ring or a full host socket is retried shortly: the guest may not ring.
                let timeout = if stalled { 1 } else { -1 };
                let asleep = Instant::now();
                let ready = match self.epoll.wait(timeout, &mut self.events) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                    Err(e) => return Err(sys_error("epoll_wait", e)),
                };
                self.poll.slept(asleep.elapsed());
                let _ = doorbell.read();
                for e in &self.events[..ready] {
                    if let Some(n) = self.nics.get_mut(e.data() as usize) {
                        n.socket_ready = true;
                    }
                }
            }
            for n in &self.nics {
                if let Some(p) = &n.port {
                    p.rings.woke();
                }
            }
            let _ = mem.store_u32(sleeping, 0, Ordering::Relaxed);
        }
    }
}

fn tx_tail(mem: &GuestMemory, n: &NicState) -> u32 {
    mem.load_u32(n.nic.tx + RING_OFF_TAIL, Ordering::Acquire)
        .unwrap_or(n.tx_head)
}

/// The guest's TX tail, refused if it claims more frames than the ring has slots.
fn checked_tx_tail(mem: &GuestMemory, area: &RingArea, n: &NicState) -> Result<u32, RingError> {
    let tail = tx_tail(mem, n);
    let queued = tail.wrapping_sub(n.tx_head);
    if queued > area.slots {
        return Err(RingError {
            handle: n.nic.handle,
            what: format!(
                "guest TX tail {tail} is {queued} frames ahead of head {} (ring has {} slots)",
                n.tx_head, area.slots
            ),
        });
    }
    Ok(tail)
}

/// Slots of the guest's RX ring in use, refused if its head claims more than the ring has.
fn rx_used(mem: &GuestMemory, area: &RingArea, n: &NicState) -> Result<u32, RingError> {
    let head = mem
        .load_u32(n.nic.rx + RING_OFF_HEAD, Ordering::Acquire)
        .unwrap_or(n.rx_tail);
    let used = n.rx_tail.wrapping_sub(head);
    if used > area.slots {
        return Err(RingError {
            handle: n.nic.handle,
            what: format!(
                "guest RX head {head} is {used} frames behind tail {} (ring has {} slots)",
                n.rx_tail, area.slots
            ),
        });
    }
    Ok(used)
}

/// Whether a TX frame of `len` bytes is one to send: an Ethernet header at least, at most
/// `max_frame` (the NIC's MTU) and within its slot. Any other is the guest's loss: dropped, never sent.
fn tx_frame_fits(area: &RingArea, max_frame: u32, len: u32) -> bool {
    (14..=max_frame).contains(&len) && len <= area.slot_size - SLOT_OFF_FRAME as u32
}

/// Sends the frames the guest queued on `n`'s TX ring. Returns (frames sent, host would block).
fn drain_tx(
    mem: &GuestMemory,
    area: &RingArea,
    n: &mut NicState,
) -> Result<(usize, bool), RingError> {
    let tail = checked_tx_tail(mem, area, n)?;
    let mut sent = 0;
    let mut stalled = false;
    // SAFETY: iovec is a plain C structure for which all-zero is a valid value.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    // Ring index just past frame i of the batch.
    let mut ends = [0u32; BATCH];
    while n.tx_head != tail && !stalled {
        // Gather a batch. A frame of a bad length is the guest's loss: it is dropped, never sent.
        let mut count = 0;
        let mut index = n.tx_head;
        while index != tail && count < BATCH {
            let slot = area.slot(n.nic.tx, index);
            let len = mem.load_u32(slot, Ordering::Relaxed).unwrap_or(0);
            index = index.wrapping_add(1);
            if tx_frame_fits(area, n.nic.max_frame, len) {
                let ptr = mem
                    .host_ptr(slot + SLOT_OFF_FRAME, u64::from(len), Access::Read)
                    .map_err(guest_access(n.nic.handle))?;
                iov[count] = libc::iovec {
                    iov_base: ptr.cast(),
                    iov_len: len as usize,
                };
                ends[count] = index;
                count += 1;
            }
        }
        let (done, would_block) = send_frames(n.nic.fd, &iov[..count], n.batched);
        stalled = would_block;
        // Up to the last frame handled (sent, or refused by the host and dropped); bad frames
        // after it go too unless the host stalled before them.
        let new_head = match done {
            _ if done == count && !stalled => index,
            0 => n.tx_head,
            d => ends[d - 1],
        };
        sent += new_head.wrapping_sub(n.tx_head) as usize;
        n.tx_head = new_head;
    }
    if sent > 0 {
        let _ = mem.store_u32(n.nic.tx + RING_OFF_HEAD, n.tx_head, Ordering::Release);
    }
    Ok((sent, stalled))
}

/// [`drain_tx`] for a NIC on fabric port rings: copies the guest's queued frames into the
/// port's ring and rings the fabric if it sleeps. A full port ring stalls the rest, like a full
/// socket.
fn drain_tx_to_port(
    mem: &GuestMemory,
    area: &RingArea,
    n: &mut NicState,
) -> Result<(usize, bool), RingError> {
    let tail = checked_tx_tail(mem, area, n)?;
    let Some(port) = n.port.as_mut() else {
        return Ok((0, false));
    };
    let mut sent = 0;
    let mut stalled = false;
    while n.tx_head != tail {
        let slot = area.slot(n.nic.tx, n.tx_head);
        let len = mem.load_u32(slot, Ordering::Relaxed).unwrap_or(0);
        if tx_frame_fits(area, n.nic.max_frame, len) {
            let frame = mem
                .slice(slot + SLOT_OFF_FRAME, u64::from(len), Access::Read)
                .map_err(guest_access(n.nic.handle))?;
            if !port.rings.push_slice(frame) {
                stalled = true;
                break;
            }
        }
        n.tx_head = n.tx_head.wrapping_add(1);
        sent += 1;
    }
    if sent > 0 {
        let _ = mem.store_u32(n.nic.tx + RING_OFF_HEAD, n.tx_head, Ordering::Release);
        if port.rings.publish() {
            // A closed fabric shows when the guest's frames stop being taken; nothing to do.
            let _ = sturdy_port_ring::send_doorbell(port.socket.as_fd());
        }
    }
    Ok((sent, stalled))
}

/// [`fill_rx`] for a NIC on fabric port rings: copies frames from the port's ring into the
/// guest's RX ring, after reading the socket with [`fill_rx`] if epoll said it is readable
/// (doorbells, which are no frames, and frames the fabric sent before the rings were served,
/// in order). Returns (frames, the guest's ring is full).
fn fill_rx_from_port(
    mem: &GuestMemory,
    area: &RingArea,
    n: &mut NicState,
) -> Result<(usize, bool), RingError> {
    let mut received = 0;
    if n.socket_ready || !n.socket_switched {
        // Read before the socket: what the fabric sent there before it said so is queued by
        // now.
        n.socket_switched = n.port.as_ref().is_some_and(|p| p.rings.fabric_switched());
        let (got, more) = fill_rx(mem, area, n)?;
        received += got;
        // A full guest ring, or more waiting: read on at the next pass (epoll is
        // edge-triggered and will not say so again).
        n.socket_ready = more;
        if n.peer_closed {
            // The fabric let the port go: its rings are served no more; the socket path
            // drops the guest's frames, as a NIC whose link is down.
            n.port = None;
        }
    }
    let mut used = rx_used(mem, area, n)?;
    let room = (area.slot_size - SLOT_OFF_FRAME as u32).min(n.nic.max_frame);
    let handle = n.nic.handle;
    let guest_error = guest_access(handle);
    if let Some(port) = n.port.as_mut() {
        while used < area.slots {
            let slot = area.slot(n.nic.rx, n.rx_tail);
            let dst = mem
                .slice(slot + SLOT_OFF_FRAME, u64::from(room), Access::Write)
                .map_err(guest_error)?;
            match port.rings.pop_slice(dst) {
                Ok(Some(Popped::Frame(len))) => {
                    let _ = mem.store_u32(slot, len as u32, Ordering::Relaxed);
                    n.rx_tail = n.rx_tail.wrapping_add(1);
                    used += 1;
                    received += 1;
                }
                // Longer than the guest's MTU allows: dropped, as a NIC would.
                Ok(Some(Popped::Oversized(_))) => {}
                Ok(None) => break,
                Err(e) => {
                    return Err(RingError {
                        handle,
                        what: format!("fabric port ring: {e}"),
                    })
                }
            }
        }
        port.rings.release();
    }
    if received > 0 {
        let _ = mem.store_u32(n.nic.rx + RING_OFF_TAIL, n.rx_tail, Ordering::Release);
    }
    Ok((received, used == area.slots))
}

/// sendmmsg/recvmmsg headers for up to [`BATCH`] messages, message `i` the one buffer
/// `iovs[i]` (no address, no control data).
fn message_headers(iovs: &[libc::iovec]) -> [libc::mmsghdr; BATCH] {
    // SAFETY: plain C structures for which all-zero is a valid value.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (m, v) in msgs.iter_mut().zip(iovs) {
        m.msg_hdr.msg_iov = (v as *const libc::iovec).cast_mut();
        m.msg_hdr.msg_iovlen = 1;
    }
    msgs
}

/// Writes `frames` (iovecs into checked guest memory) to `fd`, one message each. Returns how
/// many were handled (sent, or dropped on an error other than EAGAIN, as a NIC drops what its
/// link refuses) and whether the host would block (the rest stays queued).
fn send_frames(fd: RawFd, frames: &[libc::iovec], batched: bool) -> (usize, bool) {
    let mut done = 0;
    while done < frames.len() {
        let rest = &frames[done..];
        let rc: isize = if batched {
            let mut msgs = message_headers(rest);
            // SAFETY: each of the first rest.len() (<= BATCH) headers points at one iovec
            // describing a frame in guest memory checked readable by the caller; sendmmsg
            // only reads through them. MSG_NOSIGNAL: a closed peer is EPIPE, not a signal.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            rc as isize
        } else {
            // SAFETY: the iovec describes a frame in guest memory checked readable by the
            // caller; write(2) only reads it.
            let rc = unsafe { libc::write(fd, rest[0].iov_base, rest[0].iov_len) };
            if rc < 0 {
                -1
            } else {
                1
            }
        };
        if rc > 0 {
            done += rc as usize;
        } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
            return (done, true);
        } else {
            done += 1;
        }
    }
    (done, false)
}

/// Reads frames from `n`'s host descriptor into its RX ring. Returns (frames, ring is full).
fn fill_rx(
    mem: &GuestMemory,
    area: &RingArea,
    n: &mut NicState,
) -> Result<(usize, bool), RingError> {
    let mut used = rx_used(mem, area, n)?;
    if n.peer_closed {
        return Ok((0, false));
    }
    let room = (area.slot_size - SLOT_OFF_FRAME as u32).min(n.nic.max_frame);
    let mut received = 0;
    // SAFETY: iovec is a plain C structure for which all-zero is a valid value.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut lens = [0usize; BATCH];
    while used < area.slots {
        let want = ((area.slots - used) as usize).min(if n.batched { BATCH } else { 1 });
        for (i, v) in iov[..want].iter_mut().enumerate() {
            let slot = area.slot(n.nic.rx, n.rx_tail.wrapping_add(i as u32));
            let ptr = mem
                .host_ptr(slot + SLOT_OFF_FRAME, u64::from(room), Access::Write)
                .map_err(guest_access(n.nic.handle))?;
            *v = libc::iovec {
                iov_base: ptr.cast(),
                iov_len: room as usize,
            };
        }
        let got = match recv_frames(n.nic.fd, &iov[..want], &mut lens, n.batched) {
            Ok(got) => got,
            // A connected SOCK_SEQPACKET socket fails (ECONNRESET) only once its peer is gone.
            Err(_) if n.seqpacket => {
                n.peer_closed = true;
                0
            }
            Err(_) => 0,
        };
        // Messages that are no frame (shorter than an Ethernet header, like a fabric's
        // doorbell, or cut to the slot) are skipped; the frames after one move up to close the
        // gap. On a SOCK_SEQPACKET socket an empty message is the peer's end (it returns
        // nothing else from then on).
        let mut frames = 0;
        for (i, &len) in lens[..got].iter().enumerate() {
            if len == 0 && n.seqpacket {
                n.peer_closed = true;
                break;
            }
            if (len as u64) < ETHERNET_HEADER || len == CUT {
                continue;
            }
            let slot = area.slot(n.nic.rx, n.rx_tail);
            if frames != i {
                let from = area.slot(n.nic.rx, n.rx_tail.wrapping_add((i - frames) as u32));
                let src = mem
                    .slice(from + SLOT_OFF_FRAME, len as u64, Access::Read)
                    .map_err(guest_access(n.nic.handle))?;
                let dst = mem
                    .slice(slot + SLOT_OFF_FRAME, len as u64, Access::Write)
                    .map_err(guest_access(n.nic.handle))?;
                src.copy_to_volatile_slice(dst);
            }
            let _ = mem.store_u32(slot, len as u32, Ordering::Relaxed);
            n.rx_tail = n.rx_tail.wrapping_add(1);
            frames += 1;
        }
        used += frames as u32;
        received += frames;
        if n.peer_closed || got < want {
            break;
        }
        if frames == 0 {
            // A whole batch of messages that are no frame, and maybe more behind it: read on
            // after the short retry (reported like a full ring), not after the next edge.
            if received > 0 {
                let _ = mem.store_u32(n.nic.rx + RING_OFF_TAIL, n.rx_tail, Ordering::Release);
            }
            return Ok((received, true));
        }
    }
    if received > 0 {
        let _ = mem.store_u32(n.nic.rx + RING_OFF_TAIL, n.rx_tail, Ordering::Release);
    }
    Ok((received, used == area.slots))
}

/// A message longer than its buffer, in [`recv_frames`]'s lengths.
const CUT: usize = usize::MAX;

/// Reads up to `bufs.len()` messages from `fd` without waiting, message `i` into `bufs[i]`, its
/// length into `lens[i]` ([`CUT`] for a message longer than `bufs[i]`, which a batch read
/// reports; a single read(2), on a TAP, cuts silently). Returns how many were read (0 if none
/// waited); an error only for a batch read that failed otherwise.
fn recv_frames(
    fd: RawFd,
    bufs: &[libc::iovec],
    lens: &mut [usize; BATCH],
    batched: bool,
) -> std::io::Result<usize> {
    if !batched {
        // SAFETY: the iovec describes guest memory checked writable by the caller; read(2)
        // writes at most iov_len bytes there.
        let rc = unsafe { libc::read(fd, bufs[0].iov_base, bufs[0].iov_len) };
        lens[0] = rc.max(0) as usize;
        return Ok(usize::from(rc > 0));
    }
    let mut msgs = message_headers(bufs);
    // SAFETY: each of the first bufs.len() (<= BATCH) headers points at one iovec describing
    // guest memory checked writable by the caller; the kernel writes at most iov_len bytes to
    // each and fills in msg_len and msg_flags. No address or control buffer is given.
    let rc = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            bufs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::Interrupted => Ok(0),
            _ => Err(e),
        };
    }
    let got = rc as usize;
    for (len, m) in lens.iter_mut().zip(&msgs[..got]) {
        let cut = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        *len = if cut { CUT } else { m.msg_len as usize };
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_larger_than_memory_plan_at_zero_instead_of_wrapping() {
        // A TAP with a 64 KiB MTU on an 8 MiB guest: 256 slots of 128 KiB, both ways.
        let a = RingArea::plan(&[(1, 3, 65535 + 14)], 8 << 20);
        assert_eq!(a.base, 0);
        assert!(a.size > 8 << 20);
    }

    #[test]
    fn plan_fits_below_end_and_is_aligned() {
        let a = RingArea::plan(&[(1, 3, 1514), (2, 4, 9014)], 64 << 20);
        assert_eq!(a.base % AREA_ALIGN, 0);
        assert_eq!(a.base + a.size, 64 << 20);
        assert_eq!(a.slot_size, 16384);
        let last = a.nics[1];
        assert!(last.rx + ring_bytes(a.slots, a.slot_size) <= a.base + a.size);
        assert!(a.nics[0].rx + ring_bytes(a.slots, a.slot_size) <= a.nics[1].tx);
    }

    #[test]
    fn host_moves_frames_and_refuses_corrupt_indices() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        let area = RingArea::plan(&[(1, theirs.as_raw_fd(), 1514)], 16 << 20);
        area.write_header(&mem).unwrap();
        let nic = area.nics[0];
        let mut st = NicState::new(nic, None);
        assert!(st.batched, "a datagram socket moves frames in batches");

        // Guest queues two frames, one of a bad length (dropped).
        let frame = [0xabu8; 60];
        let s0 = area.slot(nic.tx, 0);
        mem.store_u32(s0, 60, Ordering::Relaxed).unwrap();
        mem.setup_write(s0 + 4, &frame).unwrap();
        mem.store_u32(area.slot(nic.tx, 1), 5000, Ordering::Relaxed)
            .unwrap();
        mem.store_u32(nic.tx + RING_OFF_TAIL, 2, Ordering::Release)
            .unwrap();
        assert_eq!(drain_tx(&mem, &area, &mut st).unwrap(), (2, false));
        let mut buf = [0u8; 2048];
        assert_eq!(ours.recv(&mut buf).unwrap(), 60);
        ours.set_nonblocking(true).unwrap();
        assert!(
            ours.recv(&mut buf).is_err(),
            "the bad-length frame must not be sent"
        );
        assert_eq!(
            mem.load_u32(nic.tx + RING_OFF_HEAD, Ordering::Acquire)
                .unwrap(),
            2
        );

        // Host receives a frame into the RX ring.
        ours.send(&[0x11; 42]).unwrap();
        assert_eq!(fill_rx(&mem, &area, &mut st).unwrap(), (1, false));
        assert_eq!(
            mem.load_u32(area.slot(nic.rx, 0), Ordering::Relaxed)
                .unwrap(),
            42
        );
        assert_eq!(area.rx_ready(&mem), 1 << 1);

        // A guest that claims more frames than slots is stopped.
        mem.store_u32(nic.tx + RING_OFF_TAIL, 2 + SLOTS + 1, Ordering::Release)
            .unwrap();
        assert!(drain_tx(&mem, &area, &mut st).is_err());
        mem.store_u32(nic.rx + RING_OFF_HEAD, 100, Ordering::Release)
            .unwrap();
        assert!(fill_rx(&mem, &area, &mut st).is_err());
    }

    #[test]
    fn a_full_host_socket_keeps_the_rest_queued_in_order() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        ours.set_nonblocking(true).unwrap();
        let area = RingArea::plan(&[(1, theirs.as_raw_fd(), 1514)], 16 << 20);
        let mut st = NicState::new(area.nics[0], None);
        let tx = area.nics[0].tx;
        // A full ring of 1514-byte frames, numbered, with one of a bad length among them.
        for i in 0..SLOTS {
            let slot = area.slot(tx, i);
            let len = if i == 5 { 3 } else { 1514 };
            mem.store_u32(slot, len, Ordering::Relaxed).unwrap();
            mem.setup_write(slot + 4, &i.to_le_bytes()).unwrap();
        }
        mem.store_u32(tx + RING_OFF_TAIL, SLOTS, Ordering::Release)
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 2048];
        for _ in 0..SLOTS {
            let (_, stalled) = drain_tx(&mem, &area, &mut st).unwrap();
            while let Ok(n) = ours.recv(&mut buf) {
                assert_eq!(n, 1514);
                seen.push(u32::from_le_bytes(buf[..4].try_into().unwrap()));
            }
            if !stalled {
                break;
            }
        }
        let want: Vec<u32> = (0..SLOTS).filter(|&i| i != 5).collect();
        assert_eq!(seen, want, "every good frame once, in order");
        assert_eq!(st.tx_head, SLOTS);
    }

    #[test]
    fn frames_cross_a_fabric_ports_rings_both_ways() {
        use sturdy_port_ring::{PortRings, MAX_FRAME};
        let mem = GuestMemory::new(16 << 20).unwrap();
        let (fabric_end, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        fabric_end.set_nonblocking(true).unwrap();
        let (mut fabric, file) = PortRings::create().unwrap();
        let monitor = PortRings::open(file).unwrap();
        let area = RingArea::plan(&[(1, theirs.as_raw_fd(), 1514)], 16 << 20);
        let nic = area.nics[0];
        let port = FabricRings {
            rings: monitor,
            socket: OwnedFd::from(theirs.try_clone().unwrap()),
        };
        let mut st = NicState::new(nic, Some(port));

        // The guest queues a full ring, one frame of a bad length among them (dropped): the
        // fabric reads the others from the port ring, in order.
        for i in 0..SLOTS {
            let slot = area.slot(nic.tx, i);
            let len = if i == 5 { 3 } else { 100 };
            mem.store_u32(slot, len, Ordering::Relaxed).unwrap();
            mem.setup_write(slot + 4, &i.to_le_bytes()).unwrap();
        }
        mem.store_u32(nic.tx + RING_OFF_TAIL, SLOTS, Ordering::Release)
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; MAX_FRAME];
        loop {
            let (_, stalled) = drain_tx_to_port(&mem, &area, &mut st).unwrap();
            while let Some(sturdy_port_ring::Popped::Frame(n)) = fabric.pop(&mut buf).unwrap() {
                assert_eq!(n, 100);
                seen.push(u32::from_le_bytes(buf[..4].try_into().unwrap()));
            }
            fabric.release();
            if !stalled {
                break;
            }
        }
        let want: Vec<u32> = (0..SLOTS).filter(|&i| i != 5).collect();
        assert_eq!(seen, want, "every good frame once, in order");
        assert_eq!(
            mem.load_u32(nic.tx + RING_OFF_HEAD, Ordering::Acquire)
                .unwrap(),
            SLOTS
        );

        // A frame sent on the socket before the rings were served, a doorbell (dropped), then
        // frames on the ring: all in the guest's RX ring, in that order.
        fabric_end.send(&[0x11; 60]).unwrap();
        fabric_end.send(&[sturdy_port_ring::DOORBELL]).unwrap();
        assert!(fabric.push(&[0x22; 1514]));
        assert!(
            fabric.push(&[0x33; 1515]),
            "longer than the NIC's MTU allows"
        );
        assert!(fabric.push(&[0x44; 42]));
        fabric.publish();
        assert_eq!(fill_rx_from_port(&mem, &area, &mut st).unwrap(), (3, false));
        let lens: Vec<u32> = (0..3)
            .map(|i| {
                mem.load_u32(area.slot(nic.rx, i), Ordering::Relaxed)
                    .unwrap()
            })
            .collect();
        assert_eq!(lens, [60, 1514, 42]);
        let mut first = [0u8; 1];
        mem.setup_read(area.slot(nic.rx, 2) + 4, &mut first)
            .unwrap();
        assert_eq!(first[0], 0x44);
    }

    /// A connected SOCK_SEQPACKET pair, as a fabric port's (a datagram socket never reports its
    /// peer's close).
    fn seqpacket_pair() -> (
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::UnixDatagram,
    ) {
        use std::os::fd::FromRawFd;
        let mut fds = [0i32; 2];
        // SAFETY: socketpair writes two descriptors into `fds`, a valid [i32; 2].
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: two fresh descriptors nobody else owns; send/recv on a SOCK_SEQPACKET socket
        // behave as on a datagram socket.
        unsafe {
            (
                std::os::unix::net::UnixDatagram::from_raw_fd(fds[0]),
                std::os::unix::net::UnixDatagram::from_raw_fd(fds[1]),
            )
        }
    }

    /// A NIC on port rings, the fabric's side of them and its end of the socket.
    fn ring_nic(
        mem: &GuestMemory,
    ) -> (
        RingArea,
        NicState,
        sturdy_port_ring::PortRings,
        std::os::unix::net::UnixDatagram,
    ) {
        let (fabric_end, theirs) = seqpacket_pair();
        theirs.set_nonblocking(true).unwrap();
        let (fabric, file) = sturdy_port_ring::PortRings::create().unwrap();
        let monitor = sturdy_port_ring::PortRings::open(file).unwrap();
        monitor.set_attached();
        let area = RingArea::plan(&[(1, theirs.as_raw_fd(), 1514)], 16 << 20);
        area.write_header(mem).unwrap();
        let port = FabricRings {
            rings: monitor,
            socket: OwnedFd::from(theirs),
        };
        let st = NicState::new(area.nics[0], Some(port));
        (area, st, fabric, fabric_end)
    }

    #[test]
    fn socket_frames_from_before_the_fabric_switched_are_read_without_waiting_for_epoll() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let (area, mut st, mut fabric, fabric_end) = ring_nic(&mem);
        assert_eq!(fill_rx_from_port(&mem, &area, &mut st).unwrap(), (0, false));
        // Sent on the socket by a fabric that had not seen the monitor attach; no epoll event
        // is looked at between passes of a busy thread.
        fabric_end.send(&[0x11; 60]).unwrap();
        assert_eq!(fill_rx_from_port(&mem, &area, &mut st).unwrap(), (1, false));
        assert!(fabric.send_through_rings());
        fabric_end.send(&[0x22; 60]).unwrap();
        assert!(fabric.push(&[0x33; 60]));
        fabric.publish();
        assert_eq!(fill_rx_from_port(&mem, &area, &mut st).unwrap(), (2, false));
        assert!(
            st.socket_switched,
            "read once after the switch, then only on epoll's word"
        );
    }

    #[test]
    fn a_port_the_fabric_closed_drops_the_guests_frames_instead_of_stalling() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let (area, mut st, mut fabric, fabric_end) = ring_nic(&mem);
        // The port ring is full (the fabric stopped reading), then the fabric closes the port.
        while fabric.push(&[0; 60]) {}
        fabric.publish();
        let tx = area.nics[0].tx;
        let queue = |mem: &GuestMemory, from: u32, to: u32| {
            for i in from..to {
                mem.store_u32(area.slot(tx, i), 60, Ordering::Relaxed)
                    .unwrap();
            }
            mem.store_u32(tx + RING_OFF_TAIL, to, Ordering::Release)
                .unwrap();
        };
        queue(&mem, 0, SLOTS);
        let (sent, stalled) = drain_tx_to_port(&mem, &area, &mut st).unwrap();
        assert_eq!((sent as u32, stalled), (SLOTS, false));
        queue(&mem, SLOTS, SLOTS + 10);
        assert!(
            drain_tx_to_port(&mem, &area, &mut st).unwrap().1,
            "the port ring is full"
        );
        drop(fabric_end);
        st.socket_ready = true;
        fill_rx_from_port(&mem, &area, &mut st).unwrap();
        assert!(st.port.is_none(), "the closed port's rings are let go");
        let (sent, stalled) = drain_tx(&mem, &area, &mut st).unwrap();
        assert_eq!(
            (sent, stalled),
            (10, false),
            "dropped, as on a link that is down"
        );
        drop(fabric);
    }

    /// CPU time (clock ticks) of this process's NIC I/O threads.
    fn io_thread_ticks() -> u64 {
        testkit::thread_ticks(std::process::id(), "sturdy-hvt-io").expect("an I/O thread")
    }

    /// A guest that does not read while the fabric has frames for it: the I/O thread retries
    /// every millisecond and sleeps in between, as for a full host socket.
    #[test]
    fn frames_waiting_for_a_full_guest_ring_do_not_make_the_io_thread_spin() {
        let mem = Arc::new(GuestMemory::new(16 << 20).unwrap());
        let (area, st, mut fabric, fabric_end) = ring_nic(&mem);
        mem.store_u32(area.base + OFF_GUEST_ENABLED, 1, Ordering::Release)
            .unwrap();
        let doorbell = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let wake = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        spawn_io_thread(mem.clone(), Arc::new(area), vec![st.port], doorbell, wake).unwrap();
        // Twice what the guest's ring holds: the rest waits in the port ring.
        let mut pushed = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while pushed < 2 * SLOTS {
            assert!(Instant::now() < deadline, "pushed only {pushed}");
            if fabric.push(&[0x55; 60]) {
                pushed += 1;
            } else {
                if fabric.publish() {
                    sturdy_port_ring::send_doorbell(fabric_end.as_fd()).unwrap();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if fabric.publish() {
            sturdy_port_ring::send_doorbell(fabric_end.as_fd()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        let before = io_thread_ticks();
        std::thread::sleep(Duration::from_secs(2));
        let used = io_thread_ticks() - before;
        // 200 ticks would be a whole CPU; a retry a millisecond costs a few.
        assert!(used < 50, "the I/O thread used {used} of 200 ticks in 2 s");
    }

    #[test]
    fn messages_that_are_no_frame_are_skipped_and_the_frames_after_them_kept() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        let area = RingArea::plan(&[(1, theirs.as_raw_fd(), 1514)], 16 << 20);
        let nic = area.nics[0];
        let mut st = NicState::new(nic, None);
        // Two slots before the ring's end: the frames wrap around it.
        let start = SLOTS - 2;
        st.rx_tail = start;
        mem.store_u32(nic.rx + RING_OFF_HEAD, start, Ordering::Release)
            .unwrap();
        // A frame, an empty message, a frame, one longer than the NIC's frames, a frame.
        ours.send(&[0xa1; 60]).unwrap();
        ours.send(&[]).unwrap();
        ours.send(&[0xb2; 70]).unwrap();
        ours.send(&[0xee; 3000]).unwrap();
        ours.send(&[0xc3; 80]).unwrap();
        assert_eq!(fill_rx(&mem, &area, &mut st).unwrap(), (3, false));
        for (i, (len, byte)) in [(60, 0xa1), (70, 0xb2), (80, 0xc3)].into_iter().enumerate() {
            let slot = area.slot(nic.rx, start + i as u32);
            assert_eq!(mem.load_u32(slot, Ordering::Relaxed).unwrap(), len);
            let mut frame = vec![0u8; len as usize];
            mem.setup_read(slot + 4, &mut frame).unwrap();
            assert!(frame.iter().all(|&b| b == byte), "slot {i}");
        }
        assert_eq!(
            mem.load_u32(nic.rx + RING_OFF_TAIL, Ordering::Acquire)
                .unwrap(),
            start + 3
        );
    }

    #[test]
    fn a_frame_behind_a_whole_batch_of_messages_that_are_no_frame_is_read_on_the_retry() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let (ours, theirs) = std::os::unix::net::UnixDatagram::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        let area = RingArea::plan(&[(1, theirs.as_raw_fd(), 1514)], 16 << 20);
        let mut st = NicState::new(area.nics[0], None);
        for _ in 0..BATCH {
            ours.send(&[0xee; 1600]).unwrap();
        }
        ours.send(&[0xa1; 60]).unwrap();
        assert_eq!(
            fill_rx(&mem, &area, &mut st).unwrap(),
            (0, true),
            "more may wait: retried shortly, not left for the next edge"
        );
        assert_eq!(fill_rx(&mem, &area, &mut st).unwrap(), (1, false));
    }

    #[test]
    fn a_closed_peer_fills_nothing_and_returns() {
        let mem = GuestMemory::new(16 << 20).unwrap();
        let (ours, theirs) = seqpacket_pair();
        theirs.set_nonblocking(true).unwrap();
        let area = RingArea::plan(&[(1, theirs.as_raw_fd(), 1514)], 16 << 20);
        let mut st = NicState::new(area.nics[0], None);
        ours.send(&[0xa1; 60]).unwrap();
        drop(ours);
        // On a thread with a deadline: a loop that never ends fails instead of hanging.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let first = fill_rx(&mem, &area, &mut st).unwrap();
            let second = fill_rx(&mem, &area, &mut st).unwrap();
            let _ = done.send((first, second, st.peer_closed));
        });
        let (first, second, closed) = result
            .recv_timeout(Duration::from_secs(5))
            .expect("fill_rx returns");
        assert_eq!((first, second), ((1, false), (0, false)));
        assert!(
            closed,
            "the peer's end is seen, and the socket no longer read"
        );
    }
}
