//! Reading the log back at start-up: find the region that is the log, replay it up to its first
//! bad record.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::record::{Header, Record, RegionHeader, HEADER_LEN, MAGIC, MAX_PAYLOAD};
use super::{BlockDevice, LogError};

/// What [`Log::open`](super::Log::open) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Records replayed (SETs and DELs; the region's header is not counted).
    pub records: u64,
    /// Bytes of the log's region they occupy, with its header: where the next record goes.
    pub bytes: u64,
    /// Device offset of the region the log is in.
    pub region: u64,
    /// The region's generation: 1 for a new device, +1 per compaction.
    pub generation: u64,
    /// The record recovery stopped at, if the log did not end cleanly.
    pub torn: Option<Torn>,
    /// Records read from a log of the first format (magic `SKv1`), which was rewritten into
    /// the current one; 0 if there was none.
    pub migrated: u64,
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
    /// A payload length reaching past the end of the region.
    PastEnd {
        len: u32,
    },
    /// The checksum does not cover the record and the one before it: torn, left over from an
    /// earlier use of the region, or never written by the log at all.
    BadChecksum,
    /// A well-formed record from another point in the log's history.
    BadSequence {
        expected: u64,
        found: u64,
    },
    /// A payload with a good checksum that this version cannot decode (or a region's first
    /// record that is not a region header).
    Malformed,
}

impl fmt::Display for TornReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TornReason::BadMagic => f.write_str("bad magic"),
            TornReason::TooLong { len } => write!(f, "length {len} above the maximum"),
            TornReason::PastEnd { len } => write!(f, "length {len} past the end of the region"),
            TornReason::BadChecksum => f.write_str("bad checksum"),
            TornReason::BadSequence { expected, found } => {
                write!(f, "sequence number {found}, expected {expected}")
            }
            TornReason::Malformed => f.write_str("malformed payload"),
        }
    }
}

/// One region read front to back.
#[derive(Debug)]
pub(super) struct Scan {
    /// Its header, if its first record is a good one.
    pub(super) header: Option<RegionHeader>,
    /// Good records after the header.
    pub(super) records: u64,
    /// Bytes from the region's start to the end of the last good record.
    pub(super) end: u64,
    /// The checksum of the last good record: the next one chains to it.
    pub(super) chain: u32,
    pub(super) torn: Option<Torn>,
}

impl Scan {
    /// Whether the region's snapshot is all there, so that the region is a log.
    pub(super) fn complete(&self) -> bool {
        self.header.is_some_and(|h| self.records >= h.snapshot)
    }
}

/// Reads the region of `len` bytes at device offset `start`: its header, then its records,
/// passing each to `replay`, until the end of the log (a header of zeros, or too little room
/// left for one), the first record that does not check, or `stop_after` records.
pub(super) fn scan<D: BlockDevice>(
    reader: &mut Reader<'_, D>,
    start: u64,
    len: u64,
    stop_after: u64,
    mut replay: impl FnMut(Record<'_>),
) -> Result<Scan, LogError<D::Error>> {
    let mut scan = Scan {
        header: None,
        records: 0,
        end: 0,
        chain: 0,
        torn: None,
    };
    let mut payload = Vec::new();
    while len - scan.end >= HEADER_LEN as u64
        && (scan.header.is_none() || scan.records < stop_after)
    {
        let offset = scan.end;
        let mut header_bytes = [0; HEADER_LEN];
        reader.read(start + offset, &mut header_bytes)?;
        if header_bytes == [0; HEADER_LEN] {
            break;
        }
        let header = Header::parse(&header_bytes);
        let payload_at = offset + HEADER_LEN as u64;
        let expected = scan.header.map_or(0, |_| scan.records + 1);
        let torn = if header.magic != MAGIC {
            Some(TornReason::BadMagic)
        } else if header.len as usize > MAX_PAYLOAD {
            Some(TornReason::TooLong { len: header.len })
        } else if u64::from(header.len) > len - payload_at {
            Some(TornReason::PastEnd { len: header.len })
        } else {
            payload.resize(header.len as usize, 0);
            reader.read(start + payload_at, &mut payload)?;
            if !header.checks(scan.chain, &header_bytes, &payload) {
                Some(TornReason::BadChecksum)
            } else if header.seq != expected {
                Some(TornReason::BadSequence {
                    expected,
                    found: header.seq,
                })
            } else if scan.header.is_none() {
                scan.header = RegionHeader::decode(&payload);
                scan.header.is_none().then_some(TornReason::Malformed)
            } else if let Some(record) = Record::decode(&payload) {
                replay(record);
                scan.records += 1;
                None
            } else {
                Some(TornReason::Malformed)
            }
        };
        if let Some(reason) = torn {
            scan.torn = Some(Torn {
                offset: start + offset,
                reason,
            });
            break;
        }
        scan.chain = header.crc;
        scan.end = payload_at + u64::from(header.len);
    }
    Ok(scan)
}

/// What [`choose`] found.
pub(super) struct Choice {
    /// The region that is the log: the newest whose snapshot is complete. `None` if neither
    /// is (a new device, or one whose first region was never completely written).
    pub(super) region: Option<usize>,
    /// The highest generation seen, complete or not.
    pub(super) newest: u64,
    /// The scans of the two regions' headers.
    pub(super) headers: [Scan; 2],
}

/// Reads both regions' headers and picks the log.
pub(super) fn choose<D: BlockDevice>(
    reader: &mut Reader<'_, D>,
    region_len: u64,
) -> Result<Choice, LogError<D::Error>> {
    let headers = [
        scan(reader, 0, region_len, 0, |_| {})?,
        scan(reader, region_len, region_len, 0, |_| {})?,
    ];
    let generation = |i: usize| headers[i].header.map(|h| h.generation);
    let newest = generation(0).max(generation(1)).unwrap_or(0);
    let mut order = [0, 1];
    order.sort_by_key(|&i| core::cmp::Reverse(generation(i)));
    for i in order {
        let Some(header) = headers[i].header else {
            continue;
        };
        let start = i as u64 * region_len;
        if header.snapshot == 0
            || scan(reader, start, region_len, header.snapshot, |_| {})?.complete()
        {
            return Ok(Choice {
                region: Some(i),
                newest,
                headers,
            });
        }
    }
    Ok(Choice {
        region: None,
        newest,
        headers,
    })
}

/// Byte-addressed reads over whole-block reads, keeping the last block read: recovery reads the
/// log front to back, so each block is read once.
pub(super) struct Reader<'d, D> {
    dev: &'d mut D,
    block: Vec<u8>,
    cached: Option<u64>,
}

impl<'d, D: BlockDevice> Reader<'d, D> {
    pub(super) fn new(dev: &'d mut D) -> Reader<'d, D> {
        let block = vec![0; dev.block_size()];
        Reader {
            dev,
            block,
            cached: None,
        }
    }

    /// Fills `out` from device offset `offset`; the range is inside the device.
    pub(super) fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), LogError<D::Error>> {
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
