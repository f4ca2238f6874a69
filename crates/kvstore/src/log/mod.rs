//! The crash-safe append-only log: every write the store makes, as records packed back to back
//! from the start of a block device.
//!
//! # Record format
//! All integers little-endian; records are contiguous, cross block boundaries freely and have
//! no padding.
//! ```text
//! offset size
//!  0      4   magic "SKv1"
//!  4      4   CRC-32C of bytes 8..20 and of the payload
//!  8      4   payload length (at most MAX_PAYLOAD)
//! 12      8   sequence number: 0 for the first record, then +1 per record
//! 20      n   payload: op 1 = SET: key length u32, key, value (the rest)
//!                      op 2 = DEL: key count u32, then per key: length u32, key
//! ```
//! A fresh device is all zeros, which reads as an empty log: the log ends at the first header
//! that is all zeros.
//!
//! # Writing
//! Writes are staged ([`Log::stage`]), then made durable together ([`Log::commit`]): the block
//! holding the end of the log is rewritten with the new records appended and the blocks after it
//! are written in ascending order, so a batch of records costs as few block writes as its bytes
//! need. Rewriting that block re-writes the durable bytes it already holds with the same values,
//! so a write torn anywhere in it cannot damage them.
//!
//! # Recovery
//! [`Log::open`] replays records from offset 0 and stops at the first one that does not check
//! (bad magic, length, checksum or sequence number): the torn tail of a crash, which was never
//! acknowledged. It then zeroes that tail, from its last block back to its first, so no byte of
//! it survives to be misread later (for instance the inside of a torn value, which a client
//! controls, once the log ends on a block boundary again). Zeroing backwards means a crash during
//! it leaves the torn header in place, to be found and zeroed again. New records go right after
//! the last good one.
//!
//! There is no compaction: the log grows until the device is full, after which writes are
//! refused with [`LogError::Full`] (nothing already written is at risk).

mod crc32c;
mod device;
mod record;
mod recover;

use alloc::vec::Vec;
use core::fmt;

pub use device::BlockDevice;
pub use record::{Record, HEADER_LEN, MAX_PAYLOAD};
pub use recover::{Recovery, Torn, TornReason};

/// What can go wrong with the log.
#[derive(Debug, PartialEq, Eq)]
pub enum LogError<E> {
    /// The device failed to read a block.
    Read { block: u64, error: E },
    /// The device failed to write a block. Nothing staged is durable; it stays staged and the
    /// next commit writes it again.
    Write { block: u64, error: E },
    /// Not enough room left on the device for the record (or batch).
    Full { needed: u64, free: u64 },
    /// A record above [`MAX_PAYLOAD`].
    TooLarge { len: usize },
    /// The device has a zero block size, or more bytes than a `u64` counts.
    Geometry { block_size: usize, blocks: u64 },
}

impl<E: fmt::Display> fmt::Display for LogError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::Read { block, error } => {
                write!(f, "reading block {block} of the log device: {error}")
            }
            LogError::Write { block, error } => {
                write!(f, "writing block {block} of the log device: {error}")
            }
            LogError::Full { needed, free } => {
                write!(
                    f,
                    "the log device is full ({needed} bytes needed, {free} left)"
                )
            }
            LogError::TooLarge { len } => {
                write!(
                    f,
                    "a record payload of {len} bytes is above the limit of {MAX_PAYLOAD}"
                )
            }
            LogError::Geometry { block_size, blocks } => {
                write!(
                    f,
                    "unusable log device: {blocks} blocks of {block_size} bytes"
                )
            }
        }
    }
}

/// The log on its device.
#[derive(Debug)]
pub struct Log<D: BlockDevice> {
    dev: D,
    block_size: usize,
    capacity: u64,
    /// Device offset of `buf[0]`: the start of the block that holds the end of the log.
    base: u64,
    /// The durable bytes of that block (`buf[..durable]`, less than a block), followed by the
    /// records staged since the last commit.
    buf: Vec<u8>,
    durable: usize,
    next_seq: u64,
}

