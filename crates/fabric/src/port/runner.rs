//! The run loop: one thread owns the [`Fabric`] and its ports, waits on epoll, moves frames in
//! batches, expires connections once a second, and takes commands (attach a port, apply a plan,
//! read counters, capture) from a [`FabricHandle`] between batches, so a new plan is in force
//! from the next frame on.
//!
//! A port is a socket (a guest's NIC, through its monitor) or a [`LocalPort`] served on the
//! loop's own thread (the gateway): frames to and from a local port are function calls, with
//! no socket, system call or thread wake-up between it and the switch. A socket port whose
//! monitor serves its shared-memory rings moves its frames through them: the loop reads every
//! such port's ring on each turn (a memory read while it is empty), and before it sleeps it
//! announces so on each, so a monitor rings the socket only then.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sturdy_poll::PollWindow;
use sturdy_port_ring::{Popped, DOORBELL};

use super::sys::{self, Epoll, EventFd};
use super::{Port, RECV_BUFFER};
use crate::plan::{Plan, PlanError, PortId};
use crate::switch::{ApplyReport, CaptureId, CaptureTarget, Fabric, FrameSink, Stats};

/// Frames read from one port before turning to the next (one recvmmsg: a guest's TCP window
/// of 64 KiB is about 45 frames).
const BATCH: usize = 64;

/// Frames queued for one port in one round at most; more are dropped as `TxFull`.
const TX_QUEUE: usize = 512;

/// How often idle connections are swept.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// The longest the run loop polls its ports after the last frame before it sleeps. A sleep and
/// its wake-up cost tens of microseconds on a virtualised host (an idle vCPU halts), once per
/// hop; a flowing exchange (a TCP window, a request and its response through the other guest)
/// brings the next frame within a few hundred microseconds, so polling that long saves the
/// fabric's hop its wake-ups. The window adapts ([`PollWindow`]): idle ports cost nothing;
/// `STURDY_FABRIC_POLL_US` replaces it, for measurements.
const POLL_MAX: Duration = Duration::from_micros(300);

/// The epoll token of the wake-up eventfd (port tokens are port numbers).
const WAKE: u64 = u64::MAX;

/// A local port runs at least this often, so that its timers fire while frames of other ports
/// keep the loop from ever waiting out a timeout (its timers are in milliseconds).
const LOCAL_TICK: Duration = Duration::from_millis(1);

/// Rounds of frames between local ports and socket ports in one turn of the loop at most (a
/// local port's answer to a frame is delivered in the same turn; the bound keeps one turn from
/// starving the others).
const LOCAL_ROUNDS: usize = 8;

/// A port served on the run loop's thread: the switch hands it frames by call and takes its
/// frames back the same way. Its own descriptors (host sockets, an eventfd for its handle's
/// commands) are behind one pollable descriptor, its own epoll, which the run loop watches; its
/// timers are [`timeout`](LocalPort::timeout)'s.
pub(crate) trait LocalPort: Send {
    /// A descriptor that is readable while the port has events to handle (an epoll's).
    fn events_fd(&self) -> RawFd;
    /// A frame the switch sends to the port.
    fn deliver(&mut self, frame: &[u8]);
    /// Runs the port, first handling its events if `ready` (its descriptor was reported
    /// readable; otherwise it runs for frames delivered, work left or a timer, and saves the
    /// system call); frames it sends are appended to `out`. Returns whether work remains (run
    /// it again without waiting).
    fn run(&mut self, ready: bool, out: &mut Vec<Vec<u8>>) -> bool;
    /// How long the port may wait for events before it must run (its timers).
    fn timeout(&mut self) -> Duration;
}

/// Why a command to the run loop failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The plan was refused; nothing changed.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// The port number is attached already.
    #[error("{0} is attached already")]
    PortBusy(PortId),
    /// epoll refused the port's descriptor.
    #[error("cannot watch {port}: {source}")]
    Watch {
        /// The port.
        port: PortId,
        /// Why.
        source: io::Error,
    },
    /// The run loop has stopped (it failed; the error was logged).
    #[error("the fabric's run loop has stopped")]
    Stopped,
}

type Reply<T> = mpsc::SyncSender<T>;

/// What a handle asks of the run loop.
enum Command {
    Attach(PortId, Port, Reply<Result<(), RunError>>),
    AttachLocal(PortId, Box<dyn LocalPort>, Reply<Result<LocalId, RunError>>),
    DetachLocal(PortId, LocalId, Reply<bool>),
    Detach(PortId, Reply<Option<Port>>),
    Apply(Box<Plan>, Reply<Result<ApplyReport, PlanError>>),
    Stats(Reply<Stats>),
    Capture(CaptureTarget, Box<dyn FrameSink>, Reply<CaptureId>),
    StopCapture(CaptureId, Reply<Option<Box<dyn FrameSink>>>),
    Stop,
}

