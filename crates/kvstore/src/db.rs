//! The database: the store and the log that makes it durable, kept in step.

use crate::log::{BlockDevice, Log, LogError, Record, Recovery, REGION_LEN};
use crate::store::Store;

/// What the connection should do after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Send the replies, then close (QUIT).
    Close,
}

/// A store and its log.
///
/// A write command stages its record in the log and changes the store in the same call, or, if
/// it may not be staged, does neither and replies an error. The records are made durable by
/// [`Db::commit`], once per round of the server loop for all the commands of all the
/// connections in it (group commit). Replies, including those of reads, which may show writes
/// of the same round, must be sent only after that commit returns `Ok`, so that no client ever
/// sees data that a crash could take back. When [`Db::has_uncommitted`] is false, everything in
/// memory is durable and replies may go at once.
///
/// # Space
/// The log lives in one half of the device (a region); compaction rewrites the live data into
/// the other half. So that a compaction always fits and leaves room to append after it, the
/// live data (what a snapshot takes: [`Store::bytes`]) is limited to three quarters of a region
/// ([`Db::live_limit`]). A SET or INCR that would go beyond it is refused with Redis's `-OOM`
/// error; DEL is always accepted (it only shrinks the data; its record may take the last bytes
/// of the region, and then the commit compacts).
///
/// A commit compacts instead of appending when the round's records do not fit in the region,
/// when the garbage in the log (bytes that are not the live data) exceeds both the live data
/// and a quarter of the region (Redis's `auto-aof-rewrite-percentage 100` with a minimum
/// size), or when BGREWRITEAOF asked for it. It is done in the commit, before the round's
/// replies.
#[derive(Debug)]
pub struct Db<D: BlockDevice> {
    pub(crate) store: Store,
    pub(crate) log: Log<D>,
    /// BGREWRITEAOF: compact at the next commit.
    pub(crate) rewrite: bool,
}

impl<D: BlockDevice> Db<D> {
    /// Opens the log on `dev` and replays it. A torn tail is not an error: it is reported in
    /// [`Recovery::torn`], for the server to log. `seed` should differ between runs (see
    /// [`Log::open`]).
    pub fn open(dev: D, seed: u64) -> Result<(Db<D>, Recovery), LogError<D::Error>> {
        let mut store = Store::default();
        let (log, recovery) = Log::open(dev, seed, |record| store.apply(&record))?;
        let db = Db {
            store,
            log,
            rewrite: false,
        };
        Ok((db, recovery))
    }

    /// Makes the writes of every command executed since the last commit durable, compacting
    /// the log if it is time (see [Space](Db#space)). After an error they are in memory but
    /// maybe not on the device: the caller must not send the replies; the simplest correct
    /// reaction is to exit and let recovery restore the acknowledged state (a later commit
    /// would also retry the same writes).
    pub fn commit(&mut self) -> Result<(), LogError<D::Error>> {
        if !self.compaction_due() {
            return self.log.commit();
        }
        let records = self
            .store
            .iter()
            .map(|(key, value)| Record::Set { key, value });
        self.log.compact(records, self.store.len() as u64)?;
        self.rewrite = false;
        Ok(())
    }

    fn compaction_due(&self) -> bool {
        let garbage =
            (self.log.used().saturating_sub(REGION_LEN as u64)).saturating_sub(self.store.bytes());
        self.rewrite
            || self.log.needs_compaction()
            || !self.log.staged_fit()
            || (self.log.has_staged()
                && garbage > self.store.bytes()
                && garbage > self.log.region_len() / 4)
    }

    /// Whether commands executed since the last commit wrote something (or asked for a
    /// compaction): then every reply of the round must wait for [`Db::commit`].
    pub fn has_uncommitted(&self) -> bool {
        self.log.has_staged() || self.rewrite
    }

