//! Network devices: `--net:NAME=IFACE` (a TAP interface), `--net:NAME=@FD` (an inherited file
//! descriptor, e.g. one end of a SOCK_SEQPACKET socketpair: one message = one Ethernet frame),
//! `--net-mac:NAME=MAC`; NET_WRITE and NET_READ (docs/hvt-abi.md, Hypercalls, Monitor command
//! line).
//!
//! A descriptor from sturdy's fabric carries, as its first message, an offer of shared-memory
//! rings (`sturdy_port_ring`). It is taken here, whatever the guest: the NIC I/O thread serves
//! the rings for a guest on sturdy's NIC rings (`ring.rs`); for any other guest they stay unused
//! and the socket carries the frames, as without them.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use sturdy_port_ring::PortRings;

use sturdy_abi::hypercall::{NetIo, RESULT_AGAIN, RESULT_EINVAL, RESULT_OK};

use super::DeviceError;
use crate::memory::{Access, GuestMemory};
use crate::VmError;

/// MTU of a NIC attached by file descriptor (docs/hvt-abi.md, Monitor command line).
pub const DEFAULT_FD_MTU: u16 = 1500;
/// Ethernet header without FCS: a frame is at most mtu + 14 bytes (docs/hvt-abi.md, Hypercalls).
pub const ETHERNET_HEADER: u64 = 14;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;

pub struct NetDevice {
    pub name: String,
    fd: OwnedFd,
    pub mac: [u8; 6],
    pub mtu: u16,
    /// Rings the fabric offered on the descriptor, until the I/O thread takes them.
    rings: Option<PortRings>,
}

