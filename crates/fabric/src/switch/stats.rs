//! Counters: per port (frames and bytes each way, drops by reason) and per capability (frames
//! and bytes each way, connections opened and cut, drops by reason).

use crate::plan::{Capability, PortId};
use crate::policy::Drops;

/// Frames and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames.
    pub frames: u64,
    /// Bytes, Ethernet header included.
    pub bytes: u64,
}

impl Traffic {
    #[inline]
    pub(crate) fn add(&mut self, len: usize) {
        self.frames += 1;
        self.bytes += len as u64;
    }
}

/// A port's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// What the guest sent (every frame, dropped or not).
    pub rx: Traffic,
    /// What the fabric sent to the guest (forwarded frames, ARP replies, resets).
    pub tx: Traffic,
    /// Frames the guest sent that were dropped, by reason; and `TxFull`, frames for the guest
    /// that its port could not take.
    pub drops: Drops,
}

/// A capability's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapStats {
    /// Frames forwarded from the consumer to the provider.
    pub to_provider: Traffic,
    /// Frames forwarded back from the provider to the consumer.
    pub to_consumer: Traffic,
    /// Connections opened along it.
    pub opened: u64,
    /// Connections the fabric ended: cut when the capability was removed, or timed out while
    /// open (each TCP one with a reset to both ends).
    pub cut: u64,
    /// Frames of its connections that were dropped, by reason.
    pub drops: Drops,
}

/// A snapshot of every counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Each port with a service.
    pub ports: Vec<PortReport>,
    /// Each capability of the plan.
    pub capabilities: Vec<CapReport>,
    /// Frames from ports that have no service in the plan.
    pub unattributed: PortStats,
    /// Connections tracked now.
    pub connections: usize,
}

/// A port's counters in a [`Stats`] snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortReport {
    /// The port.
    pub port: PortId,
    /// The service on it.
    pub service: String,
    /// Its counters.
    pub stats: PortStats,
}

/// A capability's counters in a [`Stats`] snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapReport {
    /// The capability.
    pub capability: Capability,
    /// Its counters.
    pub stats: CapStats,
}
