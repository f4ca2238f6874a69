//! Block devices (manifest type BLOCK_BASIC): whole, aligned blocks read and written
//! synchronously with the BLOCK_READ and BLOCK_WRITE hypercalls (spec 5).

use sturdy_abi::mft::MFT_DEV_BLOCK_BASIC;

use crate::{hypercall, manifest, Error};

/// A block device declared in the manifest with `block "NAME"`.
///
/// Requests are one block at a time: `offset` a multiple of [`block_size`](Block::block_size)
/// inside the device and a buffer of exactly one block. The SDK refuses anything else with
/// [`Error::BadRequest`] before it reaches the monitor. A write that returns `Ok` is on the host's
/// backing file.
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

    fn check(&self, offset: u64, len: usize) -> Result<(), Error> {
        let whole_block = len as u64 == self.block_size && offset.is_multiple_of(self.block_size);
        if whole_block && offset < self.capacity {
            Ok(())
        } else {
            Err(Error::BadRequest)
        }
    }
}
