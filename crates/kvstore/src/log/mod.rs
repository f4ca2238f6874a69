//! The crash-safe append-only log: every write the store makes, as records packed back to back
//! in one of the two halves ("regions") of a block device.
//!
//! # Record format
//! All integers little-endian; records are contiguous, cross block boundaries freely and have
//! no padding.
//! ```text
//! offset size
//!  0      4   magic "SKv2"
//!  4      4   CRC-32C of the previous record's CRC (0 for a region header), of bytes 8..20
//!             and of the payload
//!  8      4   payload length (at most MAX_PAYLOAD)
//! 12      8   sequence number: 0 for the region header, then +1 per record
//! 20      n   payload: op 1 = SET: key length u32, key, value (the rest)
//!                      op 2 = DEL: key count u32, then per key: length u32, key
//!                      op 3 = region header: generation u64, nonce u64, snapshot u64
//! ```
//! Each checksum covers the one before it, back to the region header and its nonce, so a record
//! is good only in the place and history it was written for: bytes left over from an earlier use
//! of the region, the remains of a batch cut short by a crash, or a record a client hid inside a
//! value (it cannot know the nonce) never check.
//!
//! # Regions and compaction
//! The device is two regions of `blocks / 2` blocks each. The log is one of them: a region
//! header (record 0), then `snapshot` SET records that together are the whole data at the time
//! the region was started, then the records appended since. Compaction ([`Log::compact`]) writes
//! the live data as a new snapshot into the other region, with a generation one above any seen
//! on the device and a fresh nonce, flushes, and from then on appends there. A region is the log
//! only once its whole snapshot is on the device; until then the old region, which compaction
//! never writes to, stays the log. So a crash at any point of a compaction loses nothing: the
//! newest region whose snapshot is complete is chosen at start-up.
//!
//! When to compact, and how much live data may be kept so that a snapshot always fits, is the
//! caller's decision ([`crate::Db`]).
//!
//! # Writing
//! Writes are staged ([`Log::stage`]), then made durable together ([`Log::commit`]): the block
//! holding the end of the log is rewritten with the new records appended and the blocks after it
//! are written (in one request where the device takes several blocks at once), zeros after the last record through at least one header's
//! length (so the log always ends in a header of zeros), then the device is flushed. A batch of
//! records costs as few block writes as its bytes need, and one flush. Rewriting the end block
//! re-writes the durable bytes it already holds with the same values, so a write torn anywhere
//! in it cannot damage them.
//!
//! # Recovery
//! [`Log::open`] reads both regions' headers, picks the log as above, and replays its records
//! up to the first that does not check (bad magic, length, checksum or sequence number): the
//! torn tail of a crash, which was never acknowledged. New records go right after the last good
//! one; nothing after it can ever check, so nothing needs to be erased, but the header after it
//! is zeroed (as a commit would) so the next start finds a clean end. A device with neither
//! region complete is new: region 0 is started, empty. A log of the first format (magic
//! `SKv1`, no regions) is replayed and rewritten as region 1 (see `legacy.rs`).

mod crc32c;
mod device;
mod legacy;
mod record;
mod recover;

use alloc::vec::Vec;
use core::fmt;

pub use device::BlockDevice;
pub use record::{set_len, Record, HEADER_LEN, MAX_PAYLOAD, REGION_LEN};
pub use recover::{Recovery, Torn, TornReason};

/// What can go wrong with the log.
#[derive(Debug, PartialEq, Eq)]
pub enum LogError<E> {
    /// The device failed to read a block.
    Read { block: u64, error: E },
    /// The device failed to write a block. Nothing staged is durable; it stays staged and the
    /// next commit writes it again.
    Write { block: u64, error: E },
    /// The device failed to flush: what was written since the last flush may not be durable.
    Flush { error: E },
    /// Not enough room left in the region for the staged records (or snapshot).
    Full { needed: u64, free: u64 },
    /// A compaction failed part-way: only another compaction can continue the log.
    Interrupted,
    /// A log of the first format reaching into the second region, where it would have to be
    /// rewritten.
    LegacyTooLong { end: u64, region: u64 },
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
            LogError::Flush { error } => write!(f, "flushing the log device: {error}"),
            LogError::Full { needed, free } => {
                write!(
                    f,
                    "the log device is full ({needed} bytes needed, {free} left)"
                )
            }
            LogError::Interrupted => f.write_str(
                "a compaction of the log failed part-way; only a new compaction can continue it",
            ),
            LogError::LegacyTooLong { end, region } => write!(
                f,
                "the log, written by an older kv, is {end} bytes long; this version needs it \
                 within the first half of the device ({region} bytes) to rewrite it into the \
                 second: copy the volume onto one at least {} bytes large",
                2 * end
            ),
            LogError::TooLarge { len } => {
                write!(
                    f,
                    "a record payload of {len} bytes is above the limit of {MAX_PAYLOAD}"
                )
            }
            LogError::Geometry { block_size, blocks } => {
                write!(
                    f,
                    "unusable log device: {blocks} blocks of {block_size} bytes (it needs two \
                     regions of at least {MIN_REGION} bytes each)"
                )
            }
        }
    }
}

