//! Network devices (manifest type NET_BASIC): raw Ethernet frames. Under sturdy-hvt they move
//! through shared-memory rings ([`ring`](crate::ring)) without an exit per frame; elsewhere one
//! NET_READ or NET_WRITE hypercall per frame (docs/hvt-abi.md, Hypercalls). Wait for frames with
//! [`poll`](crate::poll).

use core::fmt;

use sturdy_abi::mft::MFT_DEV_NET_BASIC;

use crate::ring::NicRing;
use crate::{hypercall, manifest, ring, Error};

/// Bytes of Ethernet header (destination, source, EtherType) on top of the MTU.
const ETHERNET_HEADER_LEN: usize = 14;

/// A network device declared in the manifest with `net "NAME"`.
#[derive(Debug)]
pub struct Net {
    handle: u64,
    mac: MacAddr,
    mtu: usize,
    ring: Option<NicRing>,
}

impl Net {
    /// Opens the network device `name` from the manifest.
    pub fn open(name: &str) -> Result<Net, Error> {
        let (handle, entry) = manifest::open(name, MFT_DEV_NET_BASIC)?;
        Ok(Net {
            handle,
            mac: MacAddr(entry.mac()),
            mtu: usize::from(entry.mtu()),
            ring: ring::open(handle),
        })
    }

    /// The device's MAC address, chosen by the monitor.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The MTU: the largest payload of a frame, Ethernet header not included.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The largest frame, header included: the size of a receive buffer that never truncates.
    pub fn max_frame_len(&self) -> usize {
        self.mtu + ETHERNET_HEADER_LEN
    }

    /// The device's handle, for raw [`hypercall`](crate::hypercall)s and [`ReadySet`](crate::ReadySet).
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// Receives one frame into `buf` and returns its length, or [`Error::Again`] if none is
    /// waiting. `buf` must hold [`max_frame_len`](Net::max_frame_len) bytes.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.len() < self.max_frame_len() {
            return Err(Error::BadRequest);
        }
        if let Some(ring) = &self.ring {
            return ring.read(buf).ok_or(Error::Again);
        }
        let (ret, len) = hypercall::net_read(self.handle, buf);
        Error::check(ret).map(|()| len)
    }

    /// Sends one frame: an Ethernet header and at most [`mtu`](Net::mtu) bytes of payload.
    pub fn write(&self, frame: &[u8]) -> Result<(), Error> {
        if frame.len() < ETHERNET_HEADER_LEN || frame.len() > self.max_frame_len() {
            return Err(Error::BadRequest);
        }
        if let Some(ring) = &self.ring {
            return if ring.write(frame) {
                Ok(())
            } else {
                Err(Error::Again)
            };
        }
        Error::check(hypercall::net_write(self.handle, frame))
    }

    /// Whether [`write`](Net::write) can take a frame now (false while the TX ring is full).
    pub fn can_write(&self) -> bool {
        self.ring.as_ref().is_none_or(NicRing::can_write)
    }

    /// Whether a received frame is waiting (always true without rings: then only
    /// [`read`](Net::read) can tell).
    pub fn can_read(&self) -> bool {
        self.ring.as_ref().is_none_or(NicRing::rx_pending)
    }
}

/// A MAC address, displayed as `02:00:00:00:00:01`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}