/// Starts a thread running `fabric` and returns the handle to drive it. Dropping the handle
/// stops the thread.
pub fn spawn(fabric: Fabric) -> io::Result<FabricHandle> {
    let epoll = Epoll::new()?;
    let wake = std::sync::Arc::new(EventFd::new()?);
    epoll.add(wake.raw(), WAKE, libc::EPOLLIN as u32)?;
    let (tx, rx) = mpsc::channel();
    let mut run = Loop {
        fabric,
        epoll,
        wake: wake.clone(),
        commands: rx,
        ports: Vec::new(),
        rx_bufs: vec![[0u8; RECV_BUFFER]; BATCH],
        rx_lens: [0; BATCH],
        dirty: Vec::new(),
        failed: Vec::new(),
        local_due: Vec::new(),
        local_ready: Vec::new(),
        local_ran: Instant::now(),
        next_local_id: 0,
        local_out: Vec::new(),
        ring_ports: Vec::new(),
    };
    let thread = std::thread::Builder::new()
        .name("sturdy-fabric".into())
        .spawn(move || {
            if let Err(e) = run.run() {
                tracing::error!(target: "sturdy_fabric::port", "the fabric's run loop failed: {e}");
            }
            run.fabric
        })?;
    Ok(FabricHandle {
        link: Link { commands: tx, wake },
        thread: Some(thread),
    })
}

/// Drives a fabric running on its thread ([`spawn`]).
pub struct FabricHandle {
    link: Link,
    thread: Option<JoinHandle<Fabric>>,
}

/// The way to the run loop's commands, which a local port's handle keeps to detach it.
#[derive(Clone)]
pub(crate) struct Link {
    commands: mpsc::Sender<Command>,
    wake: std::sync::Arc<EventFd>,
}

impl Link {
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, RunError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.commands
            .send(make(tx))
            .map_err(|_| RunError::Stopped)?;
        self.wake.signal();
        rx.recv().map_err(|_| RunError::Stopped)
    }

    /// Detaches the local port `id` (attached as `port`), if it still is: it is dropped on the
    /// run loop's thread before this returns. Whether it was attached.
    pub(crate) fn detach_local(&self, port: PortId, id: LocalId) -> Result<bool, RunError> {
        self.call(|r| Command::DetachLocal(port, id, r))
    }
}

impl std::fmt::Debug for FabricHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("FabricHandle").finish_non_exhaustive()
    }
}

impl FabricHandle {
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, RunError> {
        self.link.call(make)
    }

    /// Attaches `io` as port `port`: from now on its frames go through the fabric.
    pub fn attach(&self, port: PortId, io: Port) -> Result<(), RunError> {
        self.call(|r| Command::Attach(port, io, r))?
    }

    /// Attaches `local` as port `port`, served on the run loop's thread; the id detaches it
    /// ([`Link::detach_local`]) and no later port of the same number.
    pub(crate) fn attach_local(
        &self,
        port: PortId,
        local: Box<dyn LocalPort>,
    ) -> Result<LocalId, RunError> {
        self.call(|r| Command::AttachLocal(port, local, r))?
    }

    /// The way to the run loop's commands, for a local port's handle.
    pub(crate) fn link(&self) -> Link {
        self.link.clone()
    }

    /// Detaches port `port` and returns it (frames for it are dropped as `TxFull` meanwhile).
    /// A local port (the gateway) is dropped instead; stop it through its own handle.
    pub fn detach(&self, port: PortId) -> Result<Option<Port>, RunError> {
        self.call(|r| Command::Detach(port, r))
    }

