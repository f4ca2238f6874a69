//! The block device the log lives on.

use core::fmt;

/// A device of `blocks()` blocks of `block_size()` bytes, read and written one whole block at a
/// time: the shape of a Solo5 block device (docs/hvt-abi.md, Hypercalls), whose guest side
/// implements this trait.
///
/// Durability is the device's to define through [`flush`](BlockDevice::flush): a write that
/// returned `Ok` may still be lost by a crash of the machine, together with any other write
/// since the last flush, in any combination, until a flush returns `Ok`.
pub trait BlockDevice {
    type Error: fmt::Debug + fmt::Display;

    /// Bytes per block (512 or 4096 on real devices).
    fn block_size(&self) -> usize;

    /// Number of blocks.
    fn blocks(&self) -> u64;

    /// Reads block `block` into `buf`, which is exactly one block long.
    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes `buf`, exactly one block, to block `block`.
    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Self::Error>;

    /// Writes `bytes`, whole blocks, from block `first` on; on error, any of them may have been
    /// written. One request where the device can take several blocks at once (each request to
    /// a unikernel's device is an exit to its monitor); block by block otherwise. On error,
    /// returns the block that failed (or the first, if the device cannot tell) with the error.
    fn write_blocks(&mut self, first: u64, bytes: &[u8]) -> Result<(), (u64, Self::Error)> {
        let size = self.block_size();
        bytes
            .chunks(size)
            .zip(first..)
            .try_for_each(|(bytes, block)| self.write(block, bytes).map_err(|e| (block, e)))
    }

    /// Makes every write that returned `Ok` before it durable. When it returns `Ok`, the log
    /// acknowledges the writes of a commit.
    fn flush(&mut self) -> Result<(), Self::Error>;

    /// Whether [`flush`](BlockDevice::flush) reaches stable storage. A device that cannot
    /// flush (a Solo5 block device under a monitor without sturdy's BLOCK_FLUSH) returns `Ok`
    /// from `flush` and `false` here; the server then says so (`appendfsync no`).
    fn durable_flush(&self) -> bool;
}
