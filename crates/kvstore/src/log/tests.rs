//! The log against an in-memory device: round trips, group commit, recovery from crashes at
//! every block and byte and from power losses, garbage, compaction, a full region, failing
//! writes and logs of the first format.

use alloc::vec;
use alloc::vec::Vec;

use super::record::{Header, HEADER_LEN, MAGIC, MAGIC_V1};
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
    let (log, recovery) =
        Log::open(dev.clone(), 42, |r| ops.push(Op::from_record(r))).expect("open");
    (log, ops, recovery)
}

/// Where the first record after a new region's header goes.
const START: usize = REGION_LEN;

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

fn recovery(records: u64, bytes: usize, region: u64, generation: u64) -> Recovery {
    Recovery {
        records,
        bytes: bytes as u64,
        region,
        generation,
        torn: None,
        migrated: 0,
    }
}

#[test]
fn a_fresh_device_is_an_empty_log() {
    for block_size in [512, 4096] {
        let dev = MemDevice::new(block_size, 8);
        let (log, ops, recovery) = open(&dev);
        assert_eq!(recovery, self::recovery(0, START, 0, 1));
        assert!(ops.is_empty());
        assert_eq!(log.end(), START as u64);
        assert_eq!(log.free(), 4 * block_size as u64 - START as u64);
        assert_eq!(
            (dev.writes(), dev.flushes()),
            (1, 1),
            "a new device gets its region header, durably"
        );
        drop(log);
        let (_, _, recovery) = open(&dev);
        assert_eq!(recovery, self::recovery(0, START, 0, 1));
        assert_eq!(dev.writes(), 1, "opening a log writes nothing");
    }
}

