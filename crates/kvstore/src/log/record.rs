//! The on-device record format (see the [module documentation](super) for the layout).

use alloc::vec::Vec;

use super::crc32c::Crc32c;

/// The first bytes of every record; a new format gets a new magic.
pub(super) const MAGIC: [u8; 4] = *b"SKv2";

/// The magic of the first format (no regions, no chained checksums), still read so that a
/// volume written by an older kv is carried over (see [`super::legacy`]).
pub(super) const MAGIC_V1: [u8; 4] = *b"SKv1";

/// Bytes before the payload: magic, CRC, payload length, sequence number.
pub const HEADER_LEN: usize = 20;

/// The largest payload a record may have. Far above any command the RESP limits let through;
/// it bounds what recovery allocates on the word of a header that is garbage.
pub const MAX_PAYLOAD: usize = 4 << 20;

const OP_SET: u8 = 1;
const OP_DEL: u8 = 2;
const OP_REGION: u8 = 3;

/// Bytes of a region header record: header, op, generation, nonce, snapshot count.
pub const REGION_LEN: usize = HEADER_LEN + REGION_PAYLOAD;
const REGION_PAYLOAD: usize = 1 + 3 * 8;

/// The first record of a region (see the [module documentation](super)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RegionHeader {
    /// Higher is newer; the first region written is generation 1.
    pub(super) generation: u64,
    /// Folded into every checksum of the region (through the chain): records written by anyone
    /// who does not know it, such as a client that hides a record inside a value, never check.
    pub(super) nonce: u64,
    /// How many records after this one are the snapshot the region starts with; until all of
    /// them are on the device the region is not the log.
    pub(super) snapshot: u64,
}

impl RegionHeader {
    /// Appends the header as the region's record 0; returns its checksum, the chain's start.
    pub(super) fn encode(&self, out: &mut Vec<u8>) -> u32 {
        let mut payload = [0; REGION_PAYLOAD];
        payload[0] = OP_REGION;
        payload[1..9].copy_from_slice(&self.generation.to_le_bytes());
        payload[9..17].copy_from_slice(&self.nonce.to_le_bytes());
        payload[17..25].copy_from_slice(&self.snapshot.to_le_bytes());
        encode_with(0, 0, out, |out| out.extend_from_slice(&payload))
    }

    /// Decodes a checked payload; `None` if it is not a region header.
    pub(super) fn decode(payload: &[u8]) -> Option<RegionHeader> {
        let payload: &[u8; REGION_PAYLOAD] = payload.try_into().ok()?;
        let word = |at: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&payload[at..at + 8]);
            u64::from_le_bytes(w)
        };
        (payload[0] == OP_REGION).then(|| RegionHeader {
            generation: word(1),
            nonce: word(9),
            snapshot: word(17),
        })
    }
}

/// Appends a record whose payload (at most [`MAX_PAYLOAD`]) `payload` appends, with sequence
/// number `seq` and its checksum chained to `chain`, the checksum of the record before it (0
/// for a region header). Returns the new record's checksum.
fn encode_with(seq: u64, chain: u32, out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) -> u32 {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; 8]); // CRC and length, filled in below
    out.extend_from_slice(&seq.to_le_bytes());
    payload(out);
    let len = (out.len() - start - HEADER_LEN) as u32;
    out[start + 8..start + 12].copy_from_slice(&len.to_le_bytes());
    let crc = Crc32c::new()
        .update(&chain.to_le_bytes())
        .update(&out[start + 8..])
        .finish();
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// One logged write, borrowing its keys and values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// SET (and INCR, logged as the SET of its result).
    Set { key: &'a [u8], value: &'a [u8] },
    /// DEL of the keys that existed: one record, so that a multi-key DEL is atomic.
    Del { keys: Vec<&'a [u8]> },
}

/// Bytes the SET record of a key and value takes in the log: what keeping them costs in a
/// snapshot.
pub fn set_len(key: usize, value: usize) -> usize {
    HEADER_LEN + 1 + 4 + key + value
}

impl Record<'_> {
    pub(super) fn payload_len(&self) -> usize {
        match self {
            Record::Set { key, value } => 1 + 4 + key.len() + value.len(),
            Record::Del { keys } => 1 + 4 + keys.iter().map(|k| 4 + k.len()).sum::<usize>(),
        }
    }

    /// Appends the record with sequence number `seq`, chained to `chain` (the checksum of the
    /// record before it), and returns its checksum. The caller has checked that the payload is
    /// at most [`MAX_PAYLOAD`], so lengths fit in `u32`.
    pub(super) fn encode(&self, seq: u64, chain: u32, out: &mut Vec<u8>) -> u32 {
        encode_with(seq, chain, out, |out| self.encode_payload(out))
    }

    fn encode_payload(&self, out: &mut Vec<u8>) {
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

    /// Whether `crc` covers `chain`, the header's length and sequence number and `payload`.
    pub(super) fn checks(&self, chain: u32, bytes: &[u8; HEADER_LEN], payload: &[u8]) -> bool {
        Crc32c::new()
            .update(&chain.to_le_bytes())
            .update(&bytes[8..])
            .update(payload)
            .finish()
            == self.crc
    }

    /// The same for a record of the first format, whose checksum has no chain.
    pub(super) fn checks_v1(&self, bytes: &[u8; HEADER_LEN], payload: &[u8]) -> bool {
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
        let crc = record.encode(7, 0xdead_beef, &mut bytes);
        assert_eq!(bytes.len(), HEADER_LEN + record.payload_len());
        let header_bytes: &[u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
        let header = Header::parse(header_bytes);
        assert_eq!(header.magic, MAGIC);
        assert_eq!(header.crc, crc);
        assert_eq!(header.len as usize, record.payload_len());
        assert_eq!(header.seq, 7);
        assert!(header.checks(0xdead_beef, header_bytes, &bytes[HEADER_LEN..]));
        assert!(
            !header.checks(0xdead_beee, header_bytes, &bytes[HEADER_LEN..]),
            "the checksum covers the chain"
        );
        assert_eq!(Record::decode(&bytes[HEADER_LEN..]).as_ref(), Some(record));
        assert_eq!(RegionHeader::decode(&bytes[HEADER_LEN..]), None);
    }

    #[test]
    fn region_headers_round_trip() {
        let region = RegionHeader {
            generation: 3,
            nonce: 0x0123_4567_89ab_cdef,
            snapshot: 1000,
        };
        let mut bytes = Vec::new();
        let crc = region.encode(&mut bytes);
        assert_eq!(bytes.len(), REGION_LEN);
        let header_bytes: &[u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().unwrap();
        let header = Header::parse(header_bytes);
        assert_eq!((header.crc, header.seq), (crc, 0));
        assert!(header.checks(0, header_bytes, &bytes[HEADER_LEN..]));
        assert_eq!(RegionHeader::decode(&bytes[HEADER_LEN..]), Some(region));
        assert_eq!(Record::decode(&bytes[HEADER_LEN..]), None);
        assert_eq!(
            RegionHeader::decode(&bytes[HEADER_LEN..REGION_LEN - 1]),
            None
        );
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
        .encode(1, 5, &mut bytes);
        let crc = Crc32c::new()
            .update(&[5, 0, 0, 0])
            .update(&bytes[8..])
            .finish()
            .to_le_bytes();
        let mut expected = b"SKv2".to_vec();
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