    /// Puts `plan` in force before the next frame ([`Fabric::apply`]).
    pub fn apply(&self, plan: Plan) -> Result<ApplyReport, RunError> {
        Ok(self.call(|r| Command::Apply(Box::new(plan), r))??)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Result<Stats, RunError> {
        self.call(Command::Stats)
    }

    /// Starts capturing `target` into `sink` ([`Fabric::capture`]).
    pub fn capture(
        &self,
        target: CaptureTarget,
        sink: Box<dyn FrameSink>,
    ) -> Result<CaptureId, RunError> {
        self.call(|r| Command::Capture(target, sink, r))
    }

    /// Stops a capture; its sink is flushed and returned.
    pub fn stop_capture(&self, id: CaptureId) -> Result<Option<Box<dyn FrameSink>>, RunError> {
        self.call(|r| Command::StopCapture(id, r))
    }

    /// Stops the thread and returns the fabric, with its counters and connections.
    pub fn stop(mut self) -> Result<Fabric, RunError> {
        self.halt().ok_or(RunError::Stopped)
    }

    fn halt(&mut self) -> Option<Fabric> {
        let thread = self.thread.take()?;
        let _ = self.link.commands.send(Command::Stop);
        self.link.wake.signal();
        thread.join().ok()
    }
}

impl Drop for FabricHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Which attachment of a local port a handle holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LocalId(u64);

/// What carries an attached port's frames.
enum Io {
    Socket(Port),
    Local(Box<dyn LocalPort>, LocalId),
}

impl Io {
    fn raw_fd(&self) -> RawFd {
        match self {
            Io::Socket(port) => port.as_raw_fd(),
            Io::Local(local, _) => local.events_fd(),
        }
    }
}

/// An attached port and the frames queued for it this round.
struct Attached {
    io: Io,
    /// Frames back to back in `bytes`, with their ends.
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

struct Loop {
    fabric: Fabric,
    epoll: Epoll,
    wake: std::sync::Arc<EventFd>,
    commands: mpsc::Receiver<Command>,
    /// By port number.
    ports: Vec<Option<Attached>>,
    rx_bufs: Vec<[u8; RECV_BUFFER]>,
    rx_lens: [usize; BATCH],
    /// Ports with frames queued.
    dirty: Vec<PortId>,
    /// Frames that could not be queued this round, for the counters.
    failed: Vec<PortId>,
    /// Local ports to run this turn (they had events, frames, or work left).
    local_due: Vec<PortId>,
    /// Local ports whose descriptor epoll reported readable.
    local_ready: Vec<PortId>,
    /// When the local ports last ran ([`LOCAL_TICK`]).
    local_ran: Instant,
    next_local_id: u64,
    /// Frames a local port sent, on their way into the switch.
    local_out: Vec<Vec<u8>>,
    /// Socket ports with shared-memory rings.
    ring_ports: Vec<PortId>,
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Vec::with_capacity(64);
        let mut next_expiry = Instant::now() + EXPIRE_EVERY;
        let mut poll = PollWindow::new(POLL_MAX, "STURDY_FABRIC_POLL_US");
        loop {
            let before = Instant::now();
            // A local port with work left runs again at once.
            let busy = !self.local_due.is_empty();
            let polling = !busy && poll.polling(before);
            let mut timeout = if busy || polling {
                0
            } else {
                let wait = next_expiry
                    .saturating_duration_since(before)
                    .min(self.local_timeout());
                // Rounded up: waking a little late is fine, waking early would spin.
                wait.as_nanos().div_ceil(1_000_000).min(1000) as i32
            };
            if timeout > 0 && !self.prepare_sleep() {
                timeout = 0;
            }
            self.epoll.wait(&mut events, timeout)?;
            if timeout > 0 {
                self.woke();
            }
            let now = Instant::now();
            let ring_frames = self.receive_rings(now);
            let frames = ring_frames || events.iter().any(|&(token, _)| token != WAKE);
            if polling && events.is_empty() && !ring_frames {
                // The monitors' I/O threads and the guests of this CPU go first.
                std::thread::yield_now();
                continue;
            }
            if timeout > 0 && (frames || events.is_empty()) {
                poll.slept(before.elapsed());
            }
            if (!polling && !busy && events.is_empty())
                || now.saturating_duration_since(self.local_ran) >= LOCAL_TICK
            {
                // A timer of a local port may be due.
                self.all_local_due();
            }
            if frames {
                poll.start(now);
            }
            for &(token, flags) in &events {
                if token == WAKE {
                    self.wake.drain();
                    if !self.commands(now) {
                        return Ok(());
                    }
                    continue;
                }
                let port = PortId(token as u16);
                if let Some(Some(Attached {
                    io: Io::Local(..), ..
                })) = self.ports.get(index(port))
                {
                    mark(&mut self.local_due, port);
                    mark(&mut self.local_ready, port);
                    continue;
                }
                let closed = self.receive(port, now, flags & sys::HANGUP_EVENTS != 0);
                if closed {
                    tracing::info!(
                        target: "sturdy_fabric::port",
                        "{}: the guest's end closed (its monitor exited); port detached",
                        self.name(port)
                    );
                    self.detach(port);
                }
            }
            self.flush(now);
            if now >= next_expiry {
                let (ports, dirty, failed) = (&mut self.ports, &mut self.dirty, &mut self.failed);
                self.fabric
                    .expire(now, &mut |to, frame| queue(ports, dirty, failed, to, frame));
                self.flush(now);
                next_expiry = now + EXPIRE_EVERY;
            }
        }
    }

    fn all_local_due(&mut self) {
        for (i, attached) in self.ports.iter().enumerate() {
            if let Some(Attached {
                io: Io::Local(..), ..
            }) = attached
            {
                mark(&mut self.local_due, port_at(i));
            }
        }
    }

    /// The longest the local ports may wait for an event.
    fn local_timeout(&mut self) -> Duration {
        self.ports
            .iter_mut()
            .flatten()
            .filter_map(|a| match &mut a.io {
                Io::Local(local, _) => Some(local.timeout()),
                Io::Socket(_) => None,
            })
            .min()
            .unwrap_or(Duration::MAX)
    }

