//! Block devices: `--block:NAME=PATH`, `--block-sector-size:NAME=N`, BLOCK_READ, BLOCK_WRITE
//! (docs/hvt-abi.md, Hypercalls, Monitor command line), and sturdy's BLOCK_FLUSH
//! (`sturdy_abi::hypercall::STURDY_BLOCK_FLUSH`).

use std::fs::File;
use std::os::fd::AsRawFd;

use sturdy_abi::hypercall::{BlockIo, RESULT_EINVAL, RESULT_OK};

use super::DeviceError;
use crate::memory::{Access, GuestMemory};
use crate::VmError;

/// Default sector size (docs/hvt-abi.md, Monitor command line).
pub const DEFAULT_SECTOR_SIZE: u64 = 512;

pub struct BlockDevice {
    pub name: String,
    file: File,
    pub capacity: u64,
    pub block_size: u64,
}

impl BlockDevice {
    /// Opens `path` read-write; its size is the capacity, which must be a non-zero multiple of
    /// `sector_size` (already checked to be a power of two >= 512 by the command line parser).
    pub fn open(name: &str, path: &str, sector_size: u64) -> Result<Self, DeviceError> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| DeviceError::BlockOpen {
                name: name.into(),
                path: path.into(),
                source,
            })?;
        let size = file
            .metadata()
            .map_err(|source| DeviceError::BlockOpen {
                name: name.into(),
                path: path.into(),
                source,
            })?
            .len();
        if size == 0 || size % sector_size != 0 {
            return Err(DeviceError::BlockMisaligned {
                name: name.into(),
                path: path.into(),
                size,
                sector: sector_size,
            });
        }
        Ok(Self {
            name: name.into(),
            file,
            capacity: size,
            block_size: sector_size,
        })
    }

    /// Its backing file's descriptor (the only one BLOCK_READ and BLOCK_WRITE may use, and
    /// BLOCK_FLUSH's fdatasync).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }

    /// Checks `offset`/`len` against the capacity (docs/hvt-abi.md, Hypercalls: EINVAL if offset >=
    /// capacity or offset + len overflows or exceeds it).
    fn in_range(&self, offset: u64, len: u64) -> bool {
        offset < self.capacity
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= self.capacity)
    }

    /// BLOCK_READ (`write == false`) or BLOCK_WRITE, arguments already decoded; returns `ret`.
    /// The guest buffer goes straight to pread/pwrite through the checked door.
    pub fn io(&self, mem: &GuestMemory, args: &[u8], write: bool) -> Result<i32, VmError> {
        let offset = sturdy_abi::get_u64(args, BlockIo::OFF_OFFSET);
        let data = sturdy_abi::get_u64(args, BlockIo::OFF_DATA);
        let len = sturdy_abi::get_u64(args, BlockIo::OFF_LEN);
        if !self.in_range(offset, len) {
            return Ok(RESULT_EINVAL);
        }
        // A block read writes guest memory; a block write reads it.
        let access = if write { Access::Read } else { Access::Write };
        let ptr = mem.host_ptr(data, len, access)?;
        let mut done = 0u64;
        while done < len {
            let (p, n, at) = (
                // SAFETY: `ptr..ptr+len` was checked to lie in guest memory (host_ptr above), so
                // ptr + done with done < len stays inside the mapping.
                unsafe { ptr.add(done as usize) },
                (len - done) as usize,
                (offset + done) as libc::off_t,
            );
            let fd = self.file.as_raw_fd();
            let rc = if write {
                // SAFETY: p..p+n lies inside the checked guest range; pwrite only reads it.
                unsafe { libc::pwrite(fd, p.cast(), n, at) }
            } else {
                // SAFETY: p..p+n lies inside the checked guest range, which the access map
                // allows the monitor to write; pread writes at most n bytes there.
                unsafe { libc::pread(fd, p.cast(), n, at) }
            };
            match rc {
                n if n > 0 => done += n as u64,
                0 => {
                    return Err(self.io_error(
                        write,
                        offset,
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                    ))
                }
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(self.io_error(write, offset, e));
                }
            }
        }
        Ok(RESULT_OK)
    }

    /// BLOCK_FLUSH: `fdatasync` of the backing file, so that every write that returned before
    /// is on the host's storage. A failure is fatal (as a failed write is, docs/hvt-abi.md,
    /// Hypercalls): the kernel may have dropped the dirty pages, and a guest told "done" would
    /// acknowledge lost data.
    pub fn flush(&self) -> Result<(), VmError> {
        self.file.sync_data().map_err(|source| VmError::BlockIo {
            name: self.name.clone(),
            op: "flush (fdatasync)",
            offset: 0,
            source,
        })
    }

    fn io_error(&self, write: bool, offset: u64, source: std::io::Error) -> VmError {
        VmError::BlockIo {
            name: self.name.clone(),
            op: if write { "write" } else { "read" },
            offset,
            source,
        }
    }
}
