//! The system calls: the sealed memory file, and the messages on the port's socket (the offer
//! with its descriptor, doorbells). Each wrapped in a safe function.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd};

use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use super::{DOORBELL, OFFER};

/// A memory file of `size` bytes, sealed against shrinking, growing and further sealing.
pub(crate) fn sealed_memfd(size: u64) -> io::Result<File> {
    // SAFETY: memfd_create reads the NUL-terminated name, a constant; the result is checked.
    let fd = unsafe {
        libc::memfd_create(
            c"sturdy-port-rings".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size)?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS on a descriptor we own takes an int and touches no memory.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Whether `file`'s size is sealed against shrinking.
pub(crate) fn shrink_sealed(file: &File) -> io::Result<bool> {
    // SAFETY: F_GET_SEALS takes no argument and touches no memory.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(seals & libc::F_SEAL_SHRINK != 0)
}

/// A borrowed socket, for vm-sys-util's SCM_RIGHTS messages.
struct Socket<'a>(BorrowedFd<'a>);

impl ScmSocket for Socket<'_> {
    fn socket_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Sends the offer of the rings' memory file `file` on the port's socket: a message of
/// [`OFFER`] carrying the descriptor. Sent before the socket carries anything else, it is the
/// first message the monitor reads.
pub fn offer(socket: BorrowedFd<'_>, file: &File) -> io::Result<()> {
    let sent = Socket(socket)
        .send_with_fd(&OFFER[..], file.as_raw_fd())
        .map_err(io::Error::from)?;
    if sent != OFFER.len() {
        return Err(io::Error::other("the offer of the rings was cut"));
    }
    Ok(())
}

/// Takes the rings' memory file if the first message waiting on `socket` is an offer; leaves
/// the descriptor as it is otherwise (a port without rings, whose first message may be a frame,
/// or no socket at all). An error only for a malformed offer.
pub fn take_offer(socket: BorrowedFd<'_>) -> io::Result<Option<File>> {
    let mut peek = [0u8; 16];
    // SAFETY: recv writes at most `peek.len()` bytes into `peek`; MSG_PEEK leaves the message
    // (and any descriptor it carries) queued.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            peek.as_mut_ptr().cast(),
            peek.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    // Nothing waiting, or no socket at all (a TAP, a pipe): no offer.
    if n < 0 || peek.get(..n as usize) != Some(&OFFER[..]) {
        return Ok(None);
    }
    let mut buf = [0u8; 16];
    let (_, file) = Socket(socket)
        .recv_with_fd(&mut buf)
        .map_err(io::Error::from)?;
    let file =
        file.ok_or_else(|| io::Error::other("the offer of the rings carried no descriptor"))?;
    // Received without MSG_CMSG_CLOEXEC: no child of the monitor may inherit it.
    // SAFETY: F_SETFD on a descriptor we own changes only its flags and touches no memory.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(file))
}

/// Wakes the peer: a one-byte message on the port's socket. A full socket is no error: it holds
/// messages whose arrival already woke the peer, which reads its socket dry when it wakes.
pub fn send_doorbell(socket: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: send reads one byte from a constant; MSG_NOSIGNAL: a closed peer is EPIPE.
    let rc = unsafe {
        libc::send(
            socket.as_raw_fd(),
            (&DOORBELL as *const u8).cast(),
            1,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::WouldBlock {
            return Err(e);
        }
    }
    Ok(())
}
