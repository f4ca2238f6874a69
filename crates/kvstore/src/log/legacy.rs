//! Logs of the first format (magic `SKv1`): one log from offset 0 over the whole device, without
//! regions or chained checksums. [`Log::open`](super::Log::open) replays such a log and rewrites
//! its live keys as a region of the current format (the second one, which the old log must not
//! reach into); the old log is then never read again.

use alloc::vec::Vec;

use super::record::{Header, Record, HEADER_LEN, MAGIC_V1, MAX_PAYLOAD};
use super::recover::{Reader, Torn, TornReason};
use super::{BlockDevice, LogError};

/// What the old log held.
pub(super) struct Replayed {
    pub(super) records: u64,
    /// Where its last good record ends.
    pub(super) bytes: u64,
    pub(super) torn: Option<Torn>,
}

/// Reads the records of the old log in order, up to the first that does not check, and passes
/// each to `replay`. Writes nothing: the old log is read once more if its rewrite is cut short.
pub(super) fn replay<D: BlockDevice>(
    reader: &mut Reader<'_, D>,
    capacity: u64,
    mut replay: impl FnMut(Record<'_>),
) -> Result<Replayed, LogError<D::Error>> {
    let mut recovery = Replayed {
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
        let torn = if header.magic != MAGIC_V1 {
            Some(TornReason::BadMagic)
        } else if header.len as usize > MAX_PAYLOAD {
            Some(TornReason::TooLong { len: header.len })
        } else if u64::from(header.len) > capacity - payload_at {
            Some(TornReason::PastEnd { len: header.len })
        } else {
            payload.resize(header.len as usize, 0);
            reader.read(payload_at, &mut payload)?;
            if !header.checks_v1(&header_bytes, &payload) {
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
