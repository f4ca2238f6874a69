//! Connection tracking: the connections consumers opened along their capabilities, so that the
//! replies (and only they) may come back.
//!
//! A connection is indexed under both of its directions' 5-tuples (as Linux's conntrack does),
//! so one lookup tells whether a frame belongs to a connection and which way it goes. ICMP echo
//! uses the identifier as the consumer's "port": a request is `(src, id) -> (dst, 0)` and the
//! reply `(dst, 0) -> (src, id)`, the reverse tuple.
//!
//! TCP is followed loosely, as a firewall does (RFC 9293 3.3.2 is the endpoints' business): the
//! handshake in order, then any segment but a SYN, FINs noted each way, an RST ends it. For each
//! direction the end of the sequence space sent so far is kept, so that a connection the fabric
//! cuts can be reset at exactly the sequence number each end expects (RFC 5961 3.2 accepts only
//! that one without a challenge).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use super::{CapId, Map};
use crate::plan::PortId;
use crate::wire::TcpFlags;

/// How long an idle connection is kept, by state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// A TCP handshake in progress.
    pub tcp_handshake: Duration,
    /// An established TCP connection (RFC 5382 REQ-5: at least 2 h 4 min).
    pub tcp_established: Duration,
    /// A TCP connection closed in one direction.
    pub tcp_half_closed: Duration,
    /// A TCP connection closed both ways, kept for the last ACK and retransmitted FINs.
    pub tcp_closed: Duration,
    /// A UDP flow with no reply yet.
    pub udp: Duration,
    /// A UDP flow that has seen replies (RFC 4787 REQ-5: at least 2 min). UDP and ICMP flows
    /// are kept alive by their consumer's frames only (RFC 4787 REQ-6 requires no more): the
    /// first reply starts this timeout, later replies do not extend it.
    pub udp_replied: Duration,
    /// An ICMP echo exchange.
    pub icmp: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            tcp_handshake: Duration::from_secs(30),
            tcp_established: Duration::from_secs(2 * 3600 + 4 * 60),
            tcp_half_closed: Duration::from_secs(300),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(30),
            udp_replied: Duration::from_secs(120),
            icmp: Duration::from_secs(30),
        }
    }
}

/// A direction: from the consumer that opened the connection, or back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Consumer to provider.
    Orig = 0,
    /// Provider to consumer.
    Reply = 1,
}

impl Dir {
    fn other(self) -> Dir {
        match self {
            Dir::Orig => Dir::Reply,
            Dir::Reply => Dir::Orig,
        }
    }
}

/// A 5-tuple: protocol, source address and port, destination address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub src: u32,
    /// Source port (ICMP echo: the identifier for a request, 0 for a reply).
    pub sport: u16,
    /// Destination address.
    pub dst: u32,
    /// Destination port (ICMP echo: 0 for a request, the identifier for a reply).
    pub dport: u16,
}

impl Tuple {
    /// The tuple packed into one integer, the table's key.
    #[inline]
    pub fn key(&self) -> u128 {
        (u128::from(self.proto) << 96)
            | (u128::from(self.src) << 64)
            | (u128::from(self.sport) << 48)
            | (u128::from(self.dst) << 16)
            | u128::from(self.dport)
    }

    /// The other direction's tuple.
    pub fn reverse(&self) -> Tuple {
        Tuple {
            proto: self.proto,
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

/// Where a TCP connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The consumer's SYN went through.
    SynSent,
    /// The provider's SYN-ACK went through.
    SynReceived,
    /// The handshake is over.
    Established,
    /// One side sent FIN.
    HalfClosed,
    /// Both sides sent FIN.
    Closed,
}

/// A TCP connection's tracked state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcp {
    /// Where the connection is.
    pub phase: Phase,
    /// Per direction: the sequence number after the last byte (or SYN, FIN) sent so far.
    pub end: [u32; 2],
    /// Per direction: whether anything has been sent (so `end` is meaningful).
    pub seen: [bool; 2],
    /// Per direction: whether a FIN was sent.
    pub fin: [bool; 2],
}

/// What a segment does to its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Forward it; the connection goes on.
    Continue,
    /// Forward it, then forget the connection (an RST).
    End,
}

