//! Hypercall dispatch (docs/hvt-abi.md, Hypercalls): a 4-byte `out` to port 0x500 + nr whose value
//! is the guest address of the argument struct. Arguments are copied out of guest memory through
//! the checked door, decoded at fixed offsets, and results written back the same way.

use sturdy_abi::hypercall::{self as hc, BlockFlush, BlockIo, Halt, NetIo, Poll, Puts, Walltime};

use std::os::fd::AsRawFd;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use crate::devices::console::Console;
use crate::devices::ring::RingArea;
use crate::devices::{clock, Device};
use crate::memory::{Access, GuestMemory};
use crate::VmError;

/// What the run loop does after a hypercall.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    Halt(u8),
}

/// The devices, indexed by handle (index 0 is the manifest's reserved entry).
pub struct Devices(pub Vec<Option<Device>>);

impl Devices {
    fn get(&self, handle: u64) -> Option<&Device> {
        usize::try_from(handle)
            .ok()
            .and_then(|h| self.0.get(h))
            .and_then(Option::as_ref)
    }

    /// The descriptors of the block devices' backing files.
    pub fn block_fds(&self) -> impl Iterator<Item = std::os::fd::RawFd> + '_ {
        self.0.iter().filter_map(|d| match d {
            Some(Device::Block(b)) => Some(b.raw_fd()),
            _ => None,
        })
    }

    pub fn any_block(&self) -> bool {
        self.0.iter().any(|d| matches!(d, Some(Device::Block(_))))
    }

    fn any_net(&self) -> bool {
        self.0.iter().any(|d| matches!(d, Some(Device::Net(_))))
    }
}

/// The NIC rings as POLL sees them: where frames wait, and the descriptor the I/O thread
/// signals when it queued frames for a sleeping guest.
pub struct PollRing {
    pub area: Arc<RingArea>,
    pub wake: EventFd,
}

/// Handles one `out` exit: `port` and the bytes written. `flush`: whether the guest was offered
/// sturdy's BLOCK_FLUSH; to others its port is as invalid as any port outside Solo5's
/// (docs/hvt-abi.md, Hypercalls).
pub fn dispatch(
    mem: &GuestMemory,
    devices: &Devices,
    console: &mut Console,
    ring: Option<&PollRing>,
    flush: bool,
    port: u16,
    data: &[u8],
) -> Result<Next, VmError> {
    let nr = port.wrapping_sub(hc::PIO_BASE);
    let known = (1..=hc::MAX).contains(&nr) || (flush && nr == hc::STURDY_BLOCK_FLUSH);
    if data.len() != 4 || !known || port < hc::PIO_BASE {
        return Err(VmError::InvalidPort { port });
    }
    let gpa = u64::from(u32::from_le_bytes([data[0], data[1], data[2], data[3]]));
    match nr {
        hc::WALLTIME => {
            mem.check(gpa, Walltime::SIZE as u64, Access::Write)?;
            mem.write(
                gpa + Walltime::OFF_NSECS as u64,
                &clock::walltime_ns().to_le_bytes(),
            )?;
        }
        hc::PUTS => {
            let a = read_args::<{ Puts::SIZE }>(mem, gpa)?;
            console.puts(
                mem,
                sturdy_abi::get_u64(&a, Puts::OFF_DATA),
                sturdy_abi::get_u64(&a, Puts::OFF_LEN),
            )?;
        }
        hc::POLL => poll(mem, devices, ring, gpa)?,
        hc::BLOCK_WRITE | hc::BLOCK_READ => {
            if !devices.any_block() {
                return Err(VmError::InvalidHypercall { nr });
            }
            mem.check(gpa, BlockIo::SIZE as u64, Access::Write)?;
            let a = read_args::<{ BlockIo::SIZE }>(mem, gpa)?;
            let ret = match devices.get(sturdy_abi::get_u64(&a, BlockIo::OFF_HANDLE)) {
                Some(Device::Block(b)) => b.io(mem, &a, nr == hc::BLOCK_WRITE)?,
                _ => hc::RESULT_EINVAL,
            };
            mem.write(gpa + BlockIo::OFF_RET as u64, &ret.to_le_bytes())?;
        }
        hc::STURDY_BLOCK_FLUSH => {
            mem.check(gpa, BlockFlush::SIZE as u64, Access::Write)?;
            let a = read_args::<{ BlockFlush::SIZE }>(mem, gpa)?;
            let ret = match devices.get(sturdy_abi::get_u64(&a, BlockFlush::OFF_HANDLE)) {
                Some(Device::Block(b)) => {
                    b.flush()?;
                    hc::RESULT_OK
                }
                _ => hc::RESULT_EINVAL,
            };
            mem.write(gpa + BlockFlush::OFF_RET as u64, &ret.to_le_bytes())?;
        }
        hc::NET_WRITE | hc::NET_READ => {
            if !devices.any_net() {
                return Err(VmError::InvalidHypercall { nr });
            }
            mem.check(gpa, NetIo::SIZE as u64, Access::Write)?;
            let a = read_args::<{ NetIo::SIZE }>(mem, gpa)?;
            let (ret, len) = match devices.get(sturdy_abi::get_u64(&a, NetIo::OFF_HANDLE)) {
                Some(Device::Net(n)) if nr == hc::NET_WRITE => (n.write(mem, &a)?, None),
                Some(Device::Net(n)) => {
                    let (ret, len) = n.read(mem, &a)?;
                    (ret, Some(len))
                }
                _ => (hc::RESULT_EINVAL, None),
            };
            if let Some(len) = len {
                mem.write(gpa + NetIo::OFF_LEN as u64, &len.to_le_bytes())?;
            }
            mem.write(gpa + NetIo::OFF_RET as u64, &ret.to_le_bytes())?;
        }
        hc::HALT => {
            let a = read_args::<{ Halt::SIZE }>(mem, gpa)?;
            let cookie = sturdy_abi::get_u64(&a, Halt::OFF_COOKIE);
            if cookie != 0 {
                mem.check(cookie, hc::HALT_COOKIE_MAX as u64, Access::Read)?;
            }
            let status = sturdy_abi::get_u32(&a, Halt::OFF_EXIT_STATUS);
            return Ok(Next::Halt(status as u8));
        }
        _ => return Err(VmError::InvalidHypercall { nr }),
    }
    Ok(Next::Continue)
}