    fn name(&self, port: PortId) -> String {
        match self.fabric.policy().port(port) {
            Some(rule) => rule.service.to_string(),
            None => port.to_string(),
        }
    }

    /// Runs the commands waiting; false once told to stop.
    fn commands(&mut self, now: Instant) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Attach(port, io, reply) => {
                    let _ = reply.send(self.attach(port, Io::Socket(io)));
                }
                Command::AttachLocal(port, local, reply) => {
                    self.next_local_id += 1;
                    let id = LocalId(self.next_local_id);
                    let result = self.attach(port, Io::Local(local, id));
                    if result.is_ok() {
                        mark(&mut self.local_due, port);
                        self.local_ready.push(port);
                    }
                    let _ = reply.send(result.map(|()| id));
                }
                Command::DetachLocal(port, id, reply) => {
                    let ours = matches!(
                        self.ports.get(index(port)),
                        Some(Some(Attached { io: Io::Local(_, held), .. })) if *held == id
                    );
                    if ours {
                        self.detach(port);
                    }
                    let _ = reply.send(ours);
                }
                Command::Detach(port, reply) => {
                    let _ = reply.send(self.detach(port));
                }
                Command::Apply(plan, reply) => {
                    let (ports, dirty, failed) =
                        (&mut self.ports, &mut self.dirty, &mut self.failed);
                    let report = self.fabric.apply(*plan, now, &mut |to, frame| {
                        queue(ports, dirty, failed, to, frame)
                    });
                    self.flush(now);
                    let _ = reply.send(report);
                }
                Command::Stats(reply) => {
                    let _ = reply.send(self.fabric.stats());
                }
                Command::Capture(target, sink, reply) => {
                    let _ = reply.send(self.fabric.capture(target, sink));
                }
                Command::StopCapture(id, reply) => {
                    let _ = reply.send(self.fabric.stop_capture(id));
                }
                Command::Stop => return false,
            }
        }
        true
    }

    fn attach(&mut self, port: PortId, mut io: Io) -> Result<(), RunError> {
        let i = index(port);
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, || None);
        }
        if self.ports[i].is_some() {
            return Err(RunError::PortBusy(port));
        }
        self.epoll
            .add(io.raw_fd(), u64::from(port.0), sys::READ_EVENTS)
            .map_err(|source| RunError::Watch { port, source })?;
        if let Io::Socket(p) = &mut io {
            if p.rings().is_some() {
                self.ring_ports.push(port);
            }
        }
        self.ports[i] = Some(Attached {
            io,
            bytes: Vec::new(),
            ends: Vec::new(),
        });
        if port == PortId::GATEWAY {
            self.fabric.set_gateway(true);
        }
        Ok(())
    }

    /// Detaches `port`; a socket port is returned, a local one dropped.
    fn detach(&mut self, port: PortId) -> Option<Port> {
        let attached = self.ports.get_mut(index(port))?.take()?;
        if port == PortId::GATEWAY {
            self.fabric.set_gateway(false);
        }
        let _ = self.epoll.delete(attached.io.raw_fd());
        self.ring_ports.retain(|&p| p != port);
        match attached.io {
            Io::Socket(io) => Some(io),
            Io::Local(..) => {
                self.local_due.retain(|&p| p != port);
                self.local_ready.retain(|&p| p != port);
                None
            }
        }
    }

    /// Reads one batch from `port` and runs it through the switch. `hangup`: epoll says the
    /// guest's end closed. Returns whether the port is closed and read to its end.
    fn receive(&mut self, port: PortId, now: Instant, hangup: bool) -> bool {
        let Some(Some(Attached {
            io: Io::Socket(io), ..
        })) = self.ports.get(index(port))
        else {
            return false;
        };
        let n = match io.recv_batch(&mut self.rx_bufs, &mut self.rx_lens) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return hangup,
            Err(e) => {
                tracing::warn!(target: "sturdy_fabric::port", "{}: receive failed: {e}", self.name(port));
                return hangup;
            }
        };
        // Once the peer has closed, recvmmsg reports the end of the stream as empty messages
        // (filling the batch with them), possibly before epoll reports the hang-up. An empty
        // message is never a frame (sturdy-hvt refuses NET_WRITE shorter than an Ethernet
        // header), so it is always the end.
        let end = self.rx_lens[..n].iter().position(|&len| len == 0);
        self.switch_batch(port, end.unwrap_or(n), now);
        end.is_some() || (hangup && n == 0)
    }

    /// Runs the first `n` frames of the receive buffers, from `port`, through the switch.
    fn switch_batch(&mut self, port: PortId, n: usize, now: Instant) {
        for i in 0..n {
            let len = self.rx_lens[i];
            // A monitor's wake-up for frames on the rings (read on every turn anyway).
            if len == 1 && self.rx_bufs[i][0] == DOORBELL {
                continue;
            }
            if len > RECV_BUFFER {
                self.fabric.oversized(port, len, now);
                continue;
            }
            self.switch_frame(port, i, len, now);
        }
    }

    /// Runs the frame of `len` bytes in receive buffer `i`, from `port`, through the switch.
    fn switch_frame(&mut self, port: PortId, i: usize, len: usize, now: Instant) {
        let (ports, dirty, failed) = (&mut self.ports, &mut self.dirty, &mut self.failed);
        let frame = &mut self.rx_bufs[i][..len];
        self.fabric.process(port, frame, now, &mut |to, frame| {
            queue(ports, dirty, failed, to, frame)
        });
    }

    /// Reads a batch from the rings of every port that has them and runs it through the switch.
    /// Returns whether any frame came.
    fn receive_rings(&mut self, now: Instant) -> bool {
        let mut any = false;
        let mut i = 0;
        while let Some(&port) = self.ring_ports.get(i) {
            any |= self.receive_ring(port, now);
            // A port detached meanwhile left the list: the next one is at `i` now.
            if self.ring_ports.get(i) == Some(&port) {
                i += 1;
            }
        }
        any
    }

    /// Reads up to a batch of frames from `port`'s rings into the switch. A monitor that
    /// breaks the ring protocol loses its port, as if it had closed it.
    fn receive_ring(&mut self, port: PortId, now: Instant) -> bool {
        let mut n = 0;
        let mut broken = None;
        while n < BATCH {
            let popped = match self.ports.get_mut(index(port)) {
                Some(Some(Attached {
                    io: Io::Socket(io), ..
                })) => match io.rings() {
                    Some(rings) => rings.pop(&mut self.rx_bufs[0]),
                    None => break,
                },
                _ => break,
            };
            match popped {
                Ok(Some(Popped::Frame(len))) => self.switch_frame(port, 0, len, now),
                Ok(Some(Popped::Oversized(len))) => self.fabric.oversized(port, len, now),
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
            n += 1;
        }
        if let Some(rings) = self.rings_of(port) {
            rings.release();
        }
        if let Some(e) = broken {
            tracing::warn!(
                target: "sturdy_fabric::port",
                "{}: the monitor broke the ring protocol ({e}); port detached",
                self.name(port)
            );
            self.detach(port);
        }
        n > 0
    }

    /// Announces on every port's rings that the loop is about to sleep; false (and nothing
    /// announced) if frames arrived on one meanwhile.
    fn prepare_sleep(&mut self) -> bool {
        for i in 0..self.ring_ports.len() {
            if let Some(rings) = self.rings_of(self.ring_ports[i]) {
                if !rings.prepare_sleep() {
                    self.woke();
                    return false;
                }
            }
        }
        true
    }

    /// Takes back [`prepare_sleep`](Self::prepare_sleep)'s announcements.
    fn woke(&mut self) {
        for i in 0..self.ring_ports.len() {
            if let Some(rings) = self.rings_of(self.ring_ports[i]) {
                rings.woke();
            }
        }
    }

    fn rings_of(&mut self, port: PortId) -> Option<&mut sturdy_port_ring::PortRings> {
        match self.ports.get_mut(index(port)) {
            Some(Some(Attached {
                io: Io::Socket(io), ..
            })) => io.rings(),
            _ => None,
        }
    }

    /// Writes every queued frame, and runs the local ports due until what they send is
    /// written too (a bounded number of rounds).
    fn flush(&mut self, now: Instant) {
        self.send_queued(now);
        for _ in 0..LOCAL_ROUNDS {
            if self.local_due.is_empty() {
                break;
            }
            self.run_local_ports(now);
            if self.dirty.is_empty() && self.failed.is_empty() {
                break;
            }
            self.send_queued(now);
        }
    }

    /// Runs each local port due once and its frames through the switch; those with work left
    /// stay due.
    fn run_local_ports(&mut self, now: Instant) {
        self.local_ran = now;
        for port in std::mem::take(&mut self.local_due) {
            let Some(Some(Attached {
                io: Io::Local(local, _),
                ..
            })) = self.ports.get_mut(index(port))
            else {
                continue;
            };
            let ready = self.local_ready.contains(&port);
            if ready {
                self.local_ready.retain(|&p| p != port);
            }
            if local.run(ready, &mut self.local_out) {
                mark(&mut self.local_due, port);
            }
            let (ports, dirty, failed) = (&mut self.ports, &mut self.dirty, &mut self.failed);
            for mut frame in self.local_out.drain(..) {
                self.fabric
                    .process(port, &mut frame, now, &mut |to, frame| {
                        queue(ports, dirty, failed, to, frame)
                    });
            }
        }
    }

    /// Writes every queued frame (to a local port: hands it over, and the port is due); what a
    /// socket port does not take (or could not queue) is dropped and counted.
    fn send_queued(&mut self, now: Instant) {
        for to in self.failed.drain(..) {
            self.fabric.tx_failed(to, now);
        }
        for port in std::mem::take(&mut self.dirty) {
            let Some(Some(attached)) = self.ports.get_mut(index(port)) else {
                continue;
            };
            let io = match &mut attached.io {
                Io::Socket(io) => io,
                Io::Local(local, _) => {
                    let mut start = 0;
                    for &end in &attached.ends {
                        local.deliver(&attached.bytes[start..end]);
                        start = end;
                    }
                    attached.bytes.clear();
                    attached.ends.clear();
                    mark(&mut self.local_due, port);
                    continue;
                }
            };
            if let Some(rings) = io.rings().and_then(|r| r.send_through_rings().then_some(r)) {
                // Into the monitor's ring; a full ring drops the rest, as a full socket does.
                let mut unsent = 0;
                let mut start = 0;
                for &end in &attached.ends {
                    if !rings.push(&attached.bytes[start..end]) {
                        unsent += 1;
                    }
                    start = end;
                }
                if rings.publish() {
                    io.ring_doorbell();
                }
                attached.bytes.clear();
                attached.ends.clear();
                for _ in 0..unsent {
                    self.fabric.tx_failed(port, now);
                }
                continue;
            }
            let mut frames: Vec<&[u8]> = Vec::with_capacity(attached.ends.len());
            let mut start = 0;
            for &end in &attached.ends {
                frames.push(&attached.bytes[start..end]);
                start = end;
            }
            let result = io.send_batch(&frames);
            let total = frames.len();
            drop(frames);
            attached.bytes.clear();
            attached.ends.clear();
            let unsent = match result {
                Ok(sent) => total - sent,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => total,
                Err(e) => {
                    tracing::info!(
                        target: "sturdy_fabric::port",
                        "{}: send failed ({e}); port detached",
                        self.fabric.policy().port(port).map_or_else(|| port.to_string(), |r| r.service.to_string())
                    );
                    self.detach(port);
                    total
                }
            };
            for _ in 0..unsent {
                self.fabric.tx_failed(port, now);
            }
        }
    }
}

