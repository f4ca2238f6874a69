//! Block devices (manifest type BLOCK_BASIC): whole, aligned blocks read and written
//! synchronously with the BLOCK_READ and BLOCK_WRITE hypercalls (docs/hvt-abi.md, Hypercalls), and
//! made durable with sturdy's BLOCK_FLUSH where the monitor offers it.

use core::sync::atomic::{AtomicBool, Ordering};

use sturdy_abi::hypercall::HOST_FEATURE_BLOCK_FLUSH;
use sturdy_abi::mft::MFT_DEV_BLOCK_BASIC;
use sturdy_abi::BootInfo;

use crate::{hypercall, manifest, Error};

/// Whether the monitor offers BLOCK_FLUSH (read from the boot info once, at boot).
static FLUSH: AtomicBool = AtomicBool::new(false);

pub(crate) fn init(boot_info: &BootInfo) {
    FLUSH.store(
        boot_info.host_features & HOST_FEATURE_BLOCK_FLUSH != 0,
        Ordering::Relaxed,
    );
}

/// A block device declared in the manifest with `block "NAME"`.
///
/// Requests are one block at a time: `offset` a multiple of [`block_size`](Block::block_size)
/// inside the device and a buffer of exactly one block. The SDK refuses anything else with
/// [`Error::BadRequest`] before it reaches the monitor. A write that returns `Ok` is on the host's
/// backing file, which survives the guest and its monitor, but until a [`flush`](Block::flush)
/// maybe not the host (it may sit in the host's page cache).
#[derive(Debug)]
pub struct Block {
    handle: u64,
    capacity: u64,
    block_size: u64,
}

impl Block {
    /// Opens the block device `name` from the manifest.
    pub fn open(name: &str) -> Result<Block, Error> {
        let (handle, entry) = manifest::open(name, MFT_DEV_BLOCK_BASIC)?;
        let block_size = u64::from(entry.block_size());
        // Spec 6 guarantees this; checked so that no division below can be by zero.
        if !block_size.is_power_of_two() {
            return Err(Error::Unspecified);
        }
        Ok(Block {
            handle,
            capacity: entry.capacity(),
            block_size,
        })
    }

    /// The device's size in bytes, a multiple of the block size.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The size of a block in bytes: a power of two, at least 512.
    pub fn block_size(&self) -> usize {
        self.block_size as usize
    }

    /// The number of blocks.
    pub fn blocks(&self) -> u64 {
        self.capacity / self.block_size
    }

    /// The device's handle, for raw [`hypercall`](crate::hypercall)s.
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// Reads the block at byte `offset` into `buf`, which must be exactly one block long.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.check(offset, buf.len())?;
        Error::check(hypercall::block_read(self.handle, offset, buf))
    }

    /// Writes `buf`, exactly one block, to the block at byte `offset`.
    pub fn write(&self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        self.check(offset, buf.len())?;
        Error::check(hypercall::block_write(self.handle, offset, buf))
    }

    /// Writes `buf`, one or more whole blocks, from the block at byte `offset` on, with one
    /// hypercall (one exit to the monitor instead of one per block). Solo5's guest library
    /// issues single blocks only, but monitors check just that the range lies inside the
    /// device (docs/hvt-abi.md, Hypercalls: `sturdy-hvt`, and upstream `solo5-hvt` alike). The
    /// blocks may reach the backing file in any order; until a [`flush`](Block::flush), as with
    /// single writes, a host crash may keep any of them.
    pub fn write_blocks(&self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        let whole = !buf.is_empty() && (buf.len() as u64).is_multiple_of(self.block_size);
        let inside = offset
            .checked_add(buf.len() as u64)
            .is_some_and(|end| end <= self.capacity);
        if !(whole && offset.is_multiple_of(self.block_size) && inside) {
            return Err(Error::BadRequest);
        }
        Error::check(hypercall::block_write(self.handle, offset, buf))
    }

    /// Whether [`flush`](Block::flush) is available: the monitor is `sturdy-hvt` running this
    /// guest deprivileged. Not under upstream Solo5 monitors.
    pub fn can_flush(&self) -> bool {
        FLUSH.load(Ordering::Relaxed)
    }

    /// Makes every write that returned before it durable on the host's storage (the monitor
    /// `fdatasync`s the backing file). [`Error::Unsupported`] without touching the monitor
    /// when it offers no flush ([`can_flush`](Block::can_flush)). The monitor ends the run
    /// rather than return from a flush that failed.
    pub fn flush(&self) -> Result<(), Error> {
        if !self.can_flush() {
            return Err(Error::Unsupported);
        }
        Error::check(hypercall::block_flush(self.handle))
    }

    fn check(&self, offset: u64, len: usize) -> Result<(), Error> {
        let whole_block = len as u64 == self.block_size && offset.is_multiple_of(self.block_size);
        if whole_block && offset < self.capacity {
            Ok(())
        } else {
            Err(Error::BadRequest)
        }
    }
}
