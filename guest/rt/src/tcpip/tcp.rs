//! TCP: connections opened through a capability ([`crate::caps::TcpCap::connect`]) and
//! accepted from a provided endpoint ([`crate::Env::listen`]).
//!
//! # Listeners
//!
//! A smoltcp socket is one connection, and a SYN to a port with no listening socket is answered
//! with a reset. So a [`TcpListener`] keeps one listening socket per NIC and, after every frame
//! the stack receives, hands a socket that left the LISTEN state (a SYN arrived) to its queue of
//! pending connections and puts a fresh listening socket in its place: a burst of SYNs finds a
//! listening socket every time. [`TcpListener::accept`] returns the pending connections once
//! established. When [`ACCEPT_QUEUE`] connections are pending, a new SYN is ignored (the
//! socket goes back to listening before answering); the client retransmits it later.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::net::SocketAddrV4;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{RecvError, Socket, SocketBuffer, State};

use sturdy_bootcfg::Proto;

use super::{with, NetError, SocketRef, Stack};
use crate::{timeout, Instant};

/// Receive and send buffer of each connection: 16 KiB each, so 250 connections take about
/// 8 MiB of heap.
const BUFFER_SIZE: usize = 16 * 1024;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections a listener holds for the application to accept, established or not yet.
const ACCEPT_QUEUE: usize = 256;

fn new_socket() -> Socket<'static> {
    let mut socket = Socket::new(
        SocketBuffer::new(vec![0; BUFFER_SIZE]),
        SocketBuffer::new(vec![0; BUFFER_SIZE]),
    );
    // What tasks write in one round of the run loop goes out together anyway (the stack sends
    // after the tasks ran), so Nagle's algorithm would only delay replies.
    socket.set_nagle_enabled(false);
    socket
}

/// An established TCP connection.
///
/// Dropping it closes it: what was written is still delivered, then the connection ends (see
/// [`close`](TcpStream::close) to wait for that).
#[derive(Debug)]
pub struct TcpStream {
    socket: SocketRef,
    shut: bool,
}