/// A segment that does not fit the connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfState;

/// `a` is after `b` in sequence space (RFC 9293 3.4).
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Tcp {
    /// A connection whose consumer just sent SYN with sequence number `seq`.
    pub fn syn(seq: u32) -> Tcp {
        Tcp {
            phase: Phase::SynSent,
            end: [seq.wrapping_add(1), 0],
            seen: [true, false],
            fin: [false, false],
        }
    }

    /// Follows a segment from `dir` with `flags`, sequence number `seq` and `len` bytes of
    /// sequence space (data, SYN, FIN).
    pub fn segment(
        &mut self,
        dir: Dir,
        flags: TcpFlags,
        seq: u32,
        len: u32,
    ) -> Result<Step, OutOfState> {
        if flags.rst() {
            return Ok(Step::End);
        }
        let syn = flags.syn();
        let ack = flags.ack();
        match (self.phase, dir) {
            // A retransmitted SYN.
            (Phase::SynSent | Phase::SynReceived, Dir::Orig) if syn && !ack => {}
            (Phase::SynSent, Dir::Orig) => return Err(OutOfState),
            (Phase::SynSent | Phase::SynReceived, Dir::Reply) if syn && ack => {
                self.phase = Phase::SynReceived;
            }
            (Phase::SynSent, Dir::Reply) => return Err(OutOfState),
            (Phase::SynReceived, _) if !syn => self.phase = Phase::Established,
            (Phase::SynReceived, _) => return Err(OutOfState),
            (_, _) if syn => return Err(OutOfState),
            (_, _) => {}
        }
        if flags.fin() && self.phase != Phase::SynSent {
            self.fin[dir as usize] = true;
            self.phase = if self.fin[dir.other() as usize] {
                Phase::Closed
            } else {
                Phase::HalfClosed
            };
        }
        let d = dir as usize;
        let end = seq.wrapping_add(len);
        if !self.seen[d] || seq_after(end, self.end[d]) {
            self.end[d] = end;
            self.seen[d] = true;
        }
        Ok(Step::Continue)
    }

    /// Whether the endpoints still believe the connection open (so cutting it means resets).
    pub fn is_open(&self) -> bool {
        self.phase != Phase::Closed
    }

    fn timeout(&self, t: &Timeouts) -> Duration {
        match self.phase {
            Phase::SynSent | Phase::SynReceived => t.tcp_handshake,
            Phase::Established => t.tcp_established,
            Phase::HalfClosed => t.tcp_half_closed,
            Phase::Closed => t.tcp_closed,
        }
    }
}

/// The protocol state of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// TCP.
    Tcp(Tcp),
    /// UDP; `replied` once the provider answered.
    Udp {
        /// Whether a datagram came back.
        replied: bool,
    },
    /// ICMP echo.
    Icmp,
}

/// A tracked connection.
#[derive(Clone, Debug)]
pub struct Conn {
    /// The tuple of the consumer's first frame.
    pub orig: Tuple,
    /// The capability it was opened along.
    pub cap: CapId,
    /// The consumer's and the provider's ports, by [`Dir`] of the frames they send.
    pub ports: [PortId; 2],
    /// The protocol state.
    pub state: State,
    /// When it is forgotten unless a frame comes.
    pub expires: Instant,
}

impl Conn {
    /// How long it lives after a frame, in its state.
    pub fn timeout(&self, t: &Timeouts) -> Duration {
        match &self.state {
            State::Tcp(tcp) => tcp.timeout(t),
            State::Udp { replied: false } => t.udp,
            State::Udp { replied: true } => t.udp_replied,
            State::Icmp => t.icmp,
        }
    }
}

/// A connection's place in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(u32);

/// Why a connection could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// The table holds its maximum.
    Table,
    /// The consumer's port holds its share.
    Port,
}

