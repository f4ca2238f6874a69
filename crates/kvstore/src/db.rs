//! The database: the store and the log that makes it durable, kept in step.

use crate::log::{BlockDevice, Log, LogError, Recovery};
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
/// the record cannot be staged (device full), does neither and replies an error. The records are
/// made durable by [`Db::commit`], once per round of the server loop for all the commands of all
/// the connections in it (group commit). Replies, including those of reads, which may show
/// writes of the same round, must be sent only after that commit returns `Ok`, so that no client
/// ever sees data that a crash could take back. When [`Db::has_uncommitted`] is false, everything
/// in memory is durable and replies may go at once.
#[derive(Debug)]
pub struct Db<D: BlockDevice> {
    pub(crate) store: Store,
    pub(crate) log: Log<D>,
}

impl<D: BlockDevice> Db<D> {
    /// Opens the log on `dev` and replays it. A torn tail is not an error: it is reported in
    /// [`Recovery::torn`], for the server to log.
    pub fn open(dev: D) -> Result<(Db<D>, Recovery), LogError<D::Error>> {
        let mut store = Store::default();
        let (log, recovery) = Log::open(dev, |record| store.apply(&record))?;
        Ok((Db { store, log }, recovery))
    }

    /// Makes the writes of every command executed since the last commit durable. After an
    /// error they are in memory but maybe not on the device: the caller must not send the
    /// replies; the simplest correct reaction is to exit and let recovery restore the
    /// acknowledged state (a later commit would also retry the same writes).
    pub fn commit(&mut self) -> Result<(), LogError<D::Error>> {
        self.log.commit()
    }

    /// Whether commands executed since the last commit wrote something: then every reply of
    /// the round must wait for [`Db::commit`].
    pub fn has_uncommitted(&self) -> bool {
        self.log.has_staged()
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
    }

    fn key(k: u8) -> Vec<u8> {
        alloc::format!("key{k}").into_bytes()
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = 0u8..6;
        let value = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..700),
            (-3i64..3).prop_map(|n| alloc::format!("{n}").into_bytes()),
        ];
        prop_oneof![
            4 => (k.clone(), value).prop_map(|(k, v)| Op::Set(k, v)),
            1 => prop::collection::vec(k.clone(), 1..4).prop_map(Op::Del),
            2 => k.clone().prop_map(Op::Incr),
            1 => k.prop_map(Op::Get),
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
            }
            out
        }
    }

    fn snapshot(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
        store
            .keys()
            .map(|k| (k.to_vec(), store.get(k).unwrap().to_vec()))
            .collect()
    }

    #[test]
    fn only_writes_leave_something_to_commit() {
        let (mut db, _) = Db::open(MemDevice::new(512, 4)).unwrap();
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

    proptest! {
        /// Random rounds of commands with a group commit after each, on a device that dies in
        /// a random write, torn at a random byte. After a restart the data is exactly what was
        /// acknowledged, plus possibly a prefix of the round whose commit was cut short (whose
        /// clients never got a reply); and the database works on.
        #[test]
        fn a_crash_loses_nothing_acknowledged(
            block_size in prop_oneof![Just(512usize), Just(4096)],
            blocks in 2usize..24,
            rounds in prop::collection::vec(prop::collection::vec(op(), 1..8), 1..12),
            crash_after in 0usize..60,
            tear in any::<prop::sample::Index>(),
        ) {
            let dev = MemDevice::new(block_size, blocks);
            let (mut db, _) = Db::open(dev.clone()).unwrap();
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
                    if out.starts_with(b"-ERR the log device is full") {
                        prop_assert!(!matches!(op, Op::Get(_)));
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
            dev.reboot();

            let (mut db, recovery) = Db::open(dev.clone()).unwrap();
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
            let (db, recovery) = Db::open(dev).unwrap();
            prop_assert_eq!(snapshot(db.store()), expected);
            prop_assert_eq!(recovery.torn, None);
        }
    }
}
