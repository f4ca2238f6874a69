//! smoltcp's view of a NIC: [`phy::Device`] over the SDK's [`Net`].
//!
//! One frame per receive and per transmit; buffers are allocated once, the size of the largest
//! frame. A frame the monitor refuses to send (or that finds the transmit ring full, when it
//! answers a received one) is dropped, as a network may drop it: TCP retransmits, UDP is
//! unreliable anyway.

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::{Net, ReadySet};

pub(super) struct Device {
    net: Net,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl Device {
    pub(super) fn new(net: Net) -> Device {
        let len = net.max_frame_len();
        Device {
            net,
            rx: vec![0; len],
            tx: vec![0; len],
        }
    }

    pub(super) fn net(&self) -> &Net {
        &self.net
    }

    /// Whether frames may be waiting: the NIC is in `ready` or, without a ready set (the run
    /// loop did not wait in POLL), may have received one since; and its ring (if it has one)
    /// is not empty.
    pub(super) fn may_have_frames(&self, ready: Option<ReadySet>) -> bool {
        self.net.can_read() && ready.is_none_or(|set| set.contains(&self.net))
    }
}

impl phy::Device for Device {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        match self.net.read(&mut self.rx) {
            Ok(len) => Some((
                RxToken(&self.rx[..len]),
                TxToken {
                    net: &self.net,
                    buf: &mut self.tx,
                },
            )),
            // AGAIN: nothing waiting; any other error: no frame either.
            Err(_) => None,
        }
    }

    /// No token while the NIC's transmit ring is full: smoltcp keeps the data and tries again
    /// on a later round.
    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        self.net.can_write().then_some(TxToken {
            net: &self.net,
            buf: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        // For Ethernet, smoltcp counts the header in the MTU.
        caps.max_transmission_unit = self.net.max_frame_len();
        caps
    }
}

pub(super) struct RxToken<'a>(&'a [u8]);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

pub(super) struct TxToken<'a> {
    net: &'a Net,
    buf: &'a mut [u8],
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let frame = &mut self.buf[..len];
        let result = f(frame);
        // Dropped if refused (see the module documentation).
        _ = self.net.write(frame);
        result
    }
}
