//! The on-device record format (see the [module documentation](super) for the layout).

use alloc::vec::Vec;

use super::crc32c::Crc32c;

/// The first bytes of every record; a new format gets a new magic.
pub(super) const MAGIC: [u8; 4] = *b"SKv1";

/// Bytes before the payload: magic, CRC, payload length, sequence number.
pub const HEADER_LEN: usize = 20;

/// The largest payload a record may have. Far above any command the RESP limits let through;
/// it bounds what recovery allocates on the word of a header that is garbage.
pub const MAX_PAYLOAD: usize = 4 << 20;

const OP_SET: u8 = 1;
const OP_DEL: u8 = 2;

/// One logged write, borrowing its keys and values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// SET (and INCR, logged as the SET of its result).
    Set { key: &'a [u8], value: &'a [u8] },
    /// DEL of the keys that existed: one record, so that a multi-key DEL is atomic.
    Del { keys: Vec<&'a [u8]> },
}

impl Record<'_> {
    pub(super) fn payload_len(&self) -> usize {
        match self {
            Record::Set { key, value } => 1 + 4 + key.len() + value.len(),
            Record::Del { keys } => 1 + 4 + keys.iter().map(|k| 4 + k.len()).sum::<usize>(),
        }
    }

    /// Appends the record with sequence number `seq`. The caller has checked that the payload
    /// is at most [`MAX_PAYLOAD`], so lengths fit in `u32`.
    pub(super) fn encode(&self, seq: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[0; 4]); // CRC, filled in below
        out.extend_from_slice(&(self.payload_len() as u32).to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        match self {
            Record::Set { key, value } => {
                out.push(OP_SET);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(value);
            }
            Record::Del { keys } => {
                out.push(OP_DEL);
                out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
                for key in keys {
                    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                    out.extend_from_slice(key);
                }
            }
        }
        let crc = Crc32c::new().update(&out[start + 8..]).finish();
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a payload whose checksum has been verified. `None` if it is not a payload this
    /// version writes (which, past a good checksum, means a bug or a newer format).
    pub(super) fn decode(payload: &[u8]) -> Option<Record<'_>> {
        let (&op, rest) = payload.split_first()?;
        let (count, mut rest) = take_u32(rest)?;
        match op {
            OP_SET => {
                let (key, value) = rest.split_at_checked(count as usize)?;
                Some(Record::Set { key, value })
            }
            OP_DEL => {
                // Each key takes at least its 4-byte length: a bound before allocating.
                let count = count as usize;
                if count > rest.len() / 4 {
                    return None;
                }
                let mut keys = Vec::with_capacity(count);
                for _ in 0..count {
                    let (len, after) = take_u32(rest)?;
                    let (key, after) = after.split_at_checked(len as usize)?;
                    keys.push(key);
                    rest = after;
                }
                rest.is_empty().then_some(Record::Del { keys })
            }
            _ => None,
        }
    }
}

/// A record header as read from the device.
pub(super) struct Header {
    pub(super) magic: [u8; 4],
    pub(super) crc: u32,
    pub(super) len: u32,
    pub(super) seq: u64,
}

impl Header {
    pub(super) fn parse(bytes: &[u8; HEADER_LEN]) -> Header {
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut seq = [0; 8];
        seq.copy_from_slice(&bytes[12..20]);
        Header {
            magic: [bytes[0], bytes[1], bytes[2], bytes[3]],
            crc: word(4),
            len: word(8),
            seq: u64::from_le_bytes(seq),
        }
    }

    /// Whether `crc` covers the header's length and sequence number and `payload`.
    pub(super) fn checks(&self, bytes: &[u8; HEADER_LEN], payload: &[u8]) -> bool {
        Crc32c::new().update(&bytes[8..]).update(payload).finish() == self.crc
    }
}

fn take_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (word, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*word), rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn round_trip(record: &Record<'_>) {
        let mut bytes = Vec::new();
        record.encode(7, &mut bytes);
        assert_eq!(bytes.len(), HEADER_LEN + record.payload_len());
        let header_bytes: &[u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
        let header = Header::parse(header_bytes);
        assert_eq!(header.magic, MAGIC);
        assert_eq!(header.len as usize, record.payload_len());
        assert_eq!(header.seq, 7);
        assert!(header.checks(header_bytes, &bytes[HEADER_LEN..]));
        assert_eq!(Record::decode(&bytes[HEADER_LEN..]).as_ref(), Some(record));
    }

    #[test]
    fn round_trips() {
        round_trip(&Record::Set {
            key: b"k",
            value: b"v",
        });
        round_trip(&Record::Set {
            key: b"",
            value: b"",
        });
        round_trip(&Record::Set {
            key: b"\0\r\n",
            value: &[0xff; 1000],
        });
        round_trip(&Record::Del {
            keys: vec![b"a", b"", b"ccc"],
        });
        round_trip(&Record::Del { keys: vec![] });
    }

    #[test]
    fn the_layout_is_stable() {
        // A log written by this version must stay readable: pin the bytes.
        let mut bytes = Vec::new();
        Record::Set {
            key: b"k",
            value: b"v",
        }
        .encode(1, &mut bytes);
        let crc = Crc32c::new().update(&bytes[8..]).finish().to_le_bytes();
        let mut expected = b"SKv1".to_vec();
        expected.extend_from_slice(&crc);
        expected.extend_from_slice(&[
            7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, OP_SET, 1, 0, 0, 0, b'k', b'v',
        ]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn refuses_malformed_payloads() {
        let bad: &[&[u8]] = &[
            b"",
            &[OP_SET],
            &[OP_SET, 5, 0, 0, 0, b'a'],
            &[OP_DEL, 1, 0, 0, 0],
            &[OP_DEL, 1, 0, 0, 0, 2, 0, 0, 0, b'a'],
            &[OP_DEL, 0, 0, 0, 0, b'x'],
            &[OP_DEL, 0xff, 0xff, 0xff, 0xff],
            &[3, 0, 0, 0, 0],
        ];
        for payload in bad {
            assert_eq!(Record::decode(payload), None, "{payload:?}");
        }
    }
}
