//! The log against an in-memory device: round trips, group commit, recovery from crashes at
//! every block and byte, garbage, a full device and failing writes.

use alloc::vec;
use alloc::vec::Vec;

use super::record::{HEADER_LEN, MAGIC};
use super::*;
use crate::testdev::MemDevice;

/// An owned copy of a record, to compare what recovery replays with what was appended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Set(Vec<u8>, Vec<u8>),
    Del(Vec<Vec<u8>>),
}

impl Op {
    fn record(&self) -> Record<'_> {
        match self {
            Op::Set(key, value) => Record::Set { key, value },
            Op::Del(keys) => Record::Del {
                keys: keys.iter().map(Vec::as_slice).collect(),
            },
        }
    }

    fn from_record(record: Record<'_>) -> Op {
        match record {
            Record::Set { key, value } => Op::Set(key.to_vec(), value.to_vec()),
            Record::Del { keys } => Op::Del(keys.iter().map(|k| k.to_vec()).collect()),
        }
    }

    fn encoded_len(&self) -> usize {
        HEADER_LEN + self.record().payload_len()
    }
}

fn set(key: &str, value_len: usize) -> Op {
    let value = (0..value_len).map(|i| (i * 31 + key.len()) as u8).collect();
    Op::Set(key.as_bytes().to_vec(), value)
}

fn open(dev: &MemDevice) -> (Log<MemDevice>, Vec<Op>, Recovery) {
    let mut ops = Vec::new();
    let (log, recovery) = Log::open(dev.clone(), |r| ops.push(Op::from_record(r))).expect("open");
    (log, ops, recovery)
}

fn append(log: &mut Log<MemDevice>, ops: &[Op]) -> Result<(), LogError<&'static str>> {
    let records: Vec<Record<'_>> = ops.iter().map(Op::record).collect();
    log.append_batch(&records)
}

/// A mix of small, empty, block-sized and multi-block records.
fn sample_ops(block_size: usize) -> Vec<Op> {
    vec![
        set("a", 1),
        set("", 0),
        set("b", block_size - HEADER_LEN - 6), // exactly one block with its 1 + 4 + 1 byte prefix
        set("c", 3 * block_size + 17),
        Op::Del(vec![b"a".to_vec(), b"".to_vec(), b"zz".to_vec()]),
        Op::Del(vec![]),
        set("d", 100),
    ]
}

#[test]
fn a_fresh_device_is_an_empty_log() {
    for block_size in [512, 4096] {
        let dev = MemDevice::new(block_size, 8);
        let (log, ops, recovery) = open(&dev);
        assert_eq!(
            recovery,
            Recovery {
                records: 0,
                bytes: 0,
                torn: None
            }
        );
        assert!(ops.is_empty());
        assert_eq!(log.end(), 0);
        assert_eq!(log.free(), 8 * block_size as u64);
        assert_eq!(dev.writes(), 0, "opening a clean log writes nothing");
    }
}

#[test]
fn round_trips_one_by_one_and_in_batches() {
    for block_size in [512, 4096] {
        let ops = sample_ops(block_size);
        let total: usize = ops.iter().map(Op::encoded_len).sum();
        for batch in [1, 2, 3, ops.len()] {
            let dev = MemDevice::new(block_size, 32);
            let (mut log, _, _) = open(&dev);
            for chunk in ops.chunks(batch) {
                append(&mut log, chunk).unwrap();
            }
            assert_eq!(log.end(), total as u64);
            let (log, replayed, recovery) = open(&dev);
            assert_eq!(replayed, ops, "block size {block_size}, batches of {batch}");
            assert_eq!(
                recovery,
                Recovery {
                    records: ops.len() as u64,
                    bytes: total as u64,
                    torn: None
                }
            );
            assert_eq!(log.end(), total as u64);
        }
    }
}

#[test]
fn appends_continue_after_reopening() {
    for block_size in [512, 4096] {
        let dev = MemDevice::new(block_size, 32);
        let ops = sample_ops(block_size);
        for (i, op) in ops.iter().enumerate() {
            let (mut log, replayed, _) = open(&dev);
            assert_eq!(replayed, ops[..i]);
            append(&mut log, core::slice::from_ref(op)).unwrap();
        }
        assert_eq!(open(&dev).1, ops);
    }
}

