//! Packet capture hooks: frames of a port or of a capability handed to a sink (a pcap file,
//! [`crate::pcap::PcapWriter`], or anything else), without I/O in the switch itself.

use std::time::Instant;

use crate::plan::{Capability, PortId};
use crate::policy::{CapId, Policy};

/// Where captured frames go.
pub trait FrameSink: Send {
    /// One frame, seen at `at`.
    fn frame(&mut self, at: Instant, frame: &[u8]);

    /// Called when the capture stops.
    fn flush(&mut self) {}
}

impl<F: FnMut(Instant, &[u8]) + Send> FrameSink for F {
    fn frame(&mut self, at: Instant, frame: &[u8]) {
        self(at, frame)
    }
}

/// What to capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaptureTarget {
    /// Every frame a port's guest sends (dropped ones too) and every frame sent to it.
    Port(PortId),
    /// Every frame forwarded along a capability's connections, both ways, and the resets the
    /// fabric sends when it cuts them.
    Capability(Capability),
}

/// A capture, to stop it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CaptureId(u64);

struct Capture {
    id: CaptureId,
    target: CaptureTarget,
    /// A capability target resolved in the current policy.
    cap: Option<CapId>,
    sink: Box<dyn FrameSink>,
}

#[derive(Default)]
pub(crate) struct Captures {
    next: u64,
    list: Vec<Capture>,
}

impl std::fmt::Debug for Captures {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|c| (&c.id, &c.target)))
            .finish()
    }
}

impl Captures {
    pub(crate) fn add(
        &mut self,
        target: CaptureTarget,
        sink: Box<dyn FrameSink>,
        policy: &Policy,
    ) -> CaptureId {
        let id = CaptureId(self.next);
        self.next += 1;
        let mut capture = Capture {
            id,
            target,
            cap: None,
            sink,
        };
        resolve(&mut capture, policy);
        self.list.push(capture);
        id
    }

    pub(crate) fn remove(&mut self, id: CaptureId) -> Option<Box<dyn FrameSink>> {
        let i = self.list.iter().position(|c| c.id == id)?;
        let mut capture = self.list.swap_remove(i);
        capture.sink.flush();
        Some(capture.sink)
    }

    /// Re-resolves capability targets after the policy changed.
    pub(crate) fn resolve(&mut self, policy: &Policy) {
        for c in &mut self.list {
            resolve(c, policy);
        }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// A frame of `port`, and of `cap` if it belongs to one.
    pub(crate) fn frame(&mut self, port: PortId, cap: Option<CapId>, at: Instant, frame: &[u8]) {
        for c in &mut self.list {
            let hit = match &c.target {
                CaptureTarget::Port(p) => *p == port,
                CaptureTarget::Capability(_) => cap.is_some() && c.cap == cap,
            };
            if hit {
                c.sink.frame(at, frame);
            }
        }
    }
}

fn resolve(c: &mut Capture, policy: &Policy) {
    c.cap = match &c.target {
        CaptureTarget::Port(_) => None,
        CaptureTarget::Capability(cap) => policy.cap_id(cap),
    };
}