impl<D: BlockDevice> Log<D> {
    /// Opens the log on `dev`, passing every record, in order, to `replay` (see
    /// [Recovery](self#recovery)).
    pub fn open(
        mut dev: D,
        replay: impl FnMut(Record<'_>),
    ) -> Result<(Log<D>, Recovery), LogError<D::Error>> {
        let block_size = dev.block_size();
        let blocks = dev.blocks();
        let capacity = u64::try_from(block_size)
            .ok()
            .filter(|&size| size > 0)
            .and_then(|size| size.checked_mul(blocks))
            .ok_or(LogError::Geometry { block_size, blocks })?;
        let recovery = recover::replay(&mut dev, capacity, replay)?;
        if recovery.torn.is_some() {
            recover::scrub(&mut dev, recovery.bytes)?;
        }
        let end = recovery.bytes;
        let durable = (end % block_size as u64) as usize;
        let base = end - durable as u64;
        let mut buf = Vec::new();
        if durable > 0 {
            buf.resize(block_size, 0);
            let block = base / block_size as u64;
            dev.read(block, &mut buf)
                .map_err(|error| LogError::Read { block, error })?;
            buf.truncate(durable);
        }
        let log = Log {
            dev,
            block_size,
            capacity,
            base,
            buf,
            durable,
            next_seq: recovery.records,
        };
        Ok((log, recovery))
    }

    /// Where the next record will be written: the size of the durable log in bytes.
    pub fn end(&self) -> u64 {
        self.base + self.durable as u64
    }

    /// Whether records are staged and not yet committed.
    pub fn has_staged(&self) -> bool {
        self.buf.len() != self.durable
    }

    /// Bytes left for records not yet staged.
    pub fn free(&self) -> u64 {
        self.capacity - self.base - self.buf.len() as u64
    }

    /// Adds `record` to the next commit. Fails, and stages nothing, if it is too large or
    /// does not fit on the device together with what is already staged.
    pub fn stage(&mut self, record: &Record<'_>) -> Result<(), LogError<D::Error>> {
        let len = record.payload_len();
        if len > MAX_PAYLOAD {
            return Err(LogError::TooLarge { len });
        }
        let needed = (HEADER_LEN + len) as u64;
        let free = self.free();
        if needed > free {
            return Err(LogError::Full { needed, free });
        }
        record.encode(self.next_seq, &mut self.buf);
        self.next_seq += 1;
        Ok(())
    }

    /// Makes every staged record durable, with one write per block they touch. When it returns
    /// `Ok`, the writes may be acknowledged.
    pub fn commit(&mut self) -> Result<(), LogError<D::Error>> {
        if self.buf.len() == self.durable {
            return Ok(());
        }
        let len = self.buf.len();
        let first = self.base / self.block_size as u64;
        // Zero padding: the bytes after the end of the log must read as "no record here".
        self.buf.resize(len.next_multiple_of(self.block_size), 0);
        let written =
            self.buf
                .chunks(self.block_size)
                .zip(first..)
                .try_for_each(|(bytes, block)| {
                    self.dev
                        .write(block, bytes)
                        .map_err(|error| LogError::Write { block, error })
                });
        self.buf.truncate(len);
        written?;
        let full_blocks = len - len % self.block_size;
        self.buf.drain(..full_blocks);
        self.base += full_blocks as u64;
        self.durable = self.buf.len();
        Ok(())
    }

    /// Stages `records` (all of them, or none if one does not fit) and commits. Acknowledge
    /// the writes of all of them when it returns `Ok`.
    pub fn append_batch(&mut self, records: &[Record<'_>]) -> Result<(), LogError<D::Error>> {
        let (len, seq) = (self.buf.len(), self.next_seq);
        for record in records {
            if let Err(e) = self.stage(record) {
                self.buf.truncate(len);
                self.next_seq = seq;
                return Err(e);
            }
        }
        self.commit()
    }
}

#[cfg(test)]
mod tests;