#[test]
fn a_batch_costs_one_write_per_block_it_touches() {
    for block_size in [512, 4096] {
        let dev = MemDevice::new(block_size, 64);
        let (mut log, _, _) = open(&dev);
        // redis-benchmark's SET: 16-byte keys, 3-byte values.
        let batch: Vec<Op> = (0..50)
            .map(|i| Op::Set(alloc::format!("key:{i:012}").into_bytes(), b"xxx".to_vec()))
            .collect();
        let bytes: usize = batch.iter().map(Op::encoded_len).sum();
        for round in 0..3 {
            let (start, writes) = (log.end() as usize, dev.writes());
            append(&mut log, &batch).unwrap();
            let touched = (start + bytes).div_ceil(block_size) - start / block_size;
            assert_eq!(
                dev.writes() - writes,
                touched,
                "round {round} at block size {block_size}"
            );
        }
        // Committing with nothing staged writes nothing.
        let writes = dev.writes();
        log.commit().unwrap();
        assert_eq!(dev.writes(), writes);
    }
}

/// The heart of crash safety: a record whose write is cut short at every block and every byte
/// is skipped, everything acknowledged before it survives, and the log goes on after it.
#[test]
fn a_torn_last_record_is_skipped_at_every_block_and_byte() {
    for (block_size, stride) in [(512, 1), (4096, 5)] {
        let acknowledged = vec![set("a", 10), set("b", block_size + 300)];
        let last = set("torn", 2 * block_size + 100);
        let next = set("next", 50);
        let start: usize = acknowledged.iter().map(Op::encoded_len).sum();
        let end = start + last.encoded_len();
        let writes = end.div_ceil(block_size) - start / block_size;
        for crash_write in 0..writes {
            let mut tears: Vec<usize> = (0..=block_size).step_by(stride).collect();
            tears.extend([
                1,
                HEADER_LEN - 1,
                HEADER_LEN,
                HEADER_LEN + 1,
                block_size - 1,
                block_size,
            ]);
            for tear in tears {
                let dev = MemDevice::new(block_size, 8);
                let (mut log, _, _) = open(&dev);
                append(&mut log, &acknowledged).unwrap();
                dev.crash_in(crash_write, tear);
                assert!(append(&mut log, core::slice::from_ref(&last)).is_err());
                drop(log);
                dev.reboot();

                // How much of the record reached the device decides what recovery must say.
                let block_start = (start / block_size + crash_write) * block_size;
                let landed = (block_start + tear).clamp(start, end) - start;
                let (mut log, replayed, recovery) = open(&dev);
                let mut expected = acknowledged.clone();
                if landed == last.encoded_len() {
                    expected.push(last.clone());
                    assert_eq!(recovery.torn, None);
                } else {
                    assert_eq!(recovery.bytes, start as u64);
                    let torn = recovery.torn.map(|t| t.offset);
                    assert_eq!(
                        torn,
                        (landed > 0).then_some(start as u64),
                        "write {crash_write}, tear {tear}"
                    );
                    assert!(
                        dev.bytes()[start..].iter().all(|&b| b == 0),
                        "the torn record is scrubbed"
                    );
                }
                assert_eq!(
                    replayed, expected,
                    "block {block_size}, write {crash_write}, tear {tear}"
                );

                append(&mut log, core::slice::from_ref(&next)).unwrap();
                expected.push(next.clone());
                let (_, replayed, recovery) = open(&dev);
                assert_eq!((replayed, recovery.torn), (expected, None));
            }
        }
    }
}

/// Scrubbing writes too, and may itself be cut short: it zeroes backwards so that whatever
/// survives still starts with the torn header, and the next start finishes the job.
#[test]
fn a_crash_while_scrubbing_is_recovered_from() {
    let block_size = 512;
    let acknowledged = vec![set("a", 10)];
    let last = set("torn", 3 * block_size);
    for scrub_write in 0..4 {
        for tear in [0, 1, 100, block_size] {
            let dev = MemDevice::new(block_size, 8);
            let (mut log, _, _) = open(&dev);
            append(&mut log, &acknowledged).unwrap();
            dev.crash_in(3, 0); // the record's first three blocks land, the fourth does not
            assert!(append(&mut log, core::slice::from_ref(&last)).is_err());
            dev.reboot();
            dev.crash_in(scrub_write, tear);
            let result = Log::open(dev.clone(), |_| {});
            dev.reboot();
            let (_, replayed, recovery) = open(&dev);
            assert_eq!(
                replayed, acknowledged,
                "scrub write {scrub_write}, tear {tear}"
            );
            if result.is_ok() {
                assert_eq!(
                    recovery.torn, None,
                    "a completed scrub leaves nothing behind"
                );
            }
            // If the scrub was cut short in the block holding the end of the log, bytes of the
            // torn record may remain there behind its zeroed header; harmless, as the next
            // commit rewrites that whole block. Every block after it must be clean.
            assert!(
                dev.bytes()[block_size..].iter().all(|&b| b == 0),
                "scrub write {scrub_write}, tear {tear}"
            );
        }
    }
}

