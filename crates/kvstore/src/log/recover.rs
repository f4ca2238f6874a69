//! Reading the log back at start-up: replay up to the first bad record, then scrub what follows.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::record::{Header, Record, HEADER_LEN, MAGIC, MAX_PAYLOAD};
use super::{BlockDevice, LogError};

/// What [`Log::open`](super::Log::open) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Records replayed.
    pub records: u64,
    /// Bytes of the log they occupy: where the next record goes.
    pub bytes: u64,
    /// The record recovery stopped at, if the log did not end cleanly.
    pub torn: Option<Torn>,
}

/// A record that did not check, and everything after it, skipped by recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Torn {
    /// Device offset of its header.
    pub offset: u64,
    pub reason: TornReason,
}

impl fmt::Display for Torn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "skipping a torn record at offset {}: {}",
            self.offset, self.reason
        )
    }
}

/// Why a record was judged torn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TornReason {
    BadMagic,
    /// A payload length above [`MAX_PAYLOAD`].
    TooLong {
        len: u32,
    },
    /// A payload length reaching past the end of the device.
    PastEnd {
        len: u32,
    },
    BadChecksum,
    /// A well-formed record from another point in the log's history.
    BadSequence {
        expected: u64,
        found: u64,
    },
    /// A payload with a good checksum that this version cannot decode.
    Malformed,
}

impl fmt::Display for TornReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TornReason::BadMagic => f.write_str("bad magic"),
            TornReason::TooLong { len } => write!(f, "length {len} above the maximum"),
            TornReason::PastEnd { len } => write!(f, "length {len} past the end of the device"),
            TornReason::BadChecksum => f.write_str("bad checksum"),
            TornReason::BadSequence { expected, found } => {
                write!(f, "sequence number {found}, expected {expected}")
            }
            TornReason::Malformed => f.write_str("malformed payload"),
        }
    }
}

/// Reads the records of the log in order and passes each to `replay`.
pub(super) fn replay<D: BlockDevice>(
    dev: &mut D,
    capacity: u64,
    mut replay: impl FnMut(Record<'_>),
) -> Result<Recovery, LogError<D::Error>> {
    let mut reader = Reader::new(dev);
    let mut recovery = Recovery {
        records: 0,
        bytes: 0,
        torn: None,
    };
    let mut payload = Vec::new();
    // Too little room left for a header means the log is full and ends here.
    while capacity - recovery.bytes >= HEADER_LEN as u64 {
        let offset = recovery.bytes;
        let mut header_bytes = [0; HEADER_LEN];
        reader.read(offset, &mut header_bytes)?;
        if header_bytes == [0; HEADER_LEN] {
            break;
        }
        let header = Header::parse(&header_bytes);
        let payload_at = offset + HEADER_LEN as u64;
        let torn = if header.magic != MAGIC {
            Some(TornReason::BadMagic)
        } else if header.len as usize > MAX_PAYLOAD {
            Some(TornReason::TooLong { len: header.len })
        } else if u64::from(header.len) > capacity - payload_at {
            Some(TornReason::PastEnd { len: header.len })
        } else {
            payload.resize(header.len as usize, 0);
            reader.read(payload_at, &mut payload)?;
            if !header.checks(&header_bytes, &payload) {
                Some(TornReason::BadChecksum)
            } else if header.seq != recovery.records {
                Some(TornReason::BadSequence {
                    expected: recovery.records,
                    found: header.seq,
                })
            } else if let Some(record) = Record::decode(&payload) {
                replay(record);
                None
            } else {
                Some(TornReason::Malformed)
            }
        };
        if let Some(reason) = torn {
            recovery.torn = Some(Torn { offset, reason });
            break;
        }
        recovery.records += 1;
        recovery.bytes = payload_at + u64::from(header.len);
    }
    Ok(recovery)
}

/// Zeroes the device from byte `end` through the last block that is not already all zeros
/// (blocks are written in ascending order, so the remains of a torn batch end there), last
/// block first.
pub(super) fn scrub<D: BlockDevice>(dev: &mut D, end: u64) -> Result<(), LogError<D::Error>> {
    let size = dev.block_size();
    let first = end / size as u64;
    let mut block = vec![0; size];
    let mut last = first;
    while last + 1 < dev.blocks() {
        dev.read(last + 1, &mut block)
            .map_err(|error| LogError::Read {
                block: last + 1,
                error,
            })?;
        if block.iter().all(|&b| b == 0) {
            break;
        }
        last += 1;
    }
    block.fill(0);
    for b in (first + 1..=last).rev() {
        dev.write(b, &block)
            .map_err(|error| LogError::Write { block: b, error })?;
    }
    dev.read(first, &mut block)
        .map_err(|error| LogError::Read {
            block: first,
            error,
        })?;
    block[(end % size as u64) as usize..].fill(0);
    dev.write(first, &block).map_err(|error| LogError::Write {
        block: first,
        error,
    })
}

/// Byte-addressed reads over whole-block reads, keeping the last block read: recovery reads the
/// log front to back, so each block is read once.
struct Reader<'d, D> {
    dev: &'d mut D,
    block: Vec<u8>,
    cached: Option<u64>,
}

impl<'d, D: BlockDevice> Reader<'d, D> {
    fn new(dev: &'d mut D) -> Reader<'d, D> {
        let block = vec![0; dev.block_size()];
        Reader {
            dev,
            block,
            cached: None,
        }
    }

    /// Fills `out` from device offset `offset`; the range is inside the device.
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), LogError<D::Error>> {
        let size = self.block.len();
        let mut done = 0;
        while done < out.len() {
            let at = offset + done as u64;
            let block = at / size as u64;
            let within = (at % size as u64) as usize;
            if self.cached != Some(block) {
                self.cached = None;
                self.dev
                    .read(block, &mut self.block)
                    .map_err(|error| LogError::Read { block, error })?;
                self.cached = Some(block);
            }
            let n = (size - within).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.block[within..within + n]);
            done += n;
        }
        Ok(())
    }
}