#[test]
fn round_trips_one_by_one_and_in_batches() {
    for block_size in [512, 4096] {
        let ops = sample_ops(block_size);
        let total = START + ops.iter().map(Op::encoded_len).sum::<usize>();
        for batch in [1, 2, 3, ops.len()] {
            let dev = MemDevice::new(block_size, 32);
            let (mut log, _, _) = open(&dev);
            for chunk in ops.chunks(batch) {
                append(&mut log, chunk).unwrap();
            }
            assert_eq!(log.end(), total as u64);
            let (log, replayed, recovery) = open(&dev);
            assert_eq!(replayed, ops, "block size {block_size}, batches of {batch}");
            assert_eq!(recovery, self::recovery(ops.len() as u64, total, 0, 1));
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
fn a_batch_costs_one_write_per_block_it_touches_and_one_flush() {
    for block_size in [512, 4096] {
        let dev = MemDevice::new(block_size, 64);
        let (mut log, _, _) = open(&dev);
        // redis-benchmark's SET: 16-byte keys, 3-byte values.
        let batch: Vec<Op> = (0..50)
            .map(|i| Op::Set(alloc::format!("key:{i:012}").into_bytes(), b"xxx".to_vec()))
            .collect();
        let bytes: usize = batch.iter().map(Op::encoded_len).sum();
        for round in 0..3 {
            let (start, writes, flushes) = (log.end() as usize, dev.writes(), dev.flushes());
            append(&mut log, &batch).unwrap();
            // Through the zeros after the last record: a whole header's worth.
            let touched = (start + bytes + HEADER_LEN).div_ceil(block_size) - start / block_size;
            assert_eq!(
                (dev.writes() - writes, dev.flushes() - flushes),
                (touched, 1),
                "round {round} at block size {block_size}"
            );
        }
        // Committing with nothing staged writes nothing.
        let (writes, flushes) = (dev.writes(), dev.flushes());
        log.commit().unwrap();
        assert_eq!((dev.writes(), dev.flushes()), (writes, flushes));
    }
}

/// The log always ends in a whole header of zeros, even when its last record ends on a block
/// boundary or a few bytes before one: otherwise whatever the next block holds would be read
/// as the next record.
#[test]
fn the_log_ends_in_zeros_whatever_the_next_block_holds() {
    let block_size = 512;
    for gap in [0, 1, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 1] {
        let dev = MemDevice::new(block_size, 8);
        dev.set_bytes(block_size, &[0x5a; 512]);
        let (mut log, _, _) = open(&dev);
        let filler = set("f", block_size - START - gap - set("f", 0).encoded_len());
        append(&mut log, core::slice::from_ref(&filler)).unwrap();
        assert_eq!(log.end() as usize, block_size - gap);
        let (_, replayed, recovery) = open(&dev);
        assert_eq!((replayed, recovery.torn), (vec![filler], None), "gap {gap}");
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
        let start = START + acknowledged.iter().map(Op::encoded_len).sum::<usize>();
        let end = start + last.encoded_len();
        let writes = (end + HEADER_LEN).div_ceil(block_size) - start / block_size;
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
                let dev = MemDevice::new(block_size, 16);
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

/// A power loss can keep any of the blocks written since the last flush and lose the others.
/// Whatever it keeps, what was flushed survives, and of the batch in flight only whole records
/// in order (a prefix) are replayed: its later records that landed while earlier ones did not
/// are dead, even once new records line up with them.
#[test]
fn a_power_loss_keeps_what_was_flushed_and_a_prefix_of_the_rest() {
    let block_size = 512;
    let acknowledged = vec![set("a", 10), set("b", 700)];
    // Records of exactly one block each: the later ones stay where new ones may line up.
    let batch: Vec<Op> = (0..6)
        .map(|i| {
            set(
                &alloc::format!("{i}"),
                block_size - set("0", 0).encoded_len(),
            )
        })
        .collect();
    for seed in 0..200 {
        let dev = MemDevice::new(block_size, 32);
        let (mut log, _, _) = open(&dev);
        append(&mut log, &acknowledged).unwrap();
        dev.crash_in(batch.len(), 0); // every block of the batch written, the flush fails
        assert!(append(&mut log, &batch).is_err());
        drop(log);
        dev.power_loss(seed);
        let (mut log, replayed, _) = open(&dev);
        assert_eq!(replayed[..2], acknowledged, "seed {seed}");
        assert!(batch.starts_with(&replayed[2..]), "seed {seed}");

        // The same sizes again, different contents: old records of the lost batch that landed
        // sit exactly where new ones end, and must not be taken for the next ones.
        let again: Vec<Op> = (0..2)
            .map(|i| {
                set(
                    &alloc::format!("{}", 6 + i),
                    block_size - set("0", 0).encoded_len(),
                )
            })
            .collect();
        append(&mut log, &again).unwrap();
        let mut expected = replayed.clone();
        expected.extend(again);
        let (_, replayed, recovery) = open(&dev);
        assert_eq!((replayed, recovery.torn), (expected, None), "seed {seed}");
    }
}

/// Without the flush in the commit, a power loss takes back acknowledged records.
#[test]
fn a_commit_flushes_before_it_returns() {
    let dev = MemDevice::new(512, 32);
    let (mut log, _, _) = open(&dev);
    let ops = sample_ops(512);
    for op in &ops {
        let flushes = dev.flushes();
        append(&mut log, core::slice::from_ref(op)).unwrap();
        assert_eq!(dev.flushes(), flushes + 1);
    }
    dev.power_loss(7);
    assert_eq!(open(&dev).1, ops);
}

/// What the chained checksums are for: the inside of a torn value is chosen by a client and
/// can hold a record with the right magic, length and sequence number; it must never be
/// replayed, even once the log ends right before it and the zeros that should follow were
/// never written.
#[test]
fn a_record_forged_inside_a_torn_value_is_never_replayed() {
    let block_size = 512;
    let dev = MemDevice::new(block_size, 16);
    let (mut log, _, _) = open(&dev);
    append(&mut log, &[set("a", 10)]).unwrap();
    let start = log.end() as usize;

    // The forged record claims to be the one after the next (sequence 3), and sits at the
    // start of block 1. The client cannot know the region's nonce, so it cannot chain it.
    let mut forged = Vec::new();
    Record::Set {
        key: b"evil",
        value: b"1",
    }
    .encode(3, 0, &mut forged);
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

    // Recovery skips the torn record; the next record then ends exactly at block 1, and its
    // commit dies before the zeros after it are written.
    let (mut log, _, recovery) = open(&dev);
    assert_eq!(
        recovery.torn.map(|t| t.reason),
        Some(TornReason::BadChecksum)
    );
    let filler = block_size - start - HEADER_LEN - 1 - 4 - 1;
    dev.crash_in(1, 0);
    assert!(append(&mut log, &[set("f", filler)]).is_err());
    dev.reboot();

    let (_, replayed, recovery) = open(&dev);
    assert_eq!(replayed, vec![set("a", 10), set("f", filler)]);
    assert_eq!(recovery.bytes, block_size as u64);
    assert_eq!(
        recovery.torn.map(|t| (t.offset, t.reason)),
        Some((block_size as u64, TornReason::BadChecksum))
    );
}

#[test]
fn garbage_after_the_log_is_skipped_and_overwritten() {
    for block_size in [512, 4096] {
        let dev = MemDevice::new(block_size, 32);
        let (mut log, _, _) = open(&dev);
        let ops = sample_ops(block_size);
        append(&mut log, &ops).unwrap();
        let end = log.end() as usize;
        drop(log);
        // Deterministic pseudo-random bytes (xorshift) over the rest of the region.
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
        .scan(START, |at, op| {
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
    // A record chained to the one before it (whose checksum is at its offset + 4).
    let chained = |dev: &MemDevice, at: usize, seq: u64, payload_op: Option<u8>| {
        let bytes = dev.bytes();
        let prev_crc = offsets
            .iter()
            .rev()
            .find(|&&o| o < at)
            .map(|&o| u32::from_le_bytes(bytes[o + 4..o + 8].try_into().unwrap()))
            .unwrap();
        let mut out = Vec::new();
        Record::Set {
            key: b"c",
            value: b"0123456789",
        }
        .encode(seq, prev_crc, &mut out);
        if let Some(op) = payload_op {
            out[HEADER_LEN] = op;
            let crc = crc32c::Crc32c::new()
                .update(&prev_crc.to_le_bytes())
                .update(&out[8..])
                .finish();
            out[4..8].copy_from_slice(&crc.to_le_bytes());
        }
        dev.set_bytes(at, &out);
    };

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

    // An intact copy of the first record where the third should be: right checksum for the
    // first place, not for this one.
    let (replayed, torn) = damage(&|dev, at| {
        let first = dev.bytes()[at[0]..at[1]].to_vec();
        dev.set_bytes(at[2], &first);
    });
    assert_eq!(replayed, ops[..2].to_vec());
    assert_eq!(torn.reason, TornReason::BadChecksum);

    // Chained right, numbered wrong.
    let (replayed, torn) = damage(&|dev, at| chained(dev, at[2], 9, None));
    assert_eq!(replayed, ops[..2].to_vec());
    assert_eq!(
        torn.reason,
        TornReason::BadSequence {
            expected: 3,
            found: 9
        }
    );

    // A checksummed payload this version does not know.
    let (_, torn) = damage(&|dev, at| chained(dev, at[2], 3, Some(9)));
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
fn a_full_region_refuses_a_commit_and_keeps_what_it_has() {
    for block_size in [512, 4096] {
        let dev = MemDevice::new(block_size, 4);
        let (mut log, _, _) = open(&dev);
        assert_eq!(log.region_len(), 2 * block_size as u64);
        let mut acknowledged = Vec::new();
        let mut i = 0;
        let err = loop {
            let op = set(&alloc::format!("k{i:03}"), 90);
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
                needed: (HEADER_LEN + 1 + 4 + 4 + 90) as u64,
                free
            }
        );
        // A batch that does not fit stages none of its records.
        assert!(append(&mut log, &[set("s", 0), set("t", 2 * block_size)]).is_err());
        assert!(!log.has_staged());
        // Staged records that do not fit are refused by the commit, and stay staged.
        log.stage(&set("u", 2 * block_size).record()).unwrap();
        assert!(matches!(log.commit(), Err(LogError::Full { .. })));
        assert!(log.has_staged() && !log.staged_fit());
        // The last bytes can still be used exactly, leaving no room even for a header.
        let (mut log, _, _) = open(&dev);
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

/// Compaction writes the snapshot into the other region, continues the log there, and back.
#[test]
fn compaction_moves_the_log_between_regions() {
    let block_size = 512;
    let dev = MemDevice::new(block_size, 16);
    let (mut log, _, _) = open(&dev);
    append(&mut log, &[set("a", 100), set("b", 10), set("a", 5)]).unwrap();
    // The live data: the last SET of "a" and "b".
    let live = [set("a", 5), set("b", 10)];
    log.stage(&set("staged", 3).record()).unwrap();
    log.compact(live.iter().map(Op::record), 2).unwrap();
    assert!(!log.has_staged(), "the snapshot holds what was staged");
    assert_eq!((log.region_offset(), log.generation()), (8 * 512, 2));
    let snapshot_end = START + live.iter().map(Op::encoded_len).sum::<usize>();
    assert_eq!(log.end(), snapshot_end as u64);
    append(&mut log, &[set("c", 1)]).unwrap();

    let (mut log, replayed, recovery) = open(&dev);
    let mut expected = live.to_vec();
    expected.push(set("c", 1));
    assert_eq!(replayed, expected);
    assert_eq!(
        recovery,
        self::recovery(3, snapshot_end + set("c", 1).encoded_len(), 8 * 512, 2)
    );

    // And back into region 0, over the old log, which must not show through.
    log.compact(expected.iter().map(Op::record), 3).unwrap();
    assert_eq!((log.region_offset(), log.generation()), (0, 3));
    let (_, replayed, recovery) = open(&dev);
    assert_eq!(replayed, expected);
    assert_eq!((recovery.torn, recovery.generation), (None, 3));
}

/// A compaction cut short at any write, any byte, or at its flush followed by a power loss,
/// leaves the old log in charge, whole; the next compaction then goes through.
#[test]
fn a_crash_at_every_write_of_a_compaction_keeps_the_old_log() {
    let block_size = 512;
    let old = vec![set("a", 300), set("b", 700), set("a", 20), set("c", 900)];
    let live = [set("a", 20), set("b", 700), set("c", 900)];
    let snapshot_writes =
        (START + live.iter().map(Op::encoded_len).sum::<usize>() + HEADER_LEN).div_ceil(block_size);
    for crash_write in 0..=snapshot_writes {
        for tear in [0, 1, HEADER_LEN, 300, block_size] {
            for loss in [None, Some(crash_write as u64 * 31 + tear as u64)] {
                let dev = MemDevice::new(block_size, 16);
                let (mut log, _, _) = open(&dev);
                append(&mut log, &old).unwrap();
                dev.crash_in(crash_write, tear);
                let result = log.compact(live.iter().map(Op::record), live.len() as u64);
                assert_eq!(result.is_err(), crash_write < snapshot_writes);
                assert!(log.needs_compaction() == result.is_err());
                if result.is_err() {
                    assert_eq!(log.commit(), Err(LogError::Interrupted));
                }
                drop(log);
                match loss {
                    Some(seed) => dev.power_loss(seed),
                    None => dev.reboot(),
                }
                let (mut log, replayed, recovery) = open(&dev);
                let what = alloc::format!("write {crash_write}, tear {tear}, loss {loss:?}");
                let recovered = recovery.generation;
                if recovered == 2 {
                    // Complete on the device, though its flush never returned: as good.
                    assert_eq!(replayed, live, "{what}");
                } else {
                    assert_eq!((replayed, recovery.generation), (old.clone(), 1), "{what}");
                }
                log.compact(live.iter().map(Op::record), live.len() as u64)
                    .unwrap();
                append(&mut log, &[set("d", 1)]).unwrap();
                let (_, replayed, recovery) = open(&dev);
                let mut expected = live.to_vec();
                expected.push(set("d", 1));
                assert_eq!((replayed, recovery.torn), (expected, None), "{what}");
                assert!(recovery.generation > recovered, "{what}");
            }
        }
    }
}

/// A snapshot larger than a region is refused before anything is flushed; the log goes on.
#[test]
fn a_snapshot_that_does_not_fit_is_refused() {
    let dev = MemDevice::new(512, 8);
    let (mut log, _, _) = open(&dev);
    append(&mut log, &[set("a", 10)]).unwrap();
    let big = [set("x", 1500), set("y", 1000)];
    assert!(matches!(
        log.compact(big.iter().map(Op::record), 2),
        Err(LogError::Full { .. })
    ));
    assert!(log.needs_compaction());
    let (_, replayed, recovery) = open(&dev);
    assert_eq!((replayed, recovery.generation), (vec![set("a", 10)], 1));
}

/// Writes `ops` as a log of the first format (`SKv1`, no regions, no chain) from offset 0.
fn write_v1_log(dev: &MemDevice, ops: &[Op]) -> usize {
    let mut bytes = Vec::new();
    for (seq, op) in ops.iter().enumerate() {
        let start = bytes.len();
        op.record().encode(seq as u64, 0, &mut bytes);
        bytes[start..start + 4].copy_from_slice(&MAGIC_V1);
        let crc = crc32c::Crc32c::new().update(&bytes[start + 8..]).finish();
        bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        let header = Header::parse(bytes[start..start + HEADER_LEN].try_into().unwrap());
        assert!(header.checks_v1(
            bytes[start..start + HEADER_LEN].try_into().unwrap(),
            &bytes[start + HEADER_LEN..]
        ));
    }
    dev.set_bytes(0, &bytes);
    bytes.len()
}

#[test]
fn a_log_of_the_first_format_is_carried_over() {
    let block_size = 512;
    let dev = MemDevice::new(block_size, 16);
    let ops = vec![
        set("a", 10),
        set("b", 600),
        Op::Del(vec![b"a".to_vec()]),
        set("c", 5),
    ];
    let len = write_v1_log(&dev, &ops);
    dev.set_bytes(len, b"torn"); // and a torn tail
    let before = dev.bytes();

    let (mut log, replayed, recovery) = open(&dev);
    assert_eq!(replayed, ops, "the old log is replayed as it is");
    assert_eq!(
        (recovery.migrated, recovery.region, recovery.generation),
        (4, 8 * 512, 1)
    );
    assert_eq!(recovery.torn.map(|t| t.offset), Some(len as u64));
    assert_eq!(
        dev.bytes()[..8 * 512],
        before[..8 * 512],
        "region 0, with the old log, is not written"
    );
    append(&mut log, &[set("d", 1)]).unwrap();

    let (_, replayed, recovery) = open(&dev);
    assert_eq!(replayed, vec![set("b", 600), set("c", 5), set("d", 1)]);
    assert_eq!((recovery.migrated, recovery.generation), (0, 1));
}

#[test]
fn a_log_of_the_first_format_past_the_middle_is_refused() {
    let dev = MemDevice::new(512, 4);
    let len = write_v1_log(&dev, &[set("a", 1200)]);
    let Err(err) = Log::open(dev.clone(), 1, |_| {}) else {
        panic!("opened an old log reaching into the second region")
    };
    assert_eq!(
        err,
        LogError::LegacyTooLong {
            end: len as u64,
            region: 1024
        }
    );
    let at_least = alloc::format!("at least {} bytes", 2 * len);
    assert!(alloc::format!("{err}").contains(&at_least), "{err}");
}

#[test]
fn oversized_records_and_impossible_devices_are_refused() {
    let dev = MemDevice::new(512, 32 << 11); // 32 MiB
    let (mut log, _, _) = open(&dev);
    let err = append(&mut log, &[set("big", MAX_PAYLOAD)]).unwrap_err();
    assert_eq!(
        err,
        LogError::TooLarge {
            len: MAX_PAYLOAD + 1 + 4 + 3
        }
    );
    assert_eq!(log.end(), START as u64);

    for (block_size, blocks) in [(0, 0), (512, 1), (256, 2)] {
        let Err(err) = Log::open(MemDevice::new(block_size, blocks), 1, |_| {}) else {
            panic!("opened a device of {blocks} blocks of {block_size}")
        };
        assert_eq!(
            err,
            LogError::Geometry {
                block_size,
                blocks: blocks as u64
            }
        );
    }
    assert_eq!(
        alloc::format!(
            "{}",
            LogError::<&str>::Geometry {
                block_size: 512,
                blocks: 1
            }
        ),
        "unusable log device: 1 blocks of 512 bytes (it needs two regions of at least 512 \
         bytes each)"
    );
}
