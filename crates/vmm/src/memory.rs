//! Guest memory and the one checked door through which the monitor touches it.
//!
//! Every guest address the monitor uses on the guest's behalf (hypercall argument structs,
//! buffers, the HALT cookie) goes through [`GuestMemory::check`]: the range must lie inside guest
//! memory without overflow, and outside what the guest may not hand the monitor (the monitor's
//! own page tables, GDT, IDT and TSS in deprivileged mode; read-only text and boot info for
//! writes). Only the setup code writes monitor structures, through [`GuestMemory::setup_write`].

use std::ops::Range;
use std::sync::atomic::Ordering;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _, GuestMemoryMmap, VolatileSlice};

/// A guest address range the guest handed to the monitor that it may not use.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("Invalid guest access: gpa={gpa:#x}, sz={len}")]
pub struct GuestAccessError {
    pub gpa: u64,
    pub len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("could not map {size} bytes of guest memory: {source}")]
    Map {
        size: u64,
        source: vm_memory::mmap::FromRangesError,
    },
    #[error("could not protect guest memory {start:#x}..{end:#x}: {source}")]
    Protect {
        start: u64,
        end: u64,
        source: std::io::Error,
    },
}

/// What the monitor is about to do with a guest range on the guest's behalf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The monitor reads guest bytes (PUTS data, NET_WRITE frame, argument struct).
    Read,
    /// The monitor writes guest bytes (NET_READ, BLOCK_READ, hypercall results).
    Write,
}

/// Guest physical memory: one anonymous, zeroed, lazily backed mapping at GPA 0.
pub struct GuestMemory {
    mem: GuestMemoryMmap,
    size: u64,
    /// Ranges the guest may never name in a hypercall (monitor-owned structures).
    forbidden: Vec<Range<u64>>,
    /// Ranges the monitor will not write on the guest's behalf (text, rodata, boot info).
    read_only: Vec<Range<u64>>,
}

