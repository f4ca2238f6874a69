//! The system calls of port I/O, each wrapped in a safe function: the only `unsafe` of the
//! crate. Descriptors are `OwnedFd`s; buffers are slices whose lengths bound what the kernel
//! may write.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A connected pair of SOCK_SEQPACKET Unix sockets (one message = one frame), close-on-exec
/// and non-blocking.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two descriptors into `fds`, a valid array of two ints.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Makes `fd` non-blocking.
pub(crate) fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_GETFL on a descriptor we own reads its flags and touches no memory.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: F_SETFL with O_NONBLOCK added changes only the descriptor's status flags.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// The socket type of `fd` (SO_TYPE), to refuse what is not SOCK_SEQPACKET.
pub(crate) fn socket_type(fd: &OwnedFd) -> io::Result<libc::c_int> {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes (one int) into `ty`, and its size to `len`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(ty)
}

/// Sets SO_SNDBUF (the kernel clamps it to `net.core.wmem_max`; failure is harmless).
pub(crate) fn set_send_buffer(fd: &OwnedFd, bytes: libc::c_int) {
    // SAFETY: setsockopt reads one int from `bytes`, which lives for the call.
    let _ = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Receives up to `bufs.len()` messages without blocking. For each message `i` received,
/// `lens[i]` is its full length, which is more than `bufs[i].len()` if it was cut (MSG_TRUNC).
/// Returns how many were received; `WouldBlock` if none were waiting.
pub(crate) fn recv_batch<const N: usize>(
    fd: &OwnedFd,
    bufs: &mut [[u8; N]],
    lens: &mut [usize],
) -> io::Result<usize> {
    const MAX: usize = 64;
    let n = bufs.len().min(lens.len()).min(MAX);
    // SAFETY: iovec and mmsghdr are plain C structures for which all-zero is a valid value.
    let mut iov: [libc::iovec; MAX] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iov[i].iov_base = bufs[i].as_mut_ptr().cast();
        iov[i].iov_len = N;
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: each of the first `n` headers points at one iovec describing `bufs[i]`, N bytes
    // that stay mutably borrowed (and unmoved) for the call; the kernel writes at most N bytes
    // to each and fills in msg_len and msg_flags. No address or control buffer is given.
    let got = check(unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    })? as usize;
    for i in 0..got {
        let len = msgs[i].msg_len as usize;
        // A cut message: say so with a length beyond the buffer (the exact length is lost).
        lens[i] = if msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            len.max(N + 1)
        } else {
            len
        };
    }
    Ok(got)
}

/// Sends `frames` as one message each, without blocking. Returns how many were sent (fewer
/// than given when the peer's queue filled); an error if not even the first could be.
pub(crate) fn send_batch(fd: &OwnedFd, frames: &[&[u8]]) -> io::Result<usize> {
    const MAX: usize = 64;
    let mut sent = 0;
    while sent < frames.len() {
        let chunk = &frames[sent..frames.len().min(sent + MAX)];
        // SAFETY: plain C structures for which all-zero is a valid value.
        let mut iov: [libc::iovec; MAX] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; MAX] = unsafe { std::mem::zeroed() };
        for (i, f) in chunk.iter().enumerate() {
            iov[i].iov_base = f.as_ptr() as *mut libc::c_void;
            iov[i].iov_len = f.len();
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: each header points at one iovec describing a frame that is borrowed for the
        // call; sendmsg only reads through iov_base. MSG_NOSIGNAL: a closed peer is an EPIPE
        // error, not a signal.
        let rc = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                chunk.len() as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        match check(rc) {
            Ok(k) => {
                sent += k as usize;
                if (k as usize) < chunk.len() {
                    break;
                }
            }
            Err(e) if sent > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Makes closing the socket `fd` send a reset (SO_LINGER with a zero timeout).
pub(crate) fn set_linger_zero(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a `linger` structure of the size given, which lives for the call.
    let _ = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// An epoll instance.
pub(crate) struct Epoll(OwnedFd);

/// Readable, and the peer hung up or errored.
pub(crate) const READ_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
/// The peer closed.
pub(crate) const HANGUP_EVENTS: u32 = (libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLERR) as u32;

impl AsRawFd for Epoll {
    /// The epoll's own descriptor: readable while events are ready (another epoll may watch it).
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: a fresh descriptor we own.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for `events`, reported with `token`.
    pub(crate) fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: epoll_ctl reads the event structure, which lives for the call.
        check(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer (null is allowed since Linux 2.6.9).
        check(unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        })?;
        Ok(())
    }

    /// Waits up to `timeout_ms` for events; returns (token, events) pairs in `out`.
    pub(crate) fn wait(&self, out: &mut Vec<(u64, u32)>, timeout_ms: i32) -> io::Result<()> {
        const MAX: usize = 64;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        // SAFETY: the kernel writes at most MAX events into `events`, an array of MAX.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                MAX as i32,
                timeout_ms,
            )
        };
        out.clear();
        match check(n) {
            Ok(n) => {
                out.extend(events[..n as usize].iter().map(|e| (e.u64, e.events)));
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// An eventfd: how other threads wake the run loop (or the gateway, through its epoll).
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: a fresh descriptor we own.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Makes it readable.
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: write reads 8 bytes from `one`. It fails only if the counter would overflow,
        // when it is readable anyway.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes it unreadable again.
    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: read writes at most 8 bytes into `v`.
        let _ = unsafe { libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}