    /// The most live data ([`Store::bytes`]) the database keeps: three quarters of what a
    /// region holds after its header.
    pub fn live_limit(&self) -> u64 {
        (self.log.region_len() - REGION_LEN as u64) / 4 * 3
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn log(&self) -> &Log<D> {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use alloc::vec::Vec;

    use proptest::prelude::*;

    use super::*;
    use crate::resp::encode;
    use crate::testdev::MemDevice;

    #[derive(Clone, Debug)]
    enum Op {
        Set(u8, Vec<u8>),
        Del(Vec<u8>),
        Incr(u8),
        Get(u8),
        Rewrite,
    }

    fn key(k: u8) -> Vec<u8> {
        alloc::format!("key{k}").into_bytes()
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = 0u8..6;
        let value = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            (-3i64..3).prop_map(|n| alloc::format!("{n}").into_bytes()),
        ];
        prop_oneof![
            4 => (k.clone(), value).prop_map(|(k, v)| Op::Set(k, v)),
            1 => prop::collection::vec(k.clone(), 1..4).prop_map(Op::Del),
            2 => k.clone().prop_map(Op::Incr),
            1 => k.prop_map(Op::Get),
            1 => Just(Op::Rewrite),
        ]
    }

    impl Op {
        fn command(&self) -> Vec<Vec<u8>> {
            match self {
                Op::Set(k, v) => vec![b"SET".to_vec(), key(*k), v.clone()],
                Op::Del(keys) => [b"DEL".to_vec()]
                    .into_iter()
                    .chain(keys.iter().map(|&k| key(k)))
                    .collect(),
                Op::Incr(k) => vec![b"INCR".to_vec(), key(*k)],
                Op::Get(k) => vec![b"GET".to_vec(), key(*k)],
                Op::Rewrite => vec![b"BGREWRITEAOF".to_vec()],
            }
        }

        /// The reply Redis would give with `model` as its data, and the model after the op.
        fn apply(&self, model: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
            let mut out = Vec::new();
            match self {
                Op::Set(k, v) => {
                    model.insert(key(*k), v.clone());
                    encode::simple(&mut out, "OK");
                }
                Op::Del(keys) => {
                    let n = keys
                        .iter()
                        .filter(|&&k| model.remove(&key(k)).is_some())
                        .count();
                    encode::integer(&mut out, n as i64);
                }
                Op::Incr(k) => {
                    let old = model.get(&key(*k)).map(|v| {
                        core::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok())
                    });
                    match old {
                        None => {
                            model.insert(key(*k), b"1".to_vec());
                            encode::integer(&mut out, 1);
                        }
                        Some(Some(n)) => {
                            model.insert(key(*k), alloc::format!("{}", n + 1).into_bytes());
                            encode::integer(&mut out, n + 1);
                        }
                        Some(None) => {
                            encode::error(&mut out, b"ERR value is not an integer or out of range")
                        }
                    }
                }
                Op::Get(k) => match model.get(&key(*k)) {
                    Some(v) => encode::bulk(&mut out, v),
                    None => encode::null(&mut out),
                },
                Op::Rewrite => {
                    encode::simple(&mut out, "Background append only file rewriting started")
                }
            }
            out
        }
    }

    /// The machine stops after its device's crash: a power loss (`Some(seed)`: each unflushed
    /// sector keeps its new bytes or not, as the seed picks) or a clean reboot; then the
    /// database is opened again from what the device kept.
    fn crash_and_reopen(dev: &MemDevice, loss: Option<u64>) -> (Db<MemDevice>, Recovery) {
        match loss {
            Some(seed) => dev.power_loss(seed),
            None => dev.reboot(),
        }
        Db::open(dev.clone(), 2).unwrap()
    }

    fn snapshot(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
        store
            .keys()
            .map(|k| (k.to_vec(), store.get(k).unwrap().to_vec()))
            .collect()
    }