/// What scrubbing is for: the inside of a torn value is chosen by a client and can hold a
/// perfectly valid record; it must never be replayed, even once the log ends right before it.
#[test]
fn a_record_forged_inside_a_torn_value_is_never_replayed() {
    let block_size = 512;
    let dev = MemDevice::new(block_size, 8);
    let (mut log, _, _) = open(&dev);
    append(&mut log, &[set("a", 10)]).unwrap();
    let start = log.end() as usize;

    // The forged record claims to be the one after the next, and sits at the start of block 1.
    let mut forged = Vec::new();
    Record::Set {
        key: b"evil",
        value: b"1",
    }
    .encode(2, &mut forged);
    let prefix = block_size - start - HEADER_LEN - 1 - 4 - 3; // value bytes before block 1
    let mut value = vec![b'x'; prefix];
    value.extend_from_slice(&forged);
    value.resize(prefix + 3 * block_size, b'y');
    let torn = Op::Set(b"big".to_vec(), value);
    dev.crash_in(2, 0); // blocks 0 and 1 land, block 2 does not
    assert!(append(&mut log, &[torn]).is_err());
    dev.reboot();
    assert_eq!(
        dev.bytes()[block_size..block_size + 4],
        MAGIC,
        "the forgery is on the device"
    );

    // Recovery skips the torn record; the next record then ends exactly at block 1.
    let (mut log, _, recovery) = open(&dev);
    assert_eq!(
        recovery.torn.map(|t| t.reason),
        Some(TornReason::BadChecksum)
    );
    let filler = block_size - start - HEADER_LEN - 1 - 4 - 1;
    append(&mut log, &[set("f", filler)]).unwrap();
    assert_eq!(log.end(), block_size as u64);

    let (_, replayed, recovery) = open(&dev);
    assert_eq!(replayed, vec![set("a", 10), set("f", filler)]);
    assert_eq!(recovery.torn, None);
}

#[test]
fn garbage_after_the_log_is_skipped_and_overwritten() {
    for block_size in [512, 4096] {
        let dev = MemDevice::new(block_size, 16);
        let (mut log, _, _) = open(&dev);
        let ops = sample_ops(block_size);
        append(&mut log, &ops).unwrap();
        let end = log.end() as usize;
        drop(log);
        // Deterministic pseudo-random bytes (xorshift) over the rest of the device.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let garbage: Vec<u8> = (end..16 * block_size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8 | 1 // never a zero header
            })
            .collect();
        dev.set_bytes(end, &garbage);

        let (mut log, replayed, recovery) = open(&dev);
        assert_eq!(replayed, ops);
        assert_eq!(
            recovery.torn,
            Some(Torn {
                offset: end as u64,
                reason: TornReason::BadMagic
            })
        );
        assert!(dev.bytes()[end..].iter().all(|&b| b == 0));
        append(&mut log, &[set("after", 5)]).unwrap();
        let (_, replayed, recovery) = open(&dev);
        assert_eq!(replayed.len(), ops.len() + 1);
        assert_eq!(recovery.torn, None);
    }
}