/// The table of connections.
#[derive(Debug)]
pub struct Conntrack {
    /// Both tuples of every connection -> slot and direction (`slot << 1 | dir`).
    index: Map<u128, u32>,
    slots: Vec<Option<Conn>>,
    free: Vec<u32>,
    /// Connections by consumer port.
    per_port: Vec<u32>,
    len: usize,
    max: usize,
    max_per_port: u32,
}

impl Conntrack {
    /// An empty table of at most `max` connections, `max_per_port` opened by one port.
    pub fn new(max: usize, max_per_port: u32) -> Conntrack {
        Conntrack {
            index: Map::default(),
            slots: Vec::new(),
            free: Vec::new(),
            per_port: Vec::new(),
            len: 0,
            max,
            max_per_port,
        }
    }

    /// How many connections there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The connection `tuple` belongs to, and which way it goes.
    #[inline]
    pub fn find(&self, tuple: &Tuple) -> Option<(Slot, Dir)> {
        let v = *self.index.get(&tuple.key())?;
        let dir = if v & 1 == 0 { Dir::Orig } else { Dir::Reply };
        Some((Slot(v >> 1), dir))
    }

    /// The connection in `slot`.
    pub fn get(&self, slot: Slot) -> &Conn {
        self.slots[slot.0 as usize].as_ref().expect("live slot")
    }

    /// The connection in `slot`, to update.
    pub fn get_mut(&mut self, slot: Slot) -> &mut Conn {
        self.slots[slot.0 as usize].as_mut().expect("live slot")
    }

    /// Adds `conn`, unless the table or its consumer's share is full.
    pub fn insert(&mut self, conn: Conn) -> Result<Slot, Full> {
        if self.len >= self.max {
            return Err(Full::Table);
        }
        let consumer = usize::from(conn.ports[Dir::Orig as usize].0);
        if self.per_port.len() <= consumer {
            self.per_port.resize(consumer + 1, 0);
        }
        if self.per_port[consumer] >= self.max_per_port {
            return Err(Full::Port);
        }
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(conn.orig.key(), slot << 1);
        self.index
            .insert(conn.orig.reverse().key(), (slot << 1) | 1);
        self.slots[slot as usize] = Some(conn);
        self.per_port[consumer] += 1;
        self.len += 1;
        Ok(Slot(slot))
    }

    /// Removes the connection in `slot` and returns it.
    pub fn remove(&mut self, slot: Slot) -> Conn {
        let conn = self.slots[slot.0 as usize].take().expect("live slot");
        self.index.remove(&conn.orig.key());
        self.index.remove(&conn.orig.reverse().key());
        self.per_port[usize::from(conn.ports[Dir::Orig as usize].0)] -= 1;
        self.free.push(slot.0);
        self.len -= 1;
        conn
    }