impl TcpStream {
    /// Receives into `buf`; returns how many bytes, or 0 once the peer has closed its side.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| {
            with(|stack| {
                let socket = stack.tcp(self.socket);
                match socket.recv_slice(buf) {
                    Ok(0) => {
                        socket.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                    Ok(n) => Poll::Ready(Ok(n)),
                    Err(RecvError::Finished) => Poll::Ready(Ok(0)),
                    Err(RecvError::InvalidState) => Poll::Ready(Err(NetError::ConnectionReset)),
                }
            })
        })
        .await
    }

    /// Sends some of `data` (queues it: the stack transmits it); returns how many bytes.
    pub async fn write(&mut self, data: &[u8]) -> Result<usize, NetError> {
        if self.shut {
            return Err(NetError::Shutdown);
        }
        if data.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| {
            with(|stack| {
                let socket = stack.tcp(self.socket);
                if !socket.may_send() {
                    return Poll::Ready(Err(NetError::ConnectionReset));
                }
                match socket.send_slice(data) {
                    Ok(0) => {
                        socket.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    Ok(n) => Poll::Ready(Ok(n)),
                    Err(_) => Poll::Ready(Err(NetError::ConnectionReset)),
                }
            })
        })
        .await
    }

    /// Sends all of `data`.
    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), NetError> {
        while !data.is_empty() {
            let n = self.write(data).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Ends the sending side: the peer reads the end of the stream after what was written.
    /// Reading goes on until the peer closes its side.
    pub fn shutdown(&mut self) {
        self.shut = true;
        with(|stack| stack.tcp(self.socket).close());
    }

    /// Shuts the connection down and waits until the peer has acknowledged everything written
    /// (or for at most a minute).
    pub async fn close(mut self) -> Result<(), NetError> {
        self.shutdown();
        let acknowledged = poll_fn(|cx| {
            with(|stack| {
                let socket = stack.tcp(self.socket);
                match socket.state() {
                    State::FinWait2 | State::TimeWait | State::Closed => Poll::Ready(()),
                    _ => {
                        socket.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                }
            })
        });
        timeout(super::LINGER, acknowledged)
            .await
            .map_err(|_| NetError::TimedOut)
    }

    /// The peer's address and port.
    pub fn peer_addr(&self) -> Option<SocketAddrV4> {
        with(|stack| stack.tcp(self.socket).remote_endpoint()).map(super::socket_addr)
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        with(|stack| stack.release(self.socket, Instant::now()));
    }
}

/// Opens a connection to `remote` from NIC `nic`.
pub(crate) async fn connect(nic: usize, remote: SocketAddrV4) -> Result<TcpStream, NetError> {
    // A stream from the start, so that dropping this future mid-way frees the socket.
    let stream = with(|stack| stack.connect(nic, remote))?;
    let established = poll_fn(|cx| {
        with(|stack| {
            let socket = stack.tcp(stream.socket);
            match socket.state() {
                State::SynSent | State::SynReceived => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                // A reset answered the SYN.
                State::Closed => Poll::Ready(Err(NetError::ConnectionRefused)),
                _ => Poll::Ready(Ok(())),
            }
        })
    });
    match timeout(CONNECT_TIMEOUT, established).await {
        Ok(result) => result.map(|()| stream),
        Err(_) => Err(NetError::TimedOut),
    }
}

/// Starts listening on `port` on every NIC; `None` if a TCP socket already uses the port.
pub(crate) fn listen(port: u16) -> Option<TcpListener> {
    with(|stack| stack.listen(port)).map(|id| TcpListener { id, port })
}

/// Accepts connections on a provided endpoint.
///
/// Dropping it stops listening and closes the connections not yet accepted.
#[derive(Debug)]
pub struct TcpListener {
    id: usize,
    port: u16,
}

impl TcpListener {
    /// Waits for the next connection.
    pub async fn accept(&self) -> TcpStream {
        poll_fn(|cx| with(|stack| stack.accept(self.id, cx))).await
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        with(|stack| stack.unlisten(self.id, Instant::now()));
    }
}

/// A listener's sockets (see the module documentation).
pub(super) struct Listener {
    port: u16,
    /// The listening socket on each NIC, by NIC number.
    listening: Vec<SocketHandle>,
    /// Connections handed over by listening sockets, not accepted yet.
    pending: VecDeque<SocketRef>,
    /// The task waiting in `accept`.
    waker: Option<Waker>,
}

/// Replaces every listening socket of NIC `nic` that a SYN took (see the module documentation).
pub(super) fn replenish(
    listeners: &mut [Option<Listener>],
    nic: usize,
    sockets: &mut SocketSet<'static>,
) {
    for listener in listeners.iter_mut().flatten() {
        let handle = listener.listening[nic];
        let socket: &mut Socket = sockets.get_mut(handle);
        if socket.state() == State::Listen {
            continue;
        }
        if listener.pending.len() >= ACCEPT_QUEUE {
            // Before the SYN-ACK goes out: the SYN is as good as lost.
            socket.abort();
            make_listening(socket, listener.port);
            continue;
        }
        // Woken when the connection is established.
        if let Some(waker) = &listener.waker {
            socket.register_recv_waker(waker);
        }
        listener.pending.push_back(SocketRef { nic, handle });
        let mut fresh = new_socket();
        make_listening(&mut fresh, listener.port);
        listener.listening[nic] = sockets.add(fresh);
    }
}

/// Makes a closed socket listen on `port` (on any address of its NIC).
fn make_listening(socket: &mut Socket, port: u16) {
    // Fails only for port 0 or an open socket; the port is a provided endpoint's (not 0) and
    // the socket is new or was just aborted.
    _ = socket.listen(port);
}

impl Stack {
    fn connect(&mut self, nic: usize, remote: SocketAddrV4) -> Result<TcpStream, NetError> {
        let local_port = self.ephemeral_port(nic);
        let mut socket = new_socket();
        let iface = &mut self.nics[nic].iface;
        socket
            .connect(iface.context(), (*remote.ip(), remote.port()), local_port)
            .map_err(|_| NetError::Unreachable)?;
        Ok(TcpStream {
            socket: self.add(nic, socket),
            shut: false,
        })
    }

    fn listen(&mut self, port: u16) -> Option<usize> {
        if self
            .nics
            .iter()
            .any(|nic| nic.port_in_use(port, Proto::Tcp))
        {
            return None;
        }
        let listening = self
            .nics
            .iter_mut()
            .map(|nic| {
                let mut socket = new_socket();
                make_listening(&mut socket, port);
                nic.sockets.add(socket)
            })
            .collect();
        let listener = Listener {
            port,
            listening,
            pending: VecDeque::new(),
            waker: None,
        };
        Some(match self.listeners.iter().position(Option::is_none) {
            Some(id) => {
                self.listeners[id] = Some(listener);
                id
            }
            None => {
                self.listeners.push(Some(listener));
                self.listeners.len() - 1
            }
        })
    }

    fn accept(&mut self, id: usize, cx: &mut Context) -> Poll<TcpStream> {
        let Stack {
            nics, listeners, ..
        } = self;
        let listener = listeners[id]
            .as_mut()
            .expect("a TcpListener's listener exists until it is dropped");
        let mut i = 0;
        while let Some(&pending) = listener.pending.get(i) {
            let sockets = &mut nics[pending.nic].sockets;
            let socket: &mut Socket = sockets.get_mut(pending.handle);
            match socket.state() {
                State::SynReceived => {
                    socket.register_recv_waker(cx.waker());
                    i += 1;
                }
                // Reset before it was accepted.
                State::Listen | State::Closed | State::TimeWait => {
                    listener.pending.remove(i);
                    sockets.remove(pending.handle);
                }
                _ => {
                    listener.pending.remove(i);
                    return Poll::Ready(TcpStream {
                        socket: pending,
                        shut: false,
                    });
                }
            }
        }
        listener.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn unlisten(&mut self, id: usize, now: Instant) {
        let Some(listener) = self.listeners[id].take() else {
            return;
        };
        for (nic, handle) in listener.listening.into_iter().enumerate() {
            self.nics[nic].sockets.remove(handle);
        }
        for pending in listener.pending {
            self.release(pending, now);
        }
    }
}