fn read_args<const N: usize>(mem: &GuestMemory, gpa: u64) -> Result<[u8; N], VmError> {
    let mut a = [0u8; N];
    mem.read(gpa, &mut a)?;
    Ok(a)
}

/// POLL: wait for a readable NIC or the timeout (docs/hvt-abi.md, Hypercalls). This is how a guest
/// idles.
fn poll(
    mem: &GuestMemory,
    devices: &Devices,
    ring: Option<&PollRing>,
    gpa: u64,
) -> Result<(), VmError> {
    mem.check(gpa, Poll::SIZE as u64, Access::Write)?;
    let a = read_args::<{ Poll::SIZE }>(mem, gpa)?;
    let mut timeout_ns = sturdy_abi::get_u64(&a, Poll::OFF_TIMEOUT_NSECS);
    // NICs the guest switched to rings belong to the I/O thread: POLL waits on its signal.
    let ring = ring.filter(|r| r.area.enabled(mem));
    let mut ring_ready = ring.map_or(0, |r| r.area.rx_ready(mem));
    if ring_ready != 0 {
        timeout_ns = 0;
    }
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut handles: Vec<u64> = Vec::new();
    if let Some(r) = ring {
        fds.push(libc::pollfd {
            fd: r.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        handles.push(u64::MAX);
    }
    for (handle, dev) in devices.0.iter().enumerate() {
        if let Some(Device::Net(n)) = dev {
            if ring.is_some_and(|r| r.area.serves(handle as u64)) {
                continue;
            }
            fds.push(libc::pollfd {
                fd: n.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            handles.push(handle as u64);
        }
    }
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000).min(i64::MAX as u64) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `fds` is a valid array of fds.len() pollfd structs and `ts` a valid timespec, both
    // alive for the call; ppoll writes only `revents`.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    let mut ready_set = 0u64;
    if rc > 0 {
        for (fd, handle) in fds.iter().zip(&handles) {
            if fd.revents & libc::POLLIN != 0 && *handle < 64 {
                ready_set |= 1 << handle;
            }
        }
    }
    if let Some(r) = ring {
        let _ = r.wake.read();
        ring_ready |= r.area.rx_ready(mem);
    }
    ready_set |= ring_ready;
    let ready = ready_set.count_ones() as i32;
    mem.write(gpa + Poll::OFF_READY_SET as u64, &ready_set.to_le_bytes())?;
    mem.write(gpa + Poll::OFF_RET as u64, &ready.to_le_bytes())?;
    Ok(())
}