/// Where port `port` is kept in the run loop's table: the gateway first, then by number.
fn index(port: PortId) -> usize {
    if port == PortId::GATEWAY {
        0
    } else {
        usize::from(port.0) + 1
    }
}

/// Adds `port` to a list of local ports (due, ready), once.
fn mark(list: &mut Vec<PortId>, port: PortId) {
    if !list.contains(&port) {
        list.push(port);
    }
}

/// The port kept at `i` in the run loop's table ([`index`]'s inverse).
fn port_at(i: usize) -> PortId {
    if i == 0 {
        PortId::GATEWAY
    } else {
        PortId((i - 1) as u16)
    }
}

/// Queues `frame` for `to`, or notes that it cannot be.
fn queue(
    ports: &mut [Option<Attached>],
    dirty: &mut Vec<PortId>,
    failed: &mut Vec<PortId>,
    to: PortId,
    frame: &[u8],
) {
    match ports.get_mut(index(to)) {
        Some(Some(a)) if a.ends.len() < TX_QUEUE => {
            if a.ends.is_empty() {
                dirty.push(to);
            }
            a.bytes.extend_from_slice(frame);
            a.ends.push(a.bytes.len());
        }
        _ => failed.push(to),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixDatagram;

    use super::*;
    use crate::plan::{Endpoint, Proto};
    use crate::switch::Config;
    use crate::wire::build::{self, Host};
    use crate::wire::TcpFlags;
    use crate::DropReason;

    fn plan() -> Plan {
        let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
        plan.add_service("web", vec![]).unwrap();
        let kv = Endpoint {
            name: "kv".into(),
            port: 6379,
            proto: Proto::Tcp,
        };
        plan.add_service("db", vec![kv]).unwrap();
        plan.grant("web", "db.kv").unwrap();
        plan
    }

    fn host(plan: &Plan, name: &str, port: u16) -> Host {
        let s = plan.service(name).unwrap();
        Host::new(s.mac, s.ipv4, port)
    }

    /// A guest's end: what the monitor reads and writes.
    fn guest(fd: std::os::fd::OwnedFd) -> UnixDatagram {
        let g = UnixDatagram::from(fd);
        g.set_nonblocking(false).unwrap();
        g.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        g
    }

    fn recv(g: &UnixDatagram) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let n = g.recv(&mut buf).expect("a frame within 5 s");
        buf[..n].to_vec()
    }

    /// A running fabric of [`plan`] with web and db attached: the plan, its handle, the guests'
    /// ends of both ports and how each guest addresses itself.
    fn web_and_db() -> (Plan, FabricHandle, UnixDatagram, UnixDatagram, Host, Host) {
        web_and_db_on(Port::socket_pair().unwrap())
    }

    /// [`web_and_db`] with web's port `web`.
    fn web_and_db_on(
        (web_port, web_fd): (Port, std::os::fd::OwnedFd),
    ) -> (Plan, FabricHandle, UnixDatagram, UnixDatagram, Host, Host) {
        let plan = plan();
        let handle = spawn(Fabric::new(plan.clone(), Config::default()).unwrap()).unwrap();
        let (db_port, db_fd) = Port::socket_pair().unwrap();
        handle.attach(PortId(0), web_port).unwrap();
        handle.attach(PortId(1), db_port).unwrap();
        let (web, db) = (guest(web_fd), guest(db_fd));
        let (w, d) = (host(&plan, "web", 40000), host(&plan, "db", 6379));
        (plan, handle, web, db, w, d)
    }

    /// Waits for the next frame on a monitor's rings, sleeping for the fabric's doorbell.
    fn ring_recv(rings: &mut sturdy_port_ring::PortRings, socket: &UnixDatagram) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        loop {
            if let Some(Popped::Frame(n)) = rings.pop(&mut buf).unwrap() {
                rings.release();
                return buf[..n].to_vec();
            }
            if rings.prepare_sleep() {
                let mut bell = [0u8; 16];
                assert_eq!(socket.recv(&mut bell).expect("a doorbell within 5 s"), 1);
                assert_eq!(bell[0], DOORBELL);
            }
            rings.woke();
        }
    }

    #[test]
    fn frames_cross_the_rings_of_a_monitor_that_serves_them() {
        let (_plan, handle, web, db, w, d) = web_and_db_on(Port::pair().unwrap());
        // web's monitor, as sturdy-hvt serves the rings.
        let file = sturdy_port_ring::take_offer(web.as_fd()).unwrap().unwrap();
        let mut rings = sturdy_port_ring::PortRings::open(file).unwrap();
        rings.set_attached();
        let send = |rings: &mut sturdy_port_ring::PortRings, frame: &[u8]| {
            assert!(rings.push(frame));
            if rings.publish() {
                sturdy_port_ring::send_doorbell(web.as_fd()).unwrap();
                true
            } else {
                false
            }
        };

        // Long idle: the fabric sleeps and has said so; the frame's doorbell wakes it. (A
        // starved test host may find it awake once; it sleeps within a few tries.)
        let mut asked = 0;
        let mut rung = false;
        while !rung && asked < 20 {
            std::thread::sleep(Duration::from_millis(50));
            rung = send(&mut rings, &build::arp_request(&w, d.ip));
            asked += 1;
        }
        assert!(rung, "the fabric never said it sleeps");
        for _ in 0..asked {
            assert_eq!(&ring_recv(&mut rings, &web)[22..28], &d.mac.0);
        }
        let syn = build::tcp(&w, &d, TcpFlags::SYN, 1000, 0, b"");
        send(&mut rings, &syn);
        assert_eq!(recv(&db), syn, "ring to socket");
        let syn_ack = build::tcp(&d, &w, TcpFlags(0x12), 5000, 1001, b"");
        db.send(&syn_ack).unwrap();
        assert_eq!(ring_recv(&mut rings, &web), syn_ack, "socket to ring");
        // More frames than a batch, in order.
        for i in 0..200u32 {
            let f = build::tcp(&w, &d, TcpFlags::ACK, 1001 + i, 5001, &[i as u8; 100]);
            send(&mut rings, &f);
        }
        for i in 0..200u32 {
            assert_eq!(recv(&db)[54], i as u8, "frame {i}");
        }
        let stats = handle.stats().unwrap();
        assert_eq!(stats.ports[0].stats.rx.frames, 201 + asked);

        // A monitor that corrupts its ring loses its port: the fabric closes its end.
        drop(rings);
        handle.detach(PortId(0)).unwrap();
        let (p, fd) = Port::pair().unwrap();
        handle.attach(PortId(0), p).unwrap();
        let g = guest(fd);
        let file = sturdy_port_ring::take_offer(g.as_fd()).unwrap().unwrap();
        sturdy_port_ring::PortRings::open(file.try_clone().unwrap())
            .unwrap()
            .set_attached();
        // First a frame whose length is past its slot: counted as oversized, the port kept.
        write_at(&file, RING_SLOTS, 5000);
        write_at(&file, RING_TAIL, 1);
        sturdy_port_ring::send_doorbell(g.as_fd()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while handle.stats().unwrap().ports[0]
            .stats
            .drops
            .get(DropReason::Oversized)
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "the oversized frame was not counted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Then a tail far past anything written.
        write_at(&file, RING_TAIL, 10_000);
        sturdy_port_ring::send_doorbell(g.as_fd()).unwrap();
        let mut buf = [0u8; 64];
        match g.recv(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("the port's end should close within 5 s: {other:?}"),
        }
        assert!(handle.detach(PortId(0)).unwrap().is_none());
    }

    /// Where the monitor's ring is in the memory file: its tail first, its slots a page on,
    /// each a length and a frame (sturdy_port_ring's layout).
    const RING_TAIL: u64 = 4096;
    const RING_SLOTS: u64 = 8192;

    /// Writes `value` at `offset` of the rings' memory file, as a hostile monitor could.
    fn write_at(file: &std::fs::File, offset: u64, value: u32) {
        use std::os::unix::fs::FileExt;
        file.write_all_at(&value.to_le_bytes(), offset).unwrap();
    }

    #[test]
    fn frames_cross_real_sockets_and_plans_apply_live() {
        let (plan, handle, web, db, w, d) = web_and_db();

        // ARP, answered by the fabric.
        web.send(&build::arp_request(&w, d.ip)).unwrap();
        let reply = recv(&web);
        assert_eq!(&reply[22..28], &d.mac.0);
        // A handshake through the fabric.
        let syn = build::tcp(&w, &d, TcpFlags::SYN, 1000, 0, b"");
        web.send(&syn).unwrap();
        assert_eq!(recv(&db), syn);
        let syn_ack = build::tcp(&d, &w, TcpFlags(0x12), 5000, 1001, b"");
        db.send(&syn_ack).unwrap();
        assert_eq!(recv(&web), syn_ack);
        // Many frames at once, in order.
        for i in 0..200u32 {
            web.send(&build::tcp(
                &w,
                &d,
                TcpFlags::ACK,
                1001 + i,
                5001,
                &[i as u8; 100],
            ))
            .unwrap();
        }
        for i in 0..200u32 {
            let f = recv(&db);
            assert_eq!(f[54], i as u8, "frame {i}");
        }

        // Revoked: both ends are reset.
        let mut revoked = plan.clone();
        revoked.revoke("web", "db.kv");
        let report = handle.apply(revoked).unwrap();
        assert_eq!((report.cut, report.resets), (1, 2));
        assert_eq!(recv(&web)[14 + 20 + 13], 0x14, "RST|ACK to web");
        assert_eq!(recv(&db)[14 + 20 + 13], 0x14, "RST|ACK to db");
        // An invalid plan is refused with its reason.
        let mut bad = plan.clone();
        bad.services[1].ipv4 = Ipv4Addr::new(10, 78, 0, 3);
        let e = handle.apply(bad).unwrap_err();
        assert!(e.to_string().contains("not a host address"), "{e}");

        let stats = handle.stats().unwrap();
        assert_eq!(stats.ports[0].stats.rx.frames, 202);
        assert_eq!(stats.ports[1].stats.rx.frames, 1);
        assert_eq!(stats.connections, 0);
        assert!(matches!(
            handle.attach(PortId(0), Port::socket_pair().unwrap().0),
            Err(RunError::PortBusy(_))
        ));
        let fabric = handle.stop().unwrap();
        assert_eq!(fabric.port_stats(PortId(1)).unwrap().tx.frames, 202);
    }

    #[test]
    fn a_guest_that_does_not_read_loses_frames_and_stalls_nobody() {
        let (_, handle, web, db, w, d) = web_and_db();
        web.send(&build::tcp(&w, &d, TcpFlags::SYN, 1000, 0, b""))
            .unwrap();
        db.send(&build::tcp(&d, &w, TcpFlags(0x12), 5000, 1001, b""))
            .unwrap();
        recv(&web);
        // More than db's socket buffer holds; web's sends wait only for the fabric.
        let data = build::tcp(&w, &d, TcpFlags::ACK, 1001, 0, &[0; 1400]);
        web.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let sent = 2000;
        for _ in 0..sent {
            web.send(&data).unwrap();
        }
        // The fabric still answers web.
        web.send(&build::arp_request(&w, d.ip)).unwrap();
        assert_eq!(recv(&web).len(), 42);
        let stats = handle.stats().unwrap();
        let db = stats.ports[1].stats;
        assert!(db.drops.get(DropReason::TxFull) > 0, "{db:?}");
        assert_eq!(stats.ports[0].stats.rx.frames, sent + 2);
        assert_eq!(
            stats.ports[1].stats.rx.frames, 1,
            "db sent its SYN-ACK and read nothing"
        );
    }

    #[test]
    fn a_port_whose_guest_end_closes_is_detached() {
        let plan = plan();
        let handle = spawn(Fabric::new(plan.clone(), Config::default()).unwrap()).unwrap();
        let (web_port, web_fd) = Port::socket_pair().unwrap();
        handle.attach(PortId(0), web_port).unwrap();
        drop(web_fd);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Detached: the port number is free again (for a new port whose guest end stays open).
        let _guest_end = loop {
            let (again, guest_end) = Port::socket_pair().unwrap();
            match handle.attach(PortId(0), again) {
                Ok(()) => break guest_end,
                Err(RunError::PortBusy(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert!(handle.detach(PortId(0)).unwrap().is_some());
        assert!(handle.detach(PortId(0)).unwrap().is_none());
    }
}
