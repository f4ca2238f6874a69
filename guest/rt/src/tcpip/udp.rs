//! UDP: a socket that exchanges datagrams with one capability's peer
//! ([`crate::caps::UdpCap::connect`]), and a provided endpoint that receives from anyone
//! the fabric lets through and answers them ([`crate::Env::bind`]).
//!
//! A datagram must fit one frame (there is no IP fragmentation); a longer one is refused with
//! [`NetError::TooLarge`]. A datagram longer than the receiving buffer is truncated.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::future::poll_fn;
use core::net::SocketAddrV4;
use core::task::{Context, Poll};

use smoltcp::socket::udp::{PacketBuffer, PacketMetadata, Socket};

use sturdy_bootcfg::Proto;

use super::{socket_addr, with, NetError, SocketRef, Stack};
use crate::Instant;

/// Payload bytes buffered per socket and direction.
const BUFFER_SIZE: usize = 16 * 1024;

/// Datagrams buffered per socket and direction.
const BUFFER_DATAGRAMS: usize = 32;

/// Bytes of IPv4 and UDP headers in a frame's payload.
const HEADERS: usize = 20 + 8;

fn new_socket() -> Socket<'static> {
    let buffer = || {
        PacketBuffer::new(
            vec![PacketMetadata::EMPTY; BUFFER_DATAGRAMS],
            vec![0; BUFFER_SIZE],
        )
    };
    Socket::new(buffer(), buffer())
}

/// A UDP socket for one peer: what it sends goes to the peer, what it receives comes from it
/// (datagrams from anywhere else are dropped).
#[derive(Debug)]
pub struct UdpSocket {
    socket: SocketRef,
    peer: SocketAddrV4,
}

impl UdpSocket {
    /// Sends `data` as one datagram to the peer.
    pub async fn send(&self, data: &[u8]) -> Result<(), NetError> {
        send(self.socket, self.peer, data).await
    }

    /// Receives the next datagram from the peer into `buf`; returns its length (at most
    /// `buf.len()`: the rest of a longer datagram is dropped).
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        poll_fn(|cx| {
            with(|stack| loop {
                match recv_one(stack, self.socket, buf, cx) {
                    Poll::Ready((n, from)) if from == self.peer => return Poll::Ready(Ok(n)),
                    Poll::Ready(_) => {} // from elsewhere: dropped
                    Poll::Pending => return Poll::Pending,
                }
            })
        })
        .await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        with(|stack| stack.release(self.socket, Instant::now()));
    }
}

/// A provided UDP endpoint: receives datagrams on its port, on every NIC, and answers them.
#[derive(Debug)]
pub struct UdpEndpoint {
    /// The endpoint's socket on each NIC, by NIC number.
    sockets: Vec<SocketRef>,
}

impl UdpEndpoint {
    /// Receives the next datagram into `buf`: its length (at most `buf.len()`, the rest of a
    /// longer datagram is dropped) and who sent it.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, Peer), NetError> {
        poll_fn(|cx| {
            with(|stack| {
                for &socket in &self.sockets {
                    if let Poll::Ready((n, addr)) = recv_one(stack, socket, buf, cx) {
                        let peer = Peer {
                            nic: socket.nic,
                            addr,
                        };
                        return Poll::Ready(Ok((n, peer)));
                    }
                }
                Poll::Pending
            })
        })
        .await
    }

    /// Sends `data` as one datagram to `peer`, who sent this endpoint a datagram.
    pub async fn send_to(&self, data: &[u8], peer: &Peer) -> Result<(), NetError> {
        send(self.sockets[peer.nic], peer.addr, data).await
    }
}

impl Drop for UdpEndpoint {
    fn drop(&mut self) {
        with(|stack| {
            for &socket in &self.sockets {
                stack.release(socket, Instant::now());
            }
        });
    }
}

/// The sender of a datagram received on a [`UdpEndpoint`]: the one address, besides its
/// capabilities, that a guest can send to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    nic: usize,
    addr: SocketAddrV4,
}

impl Peer {
    /// The sender's address and port.
    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.addr.fmt(f)
    }
}

/// Takes one datagram from `socket` into `buf`, or registers the task to be woken when one
/// arrives.
fn recv_one(
    stack: &mut Stack,
    socket: SocketRef,
    buf: &mut [u8],
    cx: &mut Context,
) -> Poll<(usize, SocketAddrV4)> {
    let socket = stack.udp(socket);
    match socket.recv() {
        Ok((payload, meta)) => {
            let n = payload.len().min(buf.len());
            buf[..n].copy_from_slice(&payload[..n]);
            Poll::Ready((n, socket_addr(meta.endpoint)))
        }
        Err(_) => {
            socket.register_recv_waker(cx.waker());
            Poll::Pending
        }
    }
}

async fn send(socket: SocketRef, to: SocketAddrV4, data: &[u8]) -> Result<(), NetError> {
    poll_fn(|cx| {
        with(|stack| {
            let max = stack.max_udp_payload(socket);
            let udp = stack.udp(socket);
            if data.len() > max {
                return Poll::Ready(Err(NetError::TooLarge {
                    len: data.len(),
                    max,
                }));
            }
            match udp.send_slice(data, (*to.ip(), to.port())) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(_) => {
                    udp.register_send_waker(cx.waker());
                    Poll::Pending
                }
            }
        })
    })
    .await
}

/// A socket for talking to `peer` from NIC `nic`, on an ephemeral port.
pub(crate) fn connect(nic: usize, peer: SocketAddrV4) -> UdpSocket {
    with(|stack| {
        let port = stack.ephemeral_port(nic);
        UdpSocket {
            socket: stack.bind(nic, port),
            peer,
        }
    })
}

/// The endpoint on `port` on every NIC; `None` if a UDP socket already uses the port.
pub(crate) fn endpoint(port: u16) -> Option<UdpEndpoint> {
    with(|stack| {
        if stack
            .nics
            .iter()
            .any(|nic| nic.port_in_use(port, Proto::Udp))
        {
            return None;
        }
        let sockets = (0..stack.nics.len())
            .map(|nic| stack.bind(nic, port))
            .collect();
        Some(UdpEndpoint { sockets })
    })
}

impl Stack {
    fn bind(&mut self, nic: usize, port: u16) -> SocketRef {
        let mut socket = new_socket();
        // Fails only for port 0 or a bound socket; the port is not 0 and the socket is new.
        _ = socket.bind(port);
        self.add(nic, socket)
    }

    /// The longest datagram that fits in one frame of `socket`'s NIC, and in its buffer.
    fn max_udp_payload(&mut self, socket: SocketRef) -> usize {
        let mtu = self.nics[socket.nic].device.net().mtu();
        mtu.saturating_sub(HEADERS).min(BUFFER_SIZE)
    }
}