impl GuestMemory {
    /// Maps `size` bytes of fresh guest memory. Anonymous private memory with MAP_NORESERVE
    /// (vm-memory's default) costs host RSS only for pages the guest touches (docs/hvt-abi.md, PVM
    /// hosts).
    pub fn new(size: u64) -> Result<Self, MemoryError> {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)])
            .map_err(|source| MemoryError::Map { size, source })?;
        Ok(Self {
            mem,
            size,
            forbidden: Vec::new(),
            read_only: Vec::new(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host virtual address of GPA 0, for KVM_SET_USER_MEMORY_REGION.
    pub fn host_base(&self) -> u64 {
        // Guest memory is one region starting at GPA 0; the address is valid by construction.
        self.mem
            .get_host_address(GuestAddress(0))
            .map(|p| p as u64)
            .unwrap_or(0)
    }

    /// Declares `range` as never usable in a hypercall.
    pub fn forbid(&mut self, range: Range<u64>) {
        self.forbidden.push(range);
    }

    /// Declares `range` as not writable by the monitor on the guest's behalf.
    pub fn deny_writes(&mut self, range: Range<u64>) {
        self.read_only.push(range);
    }

    /// The one door: checks that `[gpa, gpa + len)` is guest memory the guest may hand the
    /// monitor for `access` (docs/hvt-abi.md, Hypercalls: every guest address and length is
    /// checked).
    pub fn check(&self, gpa: u64, len: u64, access: Access) -> Result<(), GuestAccessError> {
        let err = GuestAccessError { gpa, len };
        let end = gpa.checked_add(len).ok_or(err.clone())?;
        if end > self.size {
            return Err(err);
        }
        let overlaps = |r: &Range<u64>| gpa < r.end && end > r.start && len > 0;
        if self.forbidden.iter().any(overlaps) {
            return Err(err);
        }
        if access == Access::Write && self.read_only.iter().any(overlaps) {
            return Err(err);
        }
        Ok(())
    }

    /// Copies guest bytes at `gpa` into `buf` after [`Self::check`].
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestAccessError> {
        self.check(gpa, buf.len() as u64, Access::Read)?;
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| GuestAccessError {
                gpa,
                len: buf.len() as u64,
            })
    }

    /// Copies `data` into guest memory at `gpa` after [`Self::check`].
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), GuestAccessError> {
        self.check(gpa, data.len() as u64, Access::Write)?;
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| GuestAccessError {
                gpa,
                len: data.len() as u64,
            })
    }

    /// A host pointer to a checked guest range, for handing straight to a syscall
    /// (read/write/pread/pwrite) without copying.
    pub fn host_ptr(
        &self,
        gpa: u64,
        len: u64,
        access: Access,
    ) -> Result<*mut u8, GuestAccessError> {
        self.check(gpa, len, access)?;
        self.mem
            .get_host_address(GuestAddress(gpa))
            .map_err(|_| GuestAccessError { gpa, len })
    }

    /// A checked guest range as a volatile slice, for copying frames between guest memory and
    /// other shared memory (a fabric port's rings) without an intermediate buffer.
    pub fn slice(
        &self,
        gpa: u64,
        len: u64,
        access: Access,
    ) -> Result<VolatileSlice<'_, ()>, GuestAccessError> {
        self.check(gpa, len, access)?;
        self.mem
            .get_slice(GuestAddress(gpa), len as usize)
            .map_err(|_| GuestAccessError { gpa, len })
    }

    /// Writes monitor-built structures (page tables, boot info, kernel image) during setup.
    /// Only range-checked: setup code is trusted, its inputs were validated by the loader.
    pub fn setup_write(&self, gpa: u64, data: &[u8]) -> Result<(), GuestAccessError> {
        let len = data.len() as u64;
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => {}
            _ => return Err(GuestAccessError { gpa, len }),
        }
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|_| GuestAccessError { gpa, len })
    }

    /// Reads guest bytes for the monitor's own use (fault reports), range-checked only.
    pub fn setup_read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), GuestAccessError> {
        let len = buf.len() as u64;
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => {}
            _ => return Err(GuestAccessError { gpa, len }),
        }
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| GuestAccessError { gpa, len })
    }

    /// Atomically loads the u32 at `gpa` (shared ring indices and flags), range-checked only:
    /// the monitor computes these addresses itself.
    pub fn load_u32(&self, gpa: u64, order: Ordering) -> Result<u32, GuestAccessError> {
        self.mem
            .load(GuestAddress(gpa), order)
            .map_err(|_| GuestAccessError { gpa, len: 4 })
    }

    /// Atomically stores the u32 at `gpa` (see [`Self::load_u32`]).
    pub fn store_u32(&self, gpa: u64, value: u32, order: Ordering) -> Result<(), GuestAccessError> {
        self.mem
            .store(value, GuestAddress(gpa), order)
            .map_err(|_| GuestAccessError { gpa, len: 4 })
    }

    /// Makes the host mapping of `[start, end)` read-only (docs/hvt-abi.md, Loading, rule 7), so
    /// that neither the guest (through KVM) nor a monitor bug can write there. Page-aligned ranges
    /// only.
    pub fn protect_read_only(&self, start: u64, end: u64) -> Result<(), MemoryError> {
        assert!(
            start.is_multiple_of(4096)
                && end.is_multiple_of(4096)
                && start <= end
                && end <= self.size
        );
        if start == end {
            return Ok(());
        }
        let ptr = self
            .mem
            .get_host_address(GuestAddress(start))
            .map_err(|e| MemoryError::Protect {
                start,
                end,
                source: std::io::Error::other(e),
            })?;
        // SAFETY: [ptr, ptr + (end - start)) lies inside our own guest mapping (asserted above:
        // end <= size and the mapping is one region of `size` bytes at GPA 0) and is page aligned
        // because guest memory is page aligned and start is. No Rust reference into this range
        // is alive; later writes go through vm-memory's volatile accessors, which the access map
        // keeps away from it.
        let rc = unsafe { libc::mprotect(ptr.cast(), (end - start) as usize, libc::PROT_READ) };
        if rc != 0 {
            return Err(MemoryError::Protect {
                start,
                end,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_refuses_out_of_range_and_overflow() {
        let m = GuestMemory::new(4 << 20).unwrap();
        assert!(m.check(0, 4 << 20, Access::Read).is_ok());
        assert!(m.check((4 << 20) - 1, 2, Access::Read).is_err());
        assert!(m.check(u64::MAX - 3, 8, Access::Read).is_err());
        assert!(m.check(5 << 20, 0, Access::Read).is_err());
    }

    #[test]
    fn forbidden_and_read_only_ranges() {
        let mut m = GuestMemory::new(4 << 20).unwrap();
        m.forbid(0..0x10000);
        m.deny_writes(0x10000..0x20000);
        assert!(m.check(0x2000, 8, Access::Read).is_err());
        assert!(m.check(0xfffc, 8, Access::Read).is_err());
        assert!(m.check(0x10000, 8, Access::Read).is_ok());
        assert!(m.check(0x10000, 8, Access::Write).is_err());
        assert!(m.check(0x1fff8, 16, Access::Write).is_err());
        assert!(m.check(0x20000, 8, Access::Write).is_ok());
        let mut buf = [0u8; 8];
        assert_eq!(
            m.read(0x2000, &mut buf),
            Err(GuestAccessError {
                gpa: 0x2000,
                len: 8
            })
        );
    }

    #[test]
    fn memory_starts_zeroed_and_round_trips() {
        let m = GuestMemory::new(2 << 20).unwrap();
        let mut buf = [1u8; 16];
        m.read(0x1000, &mut buf).unwrap();
        assert_eq!(buf, [0; 16]);
        m.write(0x1000, b"hello").unwrap();
        m.read(0x1000, &mut buf[..5]).unwrap();
        assert_eq!(&buf[..5], b"hello");
    }
}
