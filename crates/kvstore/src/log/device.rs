//! The block device the log lives on.

use core::fmt;

/// A device of `blocks()` blocks of `block_size()` bytes, read and written one whole block at a
/// time: the shape of a Solo5 block device (spec 5), whose guest side implements this trait.
pub trait BlockDevice {
    type Error: fmt::Debug + fmt::Display;

    /// Bytes per block (512 or 4096 on real devices).
    fn block_size(&self) -> usize;

    /// Number of blocks.
    fn blocks(&self) -> u64;

    /// Reads block `block` into `buf`, which is exactly one block long.
    fn read(&mut self, block: u64, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes `buf`, exactly one block, to block `block`. Returning `Ok` means the data is
    /// durable: the log acknowledges writes on the strength of it.
    fn write(&mut self, block: u64, buf: &[u8]) -> Result<(), Self::Error>;
}
