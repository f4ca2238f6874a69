//! A user id of its own for each running monitor, so that a compromised monitor cannot signal
//! (or ptrace, or otherwise touch) its siblings: ids from a range no user or container is given,
//! each held by a lock file under [`LOCK_DIR`] for as long as its monitor runs, as systemd's
//! `DynamicUser=` does. The locks are host-wide, so two daemons (two state directories) never
//! give one id to two monitors; a daemon that dies releases its locks with its descriptors.

use std::fs::{File, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::locks::LockExt;

/// Where the locks are (one file per id in use or once used, named after the id).
pub const LOCK_DIR: &str = "/run/sturdy/monitor-uids";
/// The first id of the default range: 0x70000000, above the ids systemd gives to users, its
/// dynamic users and its containers, below those it keeps for foreign images and the 2^31 mark.
pub const DEFAULT_FIRST: u32 = 0x7000_0000;
/// How many ids the default range has (one per monitor running at once).
pub const DEFAULT_COUNT: u32 = 65536;
/// The environment variable that sets another range: `FIRST-LAST`.
pub const ENV: &str = "STURDY_MONITOR_UIDS";

/// The range the ids are taken from.
#[derive(Debug)]
pub struct UidPool {
    dir: PathBuf,
    first: u32,
    last: u32,
    /// Where the next search starts: ids are handed out in turn, not the lowest free one, so a
    /// new instance does not get the id its predecessor had a moment ago.
    next: Mutex<u32>,
}

/// An id held for one monitor; released when dropped.
#[derive(Debug)]
pub struct Lease {
    /// The user id (also the group id) the monitor runs as.
    pub uid: u32,
    _lock: File,
}

impl UidPool {
    /// The range from `STURDY_MONITOR_UIDS` (`FIRST-LAST`), else the default one.
    pub fn from_env() -> Result<UidPool, String> {
        let (first, last) = match std::env::var(ENV) {
            Ok(v) => parse_range(&v).map_err(|e| format!("{ENV}={v}: {e}"))?,
            Err(_) => (DEFAULT_FIRST, DEFAULT_FIRST + (DEFAULT_COUNT - 1)),
        };
        UidPool::new(PathBuf::from(LOCK_DIR), first, last)
    }

    /// Ids `first..=last`, locked under `dir` (created, owner only).
    pub fn new(dir: PathBuf, first: u32, last: u32) -> Result<UidPool, String> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| format!("cannot restrict {}: {e}", dir.display()))?;
        Ok(UidPool {
            dir,
            first,
            last,
            next: Mutex::new(first),
        })
    }

    /// Takes an id no other monitor holds, on this host.
    pub fn lease(&self) -> Result<Lease, String> {
        let mut next = self.next.locked();
        let count = u64::from(self.last - self.first) + 1;
        for i in 0..count {
            let uid = self.first + ((u64::from(*next - self.first) + i) % count) as u32;
            let path = self.dir.join(uid.to_string());
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("monitor user ids: cannot open {}: {e}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {
                    *next = if uid == self.last {
                        self.first
                    } else {
                        uid + 1
                    };
                    return Ok(Lease { uid, _lock: file });
                }
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(e)) => {
                    return Err(format!(
                        "monitor user ids: cannot lock {}: {e}",
                        path.display()
                    ))
                }
            }
        }
        Err(format!(
            "all {count} monitor user ids ({}-{}) are in use: set a larger range with {ENV}",
            self.first, self.last
        ))
    }
}

/// `FIRST-LAST`: ids above 65535 (the 16-bit ids name system and regular users, and nobody),
/// below 4294967295 (which set*id(2) reads as "unchanged").
fn parse_range(v: &str) -> Result<(u32, u32), String> {
    let (a, b) = v
        .split_once('-')
        .ok_or("expected FIRST-LAST, e.g. 1879048192-1879113727")?;
    let id = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("'{s}' is not a user id"))
    };
    let (first, last) = (id(a)?, id(b)?);
    if first <= 65535 || last == u32::MAX || first > last {
        return Err("the range must lie within 65536-4294967294, FIRST <= LAST".into());
    }
    Ok((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, first: u32, last: u32) -> UidPool {
        let dir = std::env::temp_dir().join(format!("sturdy-uids-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        UidPool::new(dir, first, last).unwrap()
    }

    #[test]
    fn each_lease_has_its_own_id_until_dropped() {
        let p = pool("each", 100_000, 100_002);
        let a = p.lease().unwrap();
        let b = p.lease().unwrap();
        let c = p.lease().unwrap();
        assert_eq!([a.uid, b.uid, c.uid], [100_000, 100_001, 100_002]);
        let e = p.lease().unwrap_err();
        assert!(
            e.contains("all 3 monitor user ids (100000-100002) are in use"),
            "{e}"
        );
        drop(b);
        assert_eq!(p.lease().unwrap().uid, 100_001);
    }

    #[test]
    fn a_second_pool_on_the_same_locks_never_gets_a_held_id() {
        let p = pool("two", 100_000, 100_001);
        let q = UidPool::new(p.dir.clone(), 100_000, 100_001).unwrap();
        let a = p.lease().unwrap();
        let b = q.lease().unwrap();
        assert_ne!(a.uid, b.uid);
        assert!(q.lease().is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("70000-70009"), Ok((70000, 70009)));
        for bad in ["", "1-2", "70000", "70009-70000", "70000-4294967295", "a-b"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