    /// The slots of every connection.
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| Slot(i as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYN: TcpFlags = TcpFlags::SYN;
    const SYN_ACK: TcpFlags = TcpFlags(0x12);
    const ACK: TcpFlags = TcpFlags::ACK;
    const FIN_ACK: TcpFlags = TcpFlags(0x11);
    const RST: TcpFlags = TcpFlags::RST;

    fn established() -> Tcp {
        let mut t = Tcp::syn(100);
        t.segment(Dir::Reply, SYN_ACK, 5000, 1).unwrap();
        t.segment(Dir::Orig, ACK, 101, 0).unwrap();
        t
    }

    #[test]
    fn handshake_data_and_close() {
        let mut t = Tcp::syn(100);
        assert_eq!(t.end[0], 101);
        assert_eq!(
            t.segment(Dir::Orig, SYN, 100, 1),
            Ok(Step::Continue),
            "retransmitted SYN"
        );
        assert_eq!(t.segment(Dir::Reply, SYN_ACK, 5000, 1), Ok(Step::Continue));
        assert_eq!(t.phase, Phase::SynReceived);
        assert_eq!(t.end[1], 5001);
        t.segment(Dir::Orig, ACK, 101, 10).unwrap();
        assert_eq!(t.phase, Phase::Established);
        assert_eq!(t.end[0], 111);
        // An old retransmission does not move the end back.
        t.segment(Dir::Orig, ACK, 101, 5).unwrap();
        assert_eq!(t.end[0], 111);
        t.segment(Dir::Orig, FIN_ACK, 111, 1).unwrap();
        assert_eq!(t.phase, Phase::HalfClosed);
        t.segment(Dir::Reply, ACK, 5001, 300).unwrap();
        assert_eq!(t.phase, Phase::HalfClosed, "data on the open side");
        t.segment(Dir::Reply, FIN_ACK, 5301, 1).unwrap();
        assert_eq!(t.phase, Phase::Closed);
        assert!(!t.is_open());
        assert_eq!(t.end, [112, 5302]);
    }

    #[test]
    fn out_of_state_segments() {
        let mut t = Tcp::syn(100);
        assert_eq!(
            t.segment(Dir::Orig, ACK, 101, 10),
            Err(OutOfState),
            "data before SYN-ACK"
        );
        assert_eq!(
            t.segment(Dir::Reply, ACK, 1, 0),
            Err(OutOfState),
            "ACK without SYN"
        );
        assert_eq!(
            t.segment(Dir::Reply, SYN, 1, 1),
            Err(OutOfState),
            "simultaneous open"
        );
        let mut e = established();
        assert_eq!(e.segment(Dir::Orig, SYN, 7, 1), Err(OutOfState));
        assert_eq!(e.segment(Dir::Reply, SYN_ACK, 7, 1), Err(OutOfState));
        // Sequence wrap-around.
        let mut w = Tcp::syn(u32::MAX - 1);
        assert_eq!(w.end[0], u32::MAX);
        w.segment(Dir::Reply, SYN_ACK, 9, 1).unwrap();
        w.segment(Dir::Orig, ACK, u32::MAX, 10).unwrap();
        assert_eq!(w.end[0], 9);
    }

    #[test]
    fn reset_ends_in_any_state() {
        assert_eq!(
            Tcp::syn(1).segment(Dir::Reply, RST | ACK, 0, 0),
            Ok(Step::End)
        );
        assert_eq!(established().segment(Dir::Orig, RST, 0, 0), Ok(Step::End));
    }

    fn conn(sport: u16, consumer: u16) -> Conn {
        Conn {
            orig: Tuple {
                proto: 17,
                src: 0x0a4d_0002,
                sport,
                dst: 0x0a4d_0003,
                dport: 53,
            },
            cap: CapId(0),
            ports: [PortId(consumer), PortId(9)],
            state: State::Udp { replied: false },
            expires: Instant::now(),
        }
    }

    #[test]
    fn finds_both_directions_and_forgets_on_removal() {
        let mut t = Conntrack::new(10, 10);
        let c = conn(1000, 0);
        let orig = c.orig;
        let slot = t.insert(c).unwrap();
        assert_eq!(t.find(&orig), Some((slot, Dir::Orig)));
        assert_eq!(t.find(&orig.reverse()), Some((slot, Dir::Reply)));
        assert_eq!(
            t.find(&Tuple {
                sport: 1001,
                ..orig
            }),
            None
        );
        assert_eq!(t.len(), 1);
        t.remove(slot);
        assert_eq!(t.find(&orig), None);
        assert_eq!(t.find(&orig.reverse()), None);
        assert!(t.is_empty());
        // The slot is reused.
        assert_eq!(t.insert(conn(1002, 0)).unwrap(), slot);
    }

    #[test]
    fn limits_the_table_and_each_port() {
        let mut t = Conntrack::new(3, 2);
        t.insert(conn(1, 0)).unwrap();
        t.insert(conn(2, 0)).unwrap();
        assert_eq!(t.insert(conn(3, 0)), Err(Full::Port));
        t.insert(conn(4, 1)).unwrap();
        assert_eq!(t.insert(conn(5, 2)), Err(Full::Table));
    }
}
