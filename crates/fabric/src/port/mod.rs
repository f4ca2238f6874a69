//! Port I/O: a guest's fabric port is one end of a SOCK_SEQPACKET socket pair, whose other end
//! the monitor attaches as a guest NIC (`sturdy-hvt --net:NAME=@FD`, one message = one Ethernet
//! frame, as `crates/vmm/src/devices/net.rs` reads and writes them); and [`spawn`], the thread
//! that runs a [`Fabric`](crate::Fabric) over its ports. The gateway's port is local instead:
//! served on that thread, its frames passed by function call (`runner.rs`, `LocalPort`).
//!
//! A port made by [`Port::pair`] also offers its monitor shared-memory rings
//! (`sturdy_port_ring`): once the monitor serves them, frames cross in memory both ways, with
//! no system call while both sides are awake, and the socket carries only doorbells for a side
//! that sleeps. The socket stays the port's identity and its end-of-life signal (the monitor's
//! exit closes it).
//!
//! The switch stays free of I/O; this module only moves frames: it reads a batch from each
//! ready socket port (recvmmsg), runs them through the switch, queues what comes out per
//! destination port and writes each queue in one go (sendmmsg). A frame for a port that cannot take it (its
//! monitor is not reading) is dropped and counted, never waited for: one stuck guest must not
//! stall the others. The only `unsafe` code of the crate is in `sys.rs`, each system call
//! wrapped in a safe function.

mod runner;
pub(crate) mod sys;

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use sturdy_port_ring::PortRings;

pub use runner::{spawn, FabricHandle, RunError};
pub(crate) use runner::{Link, LocalId, LocalPort};

/// The largest message a port reads whole; anything longer is counted as oversized (a valid
/// frame is at most MTU + 14 = 1514 bytes).
pub const RECV_BUFFER: usize = 2048;

/// A fabric port's end of its socket pair, and of the rings offered on it.
#[derive(Debug)]
pub struct Port {
    fd: OwnedFd,
    rings: Option<PortRings>,
}

impl Port {
    /// A new socket pair: the fabric's end as a port, and the guest's end to hand to the
    /// monitor as `--net:NAME=@FD`, with shared-memory rings offered on it (its first message;
    /// sturdy-hvt takes it). Both are close-on-exec: the spawner clears the flag on the guest's
    /// end in the monitor's child only (between fork and exec), so no other child inherits it.
    /// If the rings cannot be made (no memory file, no mapping), the port works on the socket
    /// alone, with a warning.
    pub fn pair() -> io::Result<(Port, OwnedFd)> {
        let (mut port, theirs) = Port::socket_pair()?;
        match sturdy_port_ring::create_and_offer(port.fd.as_fd()) {
            Ok(rings) => port.rings = Some(rings),
            Err(e) => tracing::warn!(
                target: "sturdy_fabric::port",
                "cannot offer shared-memory rings on a new port ({e}); its frames cross the socket"
            ),
        }
        Ok((port, theirs))
    }

    /// A socket pair without rings: for a peer that speaks the socket itself (a test driver);
    /// its first message is a frame.
    pub fn socket_pair() -> io::Result<(Port, OwnedFd)> {
        let (ours, theirs) = sys::seqpacket_pair()?;
        // Room for bursts both ways (the kernel caps it at net.core.wmem_max).
        sys::set_send_buffer(&ours, 1 << 20);
        sys::set_send_buffer(&theirs, 1 << 20);
        Ok((
            Port {
                fd: ours,
                rings: None,
            },
            theirs,
        ))
    }

    /// A port over `fd`, which must be a SOCK_SEQPACKET socket (made non-blocking).
    pub fn from_fd(fd: OwnedFd) -> io::Result<Port> {
        if sys::socket_type(&fd)? != libc::SOCK_SEQPACKET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a fabric port must be a SOCK_SEQPACKET socket (one message per frame)",
            ));
        }
        sys::set_nonblocking(&fd)?;
        Ok(Port { fd, rings: None })
    }

    /// The rings offered on the port, if any (served once the monitor says it is attached).
    pub(crate) fn rings(&mut self) -> Option<&mut PortRings> {
        self.rings.as_mut()
    }

    /// Wakes the monitor, which announced it sleeps, for frames on the rings.
    pub(crate) fn ring_doorbell(&self) {
        // A closed peer shows as the socket's hang-up; nothing to do here.
        let _ = sturdy_port_ring::send_doorbell(self.fd.as_fd());
    }

    /// Receives up to `bufs.len()` frames without waiting; `lens[i]` is frame `i`'s length, more
    /// than [`RECV_BUFFER`] if it did not fit. `WouldBlock` if none was waiting.
    pub fn recv_batch(
        &self,
        bufs: &mut [[u8; RECV_BUFFER]],
        lens: &mut [usize],
    ) -> io::Result<usize> {
        sys::recv_batch(&self.fd, bufs, lens)
    }

    /// Sends `frames` without waiting; returns how many the peer's queue took.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        sys::send_batch(&self.fd, frames)
    }
}

impl AsRawFd for Port {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn a_pair_carries_one_frame_per_message_both_ways() {
        let (port, guest) = Port::socket_pair().unwrap();
        // The guest's end as the monitor uses it: plain send and recv.
        let guest = UnixDatagram::from(guest);
        guest.send(&[1; 60]).unwrap();
        guest.send(&[2; 1514]).unwrap();
        guest.send(&[3; 3000]).unwrap();
        let mut bufs = vec![[0u8; RECV_BUFFER]; 8];
        let mut lens = [0usize; 8];
        assert_eq!(port.recv_batch(&mut bufs, &mut lens).unwrap(), 3);
        assert_eq!(lens[..2], [60, 1514]);
        assert!(
            lens[2] > RECV_BUFFER,
            "a cut message is reported as oversized"
        );
        assert!(bufs[1][..1514].iter().all(|b| *b == 2));
        let e = port.recv_batch(&mut bufs, &mut lens).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);

        assert_eq!(port.send_batch(&[&[9; 42], &[8; 100]]).unwrap(), 2);
        let mut buf = [0u8; 2048];
        assert_eq!(guest.recv(&mut buf).unwrap(), 42);
        assert_eq!(guest.recv(&mut buf).unwrap(), 100);
    }

    #[test]
    fn a_full_peer_takes_what_it_can_and_a_closed_one_is_an_error() {
        let (port, guest) = Port::socket_pair().unwrap();
        let frame = [0u8; 1514];
        let frames: Vec<&[u8]> = vec![&frame; 4096];
        let sent = port.send_batch(&frames).unwrap();
        assert!(sent > 0 && sent < 4096, "sent {sent}");
        drop(guest);
        let e = port.send_batch(&frames[..1]).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET)),
            "{e}"
        );
    }

    #[test]
    fn a_pair_offers_rings_as_its_first_message() {
        let (mut port, guest) = Port::pair().unwrap();
        let file = sturdy_port_ring::take_offer(guest.as_fd())
            .unwrap()
            .expect("the offer");
        let monitor = PortRings::open(file).unwrap();
        assert!(!port.rings().unwrap().attached());
        monitor.set_attached();
        assert!(port.rings().unwrap().attached());
        assert!(Port::socket_pair().unwrap().0.rings().is_none());
    }

    #[test]
    fn only_seqpacket_sockets_are_ports() {
        let (a, _b) = UnixDatagram::pair().unwrap();
        let e = Port::from_fd(OwnedFd::from(a)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let (_, theirs) = Port::pair().unwrap();
        Port::from_fd(theirs).unwrap();
    }
}