impl NetDevice {
    /// Attaches the existing, up TAP interface `iface`.
    pub fn open_tap(name: &str, iface: &str, mac: [u8; 6]) -> Result<Self, DeviceError> {
        let fail = |reason: String| DeviceError::Tap {
            name: name.into(),
            iface: iface.into(),
            reason,
        };
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
            return Err(fail(format!(
                "interface names are 1 to {} bytes",
                libc::IFNAMSIZ - 1
            )));
        }
        let mut ifr = IfReq::new(iface);
        let probe =
            socket_for_ioctl().map_err(|e| fail(format!("cannot query interfaces: {e}")))?;
        // SIOCGIFFLAGS tells whether the interface exists and is up.
        ifr.ioctl(probe.as_raw_fd(), libc::SIOCGIFFLAGS as libc::c_ulong).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENODEV) {
                fail(format!("no such network interface (create it with `ip tuntap add {iface} mode tap` and `ip link set {iface} up`)"))
            } else {
                fail(format!("cannot query the interface: {e}"))
            }
        })?;
        if ifr.short() & libc::IFF_UP as i16 == 0 {
            return Err(fail(format!(
                "the interface is down (bring it up with `ip link set {iface} up`)"
            )));
        }
        ifr.ioctl(probe.as_raw_fd(), libc::SIOCGIFMTU as libc::c_ulong)
            .map_err(|e| fail(format!("cannot read the MTU: {e}")))?;
        let mtu = ifr.int();
        let mtu = u16::try_from(mtu).map_err(|_| fail(format!("unsupported MTU {mtu}")))?;

        // SAFETY: plain open(2) of a constant NUL-terminated path; the result is checked.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(fail(format!(
                "cannot open /dev/net/tun: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: `raw` is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReq::new(iface);
        req.set_short(IFF_TAP | IFF_NO_PI);
        req.ioctl(fd.as_raw_fd(), TUNSETIFF).map_err(|e| {
            fail(match e.raw_os_error() {
                Some(libc::EINVAL) => "not a TAP interface".into(),
                Some(libc::EBUSY) => "the TAP interface is already in use by another process".into(),
                Some(libc::EPERM) => "permission denied attaching to the TAP interface (run as root or give the TAP to this user)".into(),
                _ => format!("cannot attach: {e}"),
            })
        })?;
        Ok(Self {
            name: name.into(),
            fd,
            mac,
            mtu,
            rings: None,
        })
    }

    /// Takes over the inherited descriptor `fd` (made non-blocking and close-on-exec).
    pub fn from_fd(name: &str, fd: RawFd, mac: [u8; 6]) -> Result<Self, DeviceError> {
        // SAFETY: F_GETFL on an arbitrary integer is harmless; it fails with EBADF if not open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if fd < 0 || flags < 0 {
            return Err(DeviceError::BadFd {
                name: name.into(),
                fd,
            });
        }
        // SAFETY: fd is open (checked above); setting O_NONBLOCK and FD_CLOEXEC changes no memory.
        unsafe {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        // SAFETY: the command line hands this descriptor to the monitor; nothing else in the
        // process owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let rings_error = |reason: String| DeviceError::PortRings {
            name: name.into(),
            fd,
            reason,
        };
        let rings = match sturdy_port_ring::take_offer(owned.as_fd()) {
            Ok(Some(file)) => Some(PortRings::open(file).map_err(|e| rings_error(e.to_string()))?),
            Ok(None) => None,
            Err(e) => return Err(rings_error(e.to_string())),
        };
        Ok(Self {
            name: name.into(),
            fd: owned,
            mac,
            mtu: DEFAULT_FD_MTU,
            rings,
        })
    }

    /// The rings offered on the descriptor, and a descriptor of the socket to ring their
    /// doorbell on, for the I/O thread (once).
    pub fn take_rings(&mut self) -> std::io::Result<Option<(PortRings, OwnedFd)>> {
        match self.rings.take() {
            Some(rings) => Ok(Some((rings, self.fd.try_clone()?))),
            None => Ok(None),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// NET_WRITE: one frame of 14 (the Ethernet header) to mtu + 14 bytes. A frame the host cannot take right now is
    /// dropped, as a NIC would; the guest is never stopped by the network.
    pub fn write(&self, mem: &GuestMemory, args: &[u8]) -> Result<i32, VmError> {
        let data = sturdy_abi::get_u64(args, NetIo::OFF_DATA);
        let len = sturdy_abi::get_u64(args, NetIo::OFF_LEN);
        // Not an Ethernet frame: shorter than its header or longer than the MTU allows.
        if len < ETHERNET_HEADER || len > u64::from(self.mtu) + ETHERNET_HEADER {
            return Ok(RESULT_EINVAL);
        }
        let ptr = mem.host_ptr(data, len, Access::Read)?;
        // SAFETY: ptr..ptr+len was checked to lie in guest memory; write(2) only reads it.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), ptr.cast(), len as usize) };
        Ok(RESULT_OK)
    }

    /// NET_READ: one frame into the guest buffer, or AGAIN. Returns (ret, frame length).
    pub fn read(&self, mem: &GuestMemory, args: &[u8]) -> Result<(i32, u64), VmError> {
        let data = sturdy_abi::get_u64(args, NetIo::OFF_DATA);
        let len = sturdy_abi::get_u64(args, NetIo::OFF_LEN);
        let ptr = mem.host_ptr(data, len, Access::Write)?;
        // SAFETY: ptr..ptr+len was checked to lie in guest memory the monitor may write;
        // read(2) writes at most len bytes there.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), ptr.cast(), len as usize) };
        if n > 0 {
            Ok((RESULT_OK, n as u64))
        } else {
            Ok((RESULT_AGAIN, len))
        }
    }
}

/// A random locally administered unicast MAC (docs/hvt-abi.md, Monitor command line).
pub fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    // SAFETY: getrandom writes at most 6 bytes into `mac`.
    let n = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    if n != 6 {
        // Fall back to the clock: the address only needs to be unlikely to collide.
        let t = super::clock::walltime_ns() ^ u64::from(std::process::id()) << 32;
        mac.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `struct ifreq`: the name, then a union of which we use a short (flags) or an int (MTU).
struct IfReq([u8; 40]);

impl IfReq {
    fn new(name: &str) -> Self {
        let mut b = [0u8; 40];
        b[..name.len()].copy_from_slice(name.as_bytes());
        Self(b)
    }
    fn short(&self) -> i16 {
        i16::from_ne_bytes([self.0[16], self.0[17]])
    }
    fn set_short(&mut self, v: i16) {
        self.0[16..18].copy_from_slice(&v.to_ne_bytes());
    }
    fn int(&self) -> i32 {
        i32::from_ne_bytes([self.0[16], self.0[17], self.0[18], self.0[19]])
    }
    fn ioctl(&mut self, fd: RawFd, req: libc::c_ulong) -> std::io::Result<()> {
        // SAFETY: the request is one of TUNSETIFF, SIOCGIFFLAGS, SIOCGIFMTU, all of which read
        // or write a `struct ifreq` (40 bytes on x86_64), which `self.0` is.
        let rc = unsafe { libc::ioctl(fd, req, self.0.as_mut_ptr()) };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

fn socket_for_ioctl() -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:0a:00:00:02"), Some([2, 0, 10, 0, 0, 2]));
        assert_eq!(parse_mac("02:00:0a:00:00"), None);
        assert_eq!(parse_mac("02:00:0a:00:00:02:03"), None);
        assert_eq!(parse_mac("2:00:0a:00:00:02"), None);
        assert_eq!(parse_mac("zz:00:0a:00:00:02"), None);
    }

    #[test]
    fn random_mac_is_local_unicast() {
        let m = random_mac();
        assert_eq!(m[0] & 0x03, 0x02);
    }
}
