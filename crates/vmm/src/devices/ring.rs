//! Host side of sturdy's shared-memory NIC rings (`sturdy_abi::ring` has the layout and the
//! protocol): the area in guest memory, and the monitor I/O thread that moves frames between the
//! rings and the NICs' host descriptors, so a busy guest exits only to sleep.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use sturdy_abi::ring::*;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

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
    /// Lays out rings for `nics` (handle, host fd, largest frame) in an area ending at `end`.
    pub fn plan(nics: &[(u64, RawFd, u32)], end: u64) -> RingArea {
        let slot_size = nics
            .iter()
            .map(|n| slot_size(n.2))
            .max()
            .unwrap_or(MIN_SLOT_SIZE);
        let ring = ring_bytes(SLOTS, slot_size);
        let size = (4096 + 2 * ring * nics.len() as u64).div_ceil(AREA_ALIGN) * AREA_ALIGN;
        let base = end - size;
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

/// The I/O thread's view of one NIC: the indices the host owns.
struct NicState {
    nic: RingNic,
    tx_head: u32,
    rx_tail: u32,
}

/// Why the I/O thread stopped the guest.
#[derive(Debug, thiserror::Error)]
#[error("NIC ring of handle {handle}: {what}")]
pub struct RingError {
    handle: u64,
    what: String,
}

/// Starts the I/O thread and waits until it is set up, so that the seccomp filter installed
/// afterwards never meets the thread's start-up system calls. `doorbell` is the guest's
/// ioeventfd; `wake` ends the guest's POLL.
pub fn spawn_io_thread(
    mem: Arc<GuestMemory>,
    area: Arc<RingArea>,
    doorbell: EventFd,
    wake: EventFd,
) -> std::io::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sturdy-hvt-io".into())
        .spawn(move || {
            let result = IoThread::new(&area, &doorbell).and_then(|mut t| {
                let _ = ready_tx.send(Ok(()));
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
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(std::io::Error::other(e)),
        Err(_) => Err(std::io::Error::other("the I/O thread ended during set-up")),
    }
}

const DOORBELL_TOKEN: u64 = u64::MAX;

/// The I/O thread's state: its epoll set, the host-owned ring indices, the event buffer.
struct IoThread {
    epoll: Epoll,
    nics: Vec<NicState>,
    events: Vec<EpollEvent>,
    enabled: bool,
}

fn sys_error(what: &str, e: std::io::Error) -> RingError {
    RingError {
        handle: 0,
        what: format!("{what}: {e}"),
    }
}

impl IoThread {
    fn new(area: &RingArea, doorbell: &EventFd) -> Result<IoThread, RingError> {
        let epoll = Epoll::new().map_err(|e| sys_error("epoll", e))?;
        epoll
            .ctl(
                ControlOperation::Add,
                doorbell.as_raw_fd(),
                EpollEvent::new(EventSet::IN, DOORBELL_TOKEN),
            )
            .map_err(|e| sys_error("epoll_ctl", e))?;
        let nics = area
            .nics
            .iter()
            .map(|&nic| NicState {
                nic,
                tx_head: 0,
                rx_tail: 0,
            })
            .collect();
        Ok(IoThread {
            epoll,
            nics,
            events: vec![EpollEvent::default(); 16],
            enabled: false,
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
                }
                self.enabled = true;
            }
            let mut progress = false;
            let mut stalled = false;
            if self.enabled {
                let mut pushed = false;
                for n in &mut self.nics {
                    let (sent, tx_stalled) = drain_tx(mem, area, n)?;
                    let (received, rx_full) = fill_rx(mem, area, n)?;
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
                continue;
            }
            // Sleep without losing a doorbell: announce, fence, re-check, then wait.
            let sleeping = area.base + OFF_HOST_SLEEPING;
            let _ = mem.store_u32(sleeping, 1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let tx_pending = self.enabled && self.nics.iter().any(|n| tx_tail(mem, n) != n.tx_head);
            if !tx_pending {
                // A full RX ring or a full host socket is retried shortly: the guest may not ring.
                let timeout = if stalled { 1 } else { -1 };
                match self.epoll.wait(timeout, &mut self.events) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(sys_error("epoll_wait", e)),
                }
                let _ = doorbell.read();
            }
            let _ = mem.store_u32(sleeping, 0, Ordering::Relaxed);
        }
    }
}

fn tx_tail(mem: &GuestMemory, n: &NicState) -> u32 {
    mem.load_u32(n.nic.tx + RING_OFF_TAIL, Ordering::Acquire)
        .unwrap_or(n.tx_head)
}

/// Sends the frames the guest queued on `n`'s TX ring. Returns (frames sent, host would block).
fn drain_tx(
    mem: &GuestMemory,
    area: &RingArea,
    n: &mut NicState,
) -> Result<(usize, bool), RingError> {
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
    let mut sent = 0;
    let mut stalled = false;
    while n.tx_head != tail {
        let slot = area.slot(n.nic.tx, n.tx_head);
        let len = mem.load_u32(slot, Ordering::Relaxed).unwrap_or(0);
        // A frame of a bad length is the guest's loss: it is dropped, never sent.
        if (14..=n.nic.max_frame).contains(&len) && len <= area.slot_size - SLOT_OFF_FRAME as u32 {
            let ptr = mem
                .host_ptr(slot + SLOT_OFF_FRAME, u64::from(len), Access::Read)
                .map_err(|e| RingError {
                    handle: n.nic.handle,
                    what: e.to_string(),
                })?;
            // SAFETY: ptr..ptr+len was checked to lie in guest memory; write(2) only reads it.
            let rc = unsafe { libc::write(n.nic.fd, ptr.cast(), len as usize) };
            if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                stalled = true;
                break;
            }
        }
        n.tx_head = n.tx_head.wrapping_add(1);
        sent += 1;
    }
    if sent > 0 {
        let _ = mem.store_u32(n.nic.tx + RING_OFF_HEAD, n.tx_head, Ordering::Release);
    }
    Ok((sent, stalled))
}

/// Reads frames from `n`'s host descriptor into its RX ring. Returns (frames, ring is full).
fn fill_rx(
    mem: &GuestMemory,
    area: &RingArea,
    n: &mut NicState,
) -> Result<(usize, bool), RingError> {
    let head = mem
        .load_u32(n.nic.rx + RING_OFF_HEAD, Ordering::Acquire)
        .unwrap_or(n.rx_tail);
    let mut used = n.rx_tail.wrapping_sub(head);
    if used > area.slots {
        return Err(RingError {
            handle: n.nic.handle,
            what: format!(
                "guest RX head {head} is {used} frames behind tail {} (ring has {} slots)",
                n.rx_tail, area.slots
            ),
        });
    }
    let room = (area.slot_size - SLOT_OFF_FRAME as u32).min(n.nic.max_frame);
    let mut received = 0;
    while used < area.slots {
        let slot = area.slot(n.nic.rx, n.rx_tail);
        let ptr = mem
            .host_ptr(slot + SLOT_OFF_FRAME, u64::from(room), Access::Write)
            .map_err(|e| RingError {
                handle: n.nic.handle,
                what: e.to_string(),
            })?;
        // SAFETY: ptr..ptr+room was checked to lie in guest memory the monitor may write;
        // read(2) writes at most `room` bytes there.
        let rc = unsafe { libc::read(n.nic.fd, ptr.cast(), room as usize) };
        if rc <= 0 {
            break;
        }
        let _ = mem.store_u32(slot, rc as u32, Ordering::Relaxed);
        n.rx_tail = n.rx_tail.wrapping_add(1);
        used += 1;
        received += 1;
    }
    if received > 0 {
        let _ = mem.store_u32(n.nic.rx + RING_OFF_TAIL, n.rx_tail, Ordering::Release);
    }
    Ok((received, used == area.slots))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut st = NicState {
            nic,
            tx_head: 0,
            rx_tail: 0,
        };

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
}