#[test]
fn every_kind_of_damage_is_reported() {
    let block_size = 512;
    let ops = vec![set("a", 10), set("b", 700), set("c", 10)];
    let offsets: Vec<usize> = ops
        .iter()
        .scan(0, |at, op| {
            Some(core::mem::replace(at, *at + op.encoded_len()))
        })
        .collect();
    let damage = |f: &dyn Fn(&MemDevice, &[usize])| {
        let dev = MemDevice::new(block_size, 8);
        let (mut log, _, _) = open(&dev);
        append(&mut log, &ops).unwrap();
        f(&dev, &offsets);
        let (_, replayed, recovery) = open(&dev);
        (replayed, recovery.torn.unwrap())
    };
    let at_b = offsets[1] as u64;

    // A flipped payload byte in the middle record: it and all after it are lost.
    let (replayed, torn) = damage(&|dev, at| dev.set_bytes(at[1] + HEADER_LEN + 300, b"!"));
    assert_eq!(
        (replayed, torn),
        (
            ops[..1].to_vec(),
            Torn {
                offset: at_b,
                reason: TornReason::BadChecksum
            }
        )
    );

    let (_, torn) = damage(&|dev, at| dev.set_bytes(at[1], b"X"));
    assert_eq!(torn.reason, TornReason::BadMagic);

    let too_long = (MAX_PAYLOAD as u32 + 1).to_le_bytes();
    let (_, torn) = damage(&|dev, at| dev.set_bytes(at[1] + 8, &too_long));
    assert_eq!(
        torn.reason,
        TornReason::TooLong {
            len: MAX_PAYLOAD as u32 + 1
        }
    );

    let (_, torn) = damage(&|dev, at| dev.set_bytes(at[1] + 8, &5000u32.to_le_bytes()));
    assert_eq!(torn.reason, TornReason::PastEnd { len: 5000 });

    // An intact copy of the first record where the third should be: right checksum, wrong place.
    let (replayed, torn) = damage(&|dev, at| {
        let first = dev.bytes()[..at[1]].to_vec();
        dev.set_bytes(at[2], &first);
    });
    assert_eq!(replayed, ops[..2].to_vec());
    assert_eq!(
        torn.reason,
        TornReason::BadSequence {
            expected: 2,
            found: 0
        }
    );

    // A checksummed payload this version does not know.
    let (_, torn) = damage(&|dev, at| {
        let mut bytes = dev.bytes()[at[2]..at[2] + ops[2].encoded_len()].to_vec();
        bytes[HEADER_LEN] = 9;
        let crc = crc32c::Crc32c::new().update(&bytes[8..]).finish();
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        dev.set_bytes(at[2], &bytes);
    });
    assert_eq!(torn.reason, TornReason::Malformed);
    assert_eq!(
        alloc::format!("{torn}"),
        alloc::format!(
            "skipping a torn record at offset {}: malformed payload",
            offsets[2]
        )
    );
}

#[test]
fn a_full_device_refuses_writes_and_keeps_what_it_has() {
    for block_size in [512, 4096] {
        let dev = MemDevice::new(block_size, 2);
        let (mut log, _, _) = open(&dev);
        let mut acknowledged = Vec::new();
        let mut i = 0;
        let err = loop {
            let op = set(&alloc::format!("k{i:03}"), 100);
            match append(&mut log, core::slice::from_ref(&op)) {
                Ok(()) => acknowledged.push(op),
                Err(e) => break e,
            }
            i += 1;
        };
        let free = log.free();
        assert_eq!(
            err,
            LogError::Full {
                needed: (HEADER_LEN + 1 + 4 + 4 + 100) as u64,
                free
            }
        );
        // A batch that does not fit stages none of its records.
        assert!(append(&mut log, &[set("s", 0), set("t", 2 * block_size)]).is_err());
        // The last bytes can still be used exactly, leaving no room even for a header.
        let exact = set("x", free as usize - HEADER_LEN - 1 - 4 - 1);
        append(&mut log, core::slice::from_ref(&exact)).unwrap();
        acknowledged.push(exact);
        assert_eq!(log.free(), 0);
        assert!(matches!(
            append(&mut log, &[Op::Del(vec![])]),
            Err(LogError::Full {
                needed: 25,
                free: 0
            })
        ));
        let (log, replayed, recovery) = open(&dev);
        assert_eq!((replayed, recovery.torn), (acknowledged, None));
        assert_eq!(log.free(), 0);
    }
}

#[test]
fn a_failed_commit_keeps_its_records_staged_for_the_next() {
    let dev = MemDevice::new(512, 8);
    let (mut log, _, _) = open(&dev);
    let ops = vec![set("a", 10), set("b", 600)];
    append(&mut log, &ops[..1]).unwrap();
    dev.crash_in(1, 7);
    assert!(matches!(
        append(&mut log, &ops[1..]),
        Err(LogError::Write {
            block: 1,
            error: "crashed"
        })
    ));
    dev.reboot();
    log.commit().unwrap();
    assert_eq!(open(&dev).1, ops);
}

#[test]
fn oversized_records_and_impossible_devices_are_refused() {
    let dev = MemDevice::new(512, 16 << 11); // 16 MiB
    let (mut log, _, _) = open(&dev);
    let err = append(&mut log, &[set("big", MAX_PAYLOAD)]).unwrap_err();
    assert_eq!(
        err,
        LogError::TooLarge {
            len: MAX_PAYLOAD + 1 + 4 + 3
        }
    );
    assert_eq!(log.end(), 0);

    let Err(err) = Log::open(MemDevice::new(0, 0), |_| {}) else {
        panic!("opened a device without blocks")
    };
    assert_eq!(
        err,
        LogError::Geometry {
            block_size: 0,
            blocks: 0
        }
    );
    assert_eq!(
        alloc::format!("{err}"),
        "unusable log device: 0 blocks of 0 bytes"
    );
}