    #[test]
    fn only_writes_leave_something_to_commit() {
        let (mut db, _) = Db::open(MemDevice::new(512, 4), 1).unwrap();
        let mut out = Vec::new();
        db.execute(vec![b"GET".to_vec(), b"k".to_vec()], &mut out);
        db.execute(vec![b"DEL".to_vec(), b"k".to_vec()], &mut out);
        assert!(
            !db.has_uncommitted(),
            "reads and no-op writes can be answered at once"
        );
        db.execute(
            vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()],
            &mut out,
        );
        assert!(db.has_uncommitted());
        db.commit().unwrap();
        assert!(!db.has_uncommitted());
        assert_eq!(out, b"$-1\r\n:0\r\n+OK\r\n");
    }

    const OOM: &[u8] = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n";

    fn command(words: &[&[u8]]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.to_vec()).collect()
    }

    fn run(db: &mut Db<MemDevice>, words: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        db.execute(command(words), &mut out);
        db.commit().unwrap();
        out
    }

    /// The test: fill a small volume to the limit, DEL half, and write again; the log
    /// is compacted as needed and everything survives a restart.
    #[test]
    fn a_full_volume_takes_writes_again_after_deleting_half() {
        let dev = MemDevice::new(512, 32); // 16 KiB: two regions of 8 KiB
        let (mut db, _) = Db::open(dev.clone(), 1).unwrap();
        let value = [b'v'; 100];
        let mut keys = 0;
        while run(
            &mut db,
            &[b"SET", alloc::format!("k{keys:03}").as_bytes(), &value],
        ) == b"+OK\r\n"
        {
            keys += 1;
        }
        assert_eq!(
            run(&mut db, &[b"SET", b"more", &value]),
            OOM,
            "full: refused"
        );
        assert_eq!(keys, 47, "129 bytes a key, 6108 at most");
        for i in (0..keys).step_by(2) {
            assert_eq!(
                run(&mut db, &[b"DEL", alloc::format!("k{i:03}").as_bytes()]),
                b":1\r\n"
            );
        }
        // Room for as many again as were deleted, however many times the log is compacted.
        for round in 0..3 {
            for i in (0..keys).step_by(2) {
                let key = alloc::format!("n{i:03}");
                let reply = run(&mut db, &[b"SET", key.as_bytes(), &value]);
                assert_eq!(reply, b"+OK\r\n", "round {round}, {key}");
            }
            assert_eq!(run(&mut db, &[b"SET", b"more", &value]), OOM, "full again");
            for i in (0..keys).step_by(2) {
                let key = alloc::format!("n{i:03}");
                assert_eq!(run(&mut db, &[b"DEL", key.as_bytes()]), b":1\r\n");
            }
        }
        assert!(db.log().generation() > 3, "{}", db.log().generation());
        assert_eq!(db.store().len(), keys / 2);
        let store = db.store().clone();
        let (db, recovery) = Db::open(dev, 2).unwrap();
        assert_eq!(db.store(), &store);
        assert_eq!(recovery.torn, None);
    }

    /// DEL is accepted however full the region is: its record may not fit, and then the
    /// commit compacts, which always fits.
    #[test]
    fn del_always_works() {
        let dev = MemDevice::new(512, 8); // regions of 2 KiB
        let (mut db, _) = Db::open(dev.clone(), 1).unwrap();
        // Fill the live data to the limit with one key, then overwrite it until the region
        // has less room than a DEL record.
        let limit = db.live_limit() as usize;
        let big = alloc::vec![b'x'; limit - crate::log::set_len(1, 0)];
        assert_eq!(run(&mut db, &[b"SET", b"a", &big]), b"+OK\r\n");
        let value = [b'y'; 60];
        let mut sets = 0;
        while db.log().free() >= 30 {
            let key = alloc::format!("{sets}");
            let mut out = Vec::new();
            db.execute(command(&[b"SET", key.as_bytes(), &value]), &mut out);
            assert_eq!(out, OOM);
            // Rewrite "a" in place, which the limit allows.
            assert_eq!(run(&mut db, &[b"SET", b"a", &big]), b"+OK\r\n");
            sets += 1;
            if sets > 100 {
                break;
            }
        }
        assert_eq!(run(&mut db, &[b"DEL", b"a"]), b":1\r\n");
        let (db, _) = Db::open(dev, 2).unwrap();
        assert!(db.store().is_empty());
    }

    /// Garbage past the threshold compacts without being asked.
    #[test]
    fn garbage_past_the_threshold_is_compacted() {
        let dev = MemDevice::new(512, 64); // regions of 16 KiB
        let (mut db, _) = Db::open(dev.clone(), 1).unwrap();
        let mut used = Vec::new();
        for i in 0..200 {
            run(
                &mut db,
                &[b"SET", b"k", alloc::format!("{i:050}").as_bytes()],
            );
            used.push(db.log().used());
        }
        // One key of 76 bytes: garbage passes a quarter of the region (4 KiB) well before the
        // region fills, and each compaction leaves the header and the key.
        let key = crate::log::set_len(1, 50) as u64;
        assert!(
            db.log().generation() > 2,
            "generation {}",
            db.log().generation()
        );
        assert!(used.iter().all(|&u| u <= 4096 + 45 + 2 * key), "{used:?}");
        assert!(used.contains(&(45 + key)));
        let store = db.store().clone();
        assert_eq!(Db::open(dev, 2).unwrap().0.store(), &store);
    }

    /// The crash test: a device that dies at its N-th write, for every N through two
    /// rounds that compact (one asked for, one because the round does not fit) and the rounds
    /// around them, torn at several bytes, with and without losing unflushed writes. After a
    /// restart the data is exactly what was acknowledged, or that plus a prefix of the round in
    /// flight (all of it if it compacted: a compaction is all or nothing), and the database
    /// works on.
    #[test]
    fn a_crash_at_every_write_through_compactions_loses_nothing_acknowledged() {
        let value = |i: usize| alloc::format!("{i:0200}").into_bytes();
        let rounds: Vec<Vec<Vec<Vec<u8>>>> = vec![
            (0..5)
                .map(|i| vec![b"SET".to_vec(), key(i as u8), value(i)])
                .collect(),
            vec![
                vec![b"DEL".to_vec(), key(1)],
                vec![b"SET".to_vec(), key(0), value(99)],
                vec![b"BGREWRITEAOF".to_vec()],
            ],
            vec![vec![b"INCR".to_vec(), key(7)]],
            // More than the rest of the region holds (regions of 4 KiB): compacts.
            (0..20)
                .map(|i| vec![b"SET".to_vec(), key(2), value(i)])
                .collect(),
            vec![vec![b"SET".to_vec(), key(3), b"last".to_vec()]],
        ];
        // How many writes the whole run takes without a crash.
        let clean = MemDevice::new(512, 16);
        let (mut db, _) = Db::open(clean.clone(), 1).unwrap();
        let mut generations = Vec::new();
        for round in &rounds {
            for c in round {
                db.execute(c.clone(), &mut Vec::new());
            }
            db.commit().unwrap();
            generations.push(db.log().generation());
        }
        assert_eq!(
            generations,
            [1, 2, 2, 3, 3],
            "the rounds compact where meant to"
        );
        // Writes after the one that starts the new device's region.
        let total = clean.writes() - 1;
        for crash in 0..total {
            for tear in [0, 1, 45, 300, 512] {
                for loss in [None, Some((crash * 7 + tear) as u64)] {
                    let what = alloc::format!("write {crash}, tear {tear}, loss {loss:?}");
                    let dev = MemDevice::new(512, 16);
                    let (mut db, _) = Db::open(dev.clone(), 1).unwrap();
                    dev.crash_in(crash, tear);
                    let mut in_flight = None;
                    for round in &rounds {
                        // The states the round may leave: after each of its commands.
                        let mut states = vec![snapshot(db.store())];
                        for c in round {
                            db.execute(c.clone(), &mut Vec::new());
                            states.push(snapshot(db.store()));
                        }
                        if db.commit().is_err() {
                            in_flight = Some((states, db.log().generation()));
                            break;
                        }
                    }
                    let (states, generation) = in_flight.expect("the device crashed");
                    drop(db);
                    let (mut db, recovery) = crash_and_reopen(&dev, loss);
                    let recovered = snapshot(db.store());
                    if recovery.generation > generation {
                        // The round's compaction got onto the device: all of the round.
                        assert_eq!(Some(&recovered), states.last(), "{what}");
                    } else {
                        assert!(
                            states.contains(&recovered),
                            "{what}: recovered {:?}",
                            recovered.keys().collect::<Vec<_>>()
                        );
                    }
                    assert_eq!(
                        run(&mut db, &[b"SET", b"after", b"1"]),
                        b"+OK\r\n",
                        "{what}"
                    );
                    let expected = snapshot(db.store());
                    assert_eq!(
                        snapshot(Db::open(dev, 3).unwrap().0.store()),
                        expected,
                        "{what}"
                    );
                }
            }
        }
    }

    proptest! {
        /// Random rounds of commands with a group commit after each, on small devices (so the
        /// log is compacted, by BGREWRITEAOF or because it must be), that die in a random
        /// write, torn at a random byte, and may lose any write since the last flush. After a
        /// restart the data is exactly what was acknowledged, plus possibly a prefix of the
        /// round whose commit was cut short (whose clients never got a reply); and the
        /// database works on.
        #[test]
        fn a_crash_loses_nothing_acknowledged(
            block_size in prop_oneof![Just(512usize), Just(4096)],
            blocks in 2usize..24,
            rounds in prop::collection::vec(prop::collection::vec(op(), 1..8), 1..12),
            crash_after in 0usize..60,
            tear in any::<prop::sample::Index>(),
            loss in prop::option::of(any::<u64>()),
        ) {
            let dev = MemDevice::new(block_size, blocks);
            let (mut db, _) = Db::open(dev.clone(), 2).unwrap();
            dev.crash_in(crash_after, tear.index(block_size + 1));
            let mut model = BTreeMap::new();
            let mut acknowledged = BTreeMap::new();
            let mut crashed_round = None;
            for round in &rounds {
                // The states a crash in this round's commit may leave: after each of its commands.
                let mut states = vec![snapshot(db.store())];
                for op in round {
                    let mut out = Vec::new();
                    prop_assert_eq!(db.execute(op.command(), &mut out), Flow::Continue);
                    if out == OOM {
                        prop_assert!(matches!(op, Op::Set(..) | Op::Incr(_)));
                    } else {
                        prop_assert_eq!(out, op.apply(&mut model), "{:?}", op);
                    }
                    prop_assert_eq!(&snapshot(db.store()), &model);
                    states.push(model.clone());
                }
                if db.commit().is_err() {
                    crashed_round = Some(states);
                    break;
                }
                acknowledged = model.clone();
            }
            drop(db);
            let (mut db, recovery) = crash_and_reopen(&dev, loss);
            let recovered = snapshot(db.store());
            match crashed_round {
                None => {
                    prop_assert_eq!(&recovered, &acknowledged);
                    prop_assert_eq!(recovery.torn, None);
                }
                Some(states) => prop_assert!(
                    states.contains(&recovered),
                    "recovered {:?}, acknowledged {:?}", recovered.keys().collect::<Vec<_>>(), acknowledged.keys().collect::<Vec<_>>()
                ),
            }

            // Life goes on after the crash: a new write lands right after the recovered log.
            let mut out = Vec::new();
            db.execute(vec![b"DEL".to_vec(), key(0)], &mut out);
            db.commit().unwrap();
            let expected = snapshot(db.store());
            let (db, recovery) = Db::open(dev, 3).unwrap();
            prop_assert_eq!(snapshot(db.store()), expected);
            prop_assert_eq!(recovery.torn, None);
        }
    }
}