/// The smallest region: a header and room for a few small records.
const MIN_REGION: u64 = 512;

/// The log on its device.
#[derive(Debug)]
pub struct Log<D: BlockDevice> {
    dev: D,
    block_size: usize,
    /// Bytes per region: half the device's blocks.
    region_len: u64,
    /// The region the log is in: 0 or 1.
    region: usize,
    /// Offset in the region of `buf[0]`: the start of the block that holds the end of the log.
    base: u64,
    /// The durable bytes of that block (`buf[..durable]`, less than a block), followed by the
    /// records staged since the last commit.
    buf: Vec<u8>,
    durable: usize,
    next_seq: u64,
    /// The checksum of the last record, durable or staged: the next record chains to it.
    chain: u32,
    generation: u64,
    /// The highest generation seen on the device: the next region's is above it.
    newest: u64,
    /// State of the nonce sequence (splitmix64).
    nonce: u64,
    /// A compaction failed part-way ([`Log::needs_compaction`]).
    interrupted: bool,
}

impl<D: BlockDevice> Log<D> {
    /// Opens the log on `dev`, passing every record, in order, to `replay` (see
    /// [Recovery](self#recovery)). `seed` makes the nonces of the regions this log starts; it
    /// should differ between runs (a clock will do).
    pub fn open(
        mut dev: D,
        seed: u64,
        mut replay: impl FnMut(Record<'_>),
    ) -> Result<(Log<D>, Recovery), LogError<D::Error>> {
        let block_size = dev.block_size();
        let blocks = dev.blocks();
        let region_len = u64::try_from(block_size)
            .ok()
            .filter(|&size| size > 0)
            .and_then(|size| size.checked_mul(blocks / 2))
            .filter(|&len| len >= MIN_REGION && blocks.checked_mul(block_size as u64).is_some())
            .ok_or(LogError::Geometry { block_size, blocks })?;
        let mut reader = recover::Reader::new(&mut dev);
        let recover::Choice {
            region: chosen,
            newest,
            headers,
        } = recover::choose(&mut reader, region_len)?;
        let mut recovery = Recovery {
            records: 0,
            bytes: 0,
            region: 0,
            generation: 0,
            torn: None,
            migrated: 0,
        };
        let mut legacy = None;
        let scan = match chosen {
            Some(region) => {
                let start = region as u64 * region_len;
                Some((
                    region,
                    recover::scan(&mut reader, start, region_len, u64::MAX, &mut replay)?,
                ))
            }
            None => {
                let mut magic = [0; 4];
                reader.read(0, &mut magic)?;
                if magic == record::MAGIC_V1 {
                    let mut live = crate::store::Store::default();
                    let old = legacy::replay(&mut reader, region_len * 2, |r| {
                        live.apply(&r);
                        replay(r);
                    })?;
                    if old.bytes > region_len {
                        return Err(LogError::LegacyTooLong {
                            end: old.bytes,
                            region: region_len,
                        });
                    }
                    recovery.migrated = old.records;
                    recovery.torn = old.torn;
                    legacy = Some(live);
                } else {
                    // A new device; or garbage, which is reported but holds nothing that was
                    // ever acknowledged (no region of it was ever complete).
                    recovery.torn = headers.iter().find_map(|h| h.torn);
                }
                None
            }
        };
        let mut log = Log {
            dev,
            block_size,
            region_len,
            region: 1,
            base: 0,
            buf: Vec::new(),
            durable: 0,
            next_seq: 0,
            chain: 0,
            generation: 0,
            newest,
            nonce: seed,
            interrupted: false,
        };
        match (scan, legacy) {
            (Some((region, scan)), _) => {
                let end = scan.end;
                log.durable = (end % block_size as u64) as usize;
                log.base = end - log.durable as u64;
                if log.durable > 0 {
                    log.buf.resize(block_size, 0);
                    let block = (region as u64 * region_len + log.base) / block_size as u64;
                    log.dev
                        .read(block, &mut log.buf)
                        .map_err(|error| LogError::Read { block, error })?;
                    log.buf.truncate(log.durable);
                }
                log.region = region;
                log.next_seq = scan.records + 1;
                log.chain = scan.chain;
                log.generation = scan.header.map_or(0, |h| h.generation);
                recovery.records = scan.records;
                recovery.torn = scan.torn;
                if scan.torn.is_some() {
                    // End the log in zeros again, so the next start finds it clean.
                    log.write_end()?;
                }
            }
            (None, Some(live)) => {
                // Rewrite the old log into region 1; region 0, where it is, is not touched.
                log.region = 0;
                let records = live.iter().map(|(key, value)| Record::Set { key, value });
                log.compact(records, live.len() as u64)?;
                recovery.records = recovery.migrated;
            }
            // Start region 0, empty (`compact` writes into the region the log is not in).
            (None, None) => log.compact(core::iter::empty(), 0)?,
        }
        recovery.bytes = log.end();
        recovery.region = log.region_offset();
        recovery.generation = log.generation;
        Ok((log, recovery))
    }

    /// Whether a commit reaches stable storage ([`BlockDevice::durable_flush`]).
    pub fn durable_flush(&self) -> bool {
        self.dev.durable_flush()
    }

    /// Where the next record will be written: the size of the durable log in bytes, from the
    /// start of its region.
    pub fn end(&self) -> u64 {
        self.base + self.durable as u64
    }

    /// Bytes of the region taken by the log and the records staged after it.
    pub fn used(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Bytes per region: the most a log (snapshot and all) can take.
    pub fn region_len(&self) -> u64 {
        self.region_len
    }

    /// Device offset of the log's region.
    pub fn region_offset(&self) -> u64 {
        self.region as u64 * self.region_len
    }

    /// The log region's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether records are staged and not yet committed.
    pub fn has_staged(&self) -> bool {
        self.buf.len() != self.durable
    }

    /// Bytes left in the region after the log and what is staged (0 if the staged records do
    /// not fit: then [`commit`](Log::commit) refuses them).
    pub fn free(&self) -> u64 {
        self.region_len.saturating_sub(self.used())
    }

    /// Whether the staged records fit in the region, so that [`commit`](Log::commit) can
    /// write them.
    pub fn staged_fit(&self) -> bool {
        self.used() <= self.region_len
    }

    /// Adds `record` to the next commit. Fails, and stages nothing, if it is too large.
    pub fn stage(&mut self, record: &Record<'_>) -> Result<(), LogError<D::Error>> {
        let len = record.payload_len();
        if len > MAX_PAYLOAD {
            return Err(LogError::TooLarge { len });
        }
        self.chain = record.encode(self.next_seq, self.chain, &mut self.buf);
        self.next_seq += 1;
        Ok(())
    }

    /// Makes every staged record durable, with one write per block they touch and a flush.
    /// When it returns `Ok`, the writes may be acknowledged. Refuses with [`LogError::Full`],
    /// writing nothing, if they do not fit in the region; they stay staged.
    pub fn commit(&mut self) -> Result<(), LogError<D::Error>> {
        if self.interrupted {
            return Err(LogError::Interrupted);
        }
        if self.buf.len() == self.durable {
            return Ok(());
        }
        if !self.staged_fit() {
            return Err(LogError::Full {
                needed: (self.buf.len() - self.durable) as u64,
                free: self.region_len - self.end(),
            });
        }
        self.write_end()?;
        let len = self.buf.len();
        let full_blocks = len - len % self.block_size;
        self.buf.drain(..full_blocks);
        self.base += full_blocks as u64;
        self.durable = self.buf.len();
        Ok(())
    }

    /// Writes `buf` (the durable bytes of the end block and what is staged) from the end block
    /// on, with zeros after it through a whole header (the log ends in one), and flushes.
    fn write_end(&mut self) -> Result<(), LogError<D::Error>> {
        let len = self.buf.len();
        let first = (self.region_offset() + self.base) / self.block_size as u64;
        let zeros_to = (len as u64 + HEADER_LEN as u64).min(self.region_len - self.base);
        self.buf
            .resize((zeros_to as usize).next_multiple_of(self.block_size), 0);
        let written = write_blocks(&mut self.dev, first, &self.buf);
        self.buf.truncate(len);
        written?;
        self.dev.flush().map_err(|error| LogError::Flush { error })
    }

    /// Stages `records` (all of them, or none if one is too large or they do not fit) and
    /// commits. Acknowledge the writes of all of them when it returns `Ok`.
    pub fn append_batch(&mut self, records: &[Record<'_>]) -> Result<(), LogError<D::Error>> {
        let (len, seq, chain) = (self.buf.len(), self.next_seq, self.chain);
        let staged = records.iter().try_for_each(|r| self.stage(r));
        let staged = staged.and_then(|()| match self.staged_fit() {
            true => Ok(()),
            false => Err(LogError::Full {
                needed: (self.buf.len() - len) as u64,
                free: self.region_len - (self.base + len as u64),
            }),
        });
        if let Err(e) = staged {
            self.buf.truncate(len);
            self.next_seq = seq;
            self.chain = chain;
            return Err(e);
        }
        self.commit()
    }

    /// Whether a compaction failed part-way, after which only a compaction can go on (its
    /// region may be complete on the device and newer than the log's, so records appended to
    /// the log would be lost at the next start).
    pub fn needs_compaction(&self) -> bool {
        self.interrupted
    }

    /// Compaction: writes `records` (`count` of them, SETs of every live key: all of the data,
    /// including what is staged) as the snapshot of a new log in the other region, flushes,
    /// and continues the log there. The staged records are dropped: the snapshot holds their
    /// effect. On error the log stays where it was, with its staged records, but only another
    /// compaction can continue it ([`Log::needs_compaction`]).
    pub fn compact<'r>(
        &mut self,
        records: impl Iterator<Item = Record<'r>>,
        count: u64,
    ) -> Result<(), LogError<D::Error>> {
        self.interrupted = true;
        let target = 1 - self.region;
        let size = self.block_size;
        let mut block = target as u64 * self.region_len / size as u64;
        let header = record::RegionHeader {
            generation: self.newest + 1,
            nonce: self.next_nonce(),
            snapshot: count,
        };
        self.newest = header.generation;
        let mut out = Vec::with_capacity(2 * size);
        let mut chain = header.encode(&mut out);
        let (mut end, mut seq) = (REGION_LEN as u64, 1);
        for record in records {
            let len = record.payload_len();
            if len > MAX_PAYLOAD {
                return Err(LogError::TooLarge { len });
            }
            let needed = (HEADER_LEN + len) as u64;
            if needed > self.region_len - end {
                return Err(LogError::Full {
                    needed,
                    free: self.region_len - end,
                });
            }
            chain = record.encode(seq, chain, &mut out);
            (end, seq) = (end + needed, seq + 1);
            let full = out.len() - out.len() % size;
            write_blocks(&mut self.dev, block, &out[..full])?;
            block += (full / size) as u64;
            out.drain(..full);
        }
        assert_eq!(
            seq - 1,
            count,
            "the snapshot has as many records as it says"
        );
        let durable = out.len();
        let base = end - durable as u64;
        let zeros_to = (end + HEADER_LEN as u64).min(self.region_len) - base;
        out.resize((zeros_to as usize).next_multiple_of(size), 0);
        write_blocks(&mut self.dev, block, &out)?;
        self.dev
            .flush()
            .map_err(|error| LogError::Flush { error })?;
        out.truncate(durable);
        self.region = target;
        self.base = base;
        self.buf = out;
        self.durable = durable;
        self.next_seq = seq;
        self.chain = chain;
        self.generation = header.generation;
        self.interrupted = false;
        Ok(())
    }

    /// The next nonce (splitmix64 of the seed).
    fn next_nonce(&mut self) -> u64 {
        self.nonce = self.nonce.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.nonce;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Writes `bytes`, whole blocks, from block `first` on.
fn write_blocks<D: BlockDevice>(
    dev: &mut D,
    first: u64,
    bytes: &[u8],
) -> Result<(), LogError<D::Error>> {
    if bytes.is_empty() {
        return Ok(());
    }
    dev.write_blocks(first, bytes)
        .map_err(|(block, error)| LogError::Write { block, error })
}

#[cfg(test)]
mod tests;
