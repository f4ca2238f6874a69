//! Waiting: the POLL hypercall (docs/hvt-abi.md, Hypercalls) is how a guest idles. It blocks in the
//! monitor until a network device has a frame or the timeout passes. With NIC rings, frames already
//! queued are seen without an exit, and the monitor's I/O thread ends the POLL when it queues one.

use core::time::Duration;

use crate::{hypercall, ring, Instant, Net};

/// The network devices that have a frame to read, as [`poll`] reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadySet(u64);

impl ReadySet {
    /// Whether `net` has a frame to read.
    pub fn contains(&self, net: &Net) -> bool {
        net.handle() < 64 && self.0 & (1 << net.handle()) != 0
    }

    /// Whether no device is ready (the timeout passed).
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The raw set: bit `i` for the device with handle `i`.
    pub fn bits(&self) -> u64 {
        self.0
    }
}

/// Waits until a network device is readable or `timeout` has passed; a zero timeout just checks.
pub fn poll(timeout: Duration) -> ReadySet {
    let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    let ready = ring::rx_ready();
    if ready != 0 || (nanos == 0 && ring::active()) {
        return ReadySet(ready);
    }
    // Announce the sleep, then re-check: a frame queued in between is not missed.
    let ready = ring::announce_sleep();
    if ready != 0 {
        ring::end_sleep();
        return ReadySet(ready);
    }
    let bits = hypercall::poll(nanos);
    ring::end_sleep();
    ReadySet(bits | ring::rx_ready())
}

/// Waits until a network device is readable or monotonic time reaches `deadline`.
pub fn poll_until(deadline: Instant) -> ReadySet {
    poll(deadline.duration_since(Instant::now()))
}
