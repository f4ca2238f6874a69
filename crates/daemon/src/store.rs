//! The daemon's state in SQLite (`STATE/state.db`, write-ahead log): the applications that
//! are up (their plans, so a restarted daemon brings them back) and the monitor processes
//! running for them (so a restarted daemon can tell a leftover monitor from a reused pid and
//! stop it: never orphaned, never duplicated).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::locks::LockExt;

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS apps (
    name       TEXT PRIMARY KEY,
    file       TEXT NOT NULL,
    plan       TEXT NOT NULL,   -- sturdy_compose::Plan as JSON
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    app         TEXT NOT NULL,
    service     TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    start_ticks INTEGER NOT NULL,  -- field 22 of /proc/PID/stat: pid + this = one process
    instance    INTEGER NOT NULL,
    PRIMARY KEY (app, service)
);
-- Services stopped by `sturdy stop`: they stay stopped when the daemon brings the app back.
CREATE TABLE IF NOT EXISTS stopped (
    app     TEXT NOT NULL,
    service TEXT NOT NULL,
    PRIMARY KEY (app, service)
);
";

/// An application recorded as up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppRecord {
    /// Its name.
    pub name: String,
    /// The file it was started from.
    pub file: String,
    /// Its plan, as JSON.
    pub plan: String,
    /// When it was started, UTC.
    pub created_at: String,
}

/// A monitor recorded as running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRecord {
    /// Its application.
    pub app: String,
    /// Its service.
    pub service: String,
    /// Its process id.
    pub pid: u32,
    /// When it started, in clock ticks after boot.
    pub start_ticks: u64,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("state database {path}: {source}")]
pub struct StoreError {
    path: String,
    source: rusqlite::Error,
}

/// The state database.
pub struct Store {
    path: String,
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let name = path.display().to_string();
        let err = |source| StoreError {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        // WAL: readers do not block the writer; NORMAL: a commit is durable once the WAL is
        // synced at checkpoints, which is enough for state that a restart can rebuild.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(err(rusqlite::Error::InvalidParameterName(format!(
                "written by a newer sturdy (schema {version}, this one knows {SCHEMA_VERSION})"
            ))));
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
        Ok(Store {
            path: name,
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.locked();
        f(&conn).map_err(|source| StoreError {
            path: self.path.clone(),
            source,
        })
    }

    /// Records `app` as up (replacing a previous record of the same name).
    pub fn put_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO apps (name, file, plan, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![app.name, app.file, app.plan, app.created_at],
            )
            .map(drop)
        })
    }

    /// Forgets application `name`, its instances and stopped services.
    pub fn remove_app(&self, name: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM instances WHERE app = ?1", params![name])?;
            c.execute("DELETE FROM stopped WHERE app = ?1", params![name])?;
            c.execute("DELETE FROM apps WHERE name = ?1", params![name])
                .map(drop)
        })
    }

    /// The applications recorded as up, by name.
    pub fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        self.with(|c| {
            let mut q = c.prepare("SELECT name, file, plan, created_at FROM apps ORDER BY name")?;
            let rows = q.query_map([], |r| {
                Ok(AppRecord {
                    name: r.get(0)?,
                    file: r.get(1)?,
                    plan: r.get(2)?,
                    created_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Application `name`, if recorded.
    pub fn app(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT name, file, plan, created_at FROM apps WHERE name = ?1",
                params![name],
                |r| {
                    Ok(AppRecord {
                        name: r.get(0)?,
                        file: r.get(1)?,
                        plan: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Records the monitor now running `app`'s `service`.
    pub fn put_instance(&self, i: &InstanceRecord, instance: u64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO instances (app, service, pid, start_ticks, instance) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    i.app,
                    i.service,
                    i.pid,
                    i.start_ticks as i64,
                    instance as i64
                ],
            )
            .map(drop)
        })
    }

    /// Forgets the monitor `pid` of `app`'s `service` (if it is still the one recorded).
    pub fn remove_instance(&self, app: &str, service: &str, pid: u32) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM instances WHERE app = ?1 AND service = ?2 AND pid = ?3",
                params![app, service, pid],
            )
            .map(drop)
        })
    }

    /// Every monitor recorded as running.
    pub fn instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.with(|c| {
            let mut q = c.prepare("SELECT app, service, pid, start_ticks FROM instances")?;
            let rows = q.query_map([], |r| {
                Ok(InstanceRecord {
                    app: r.get(0)?,
                    service: r.get(1)?,
                    pid: r.get(2)?,
                    start_ticks: r.get::<_, i64>(3)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    /// Records whether `app`'s `service` was stopped on request.
    pub fn set_stopped(&self, app: &str, service: &str, stopped: bool) -> Result<(), StoreError> {
        self.with(|c| {
            let sql = if stopped {
                "INSERT OR IGNORE INTO stopped (app, service) VALUES (?1, ?2)"
            } else {
                "DELETE FROM stopped WHERE app = ?1 AND service = ?2"
            };
            c.execute(sql, params![app, service]).map(drop)
        })
    }

    /// The services of `app` stopped on request.
    pub fn stopped(&self, app: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut q = c.prepare("SELECT service FROM stopped WHERE app = ?1 ORDER BY service")?;
            let rows = q.query_map(params![app], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// Forgets that any service of `app` was stopped.
    pub fn clear_stopped(&self, app: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM stopped WHERE app = ?1", params![app])
                .map(drop)
        })
    }

    /// Forgets every monitor of `app`.
    pub fn clear_instances(&self, app: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM instances WHERE app = ?1", params![app])
                .map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sturdy-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn apps_and_instances_survive_reopening() {
        let dir = temp("reopen");
        let db = dir.join("state.db");
        let app = AppRecord {
            name: "guestbook".into(),
            file: "/x/sturdy.yaml".into(),
            plan: "{}".into(),
            created_at: "2026-11-27T00:00:00.000Z".into(),
        };
        let i = InstanceRecord {
            app: "guestbook".into(),
            service: "db".into(),
            pid: 42,
            start_ticks: 7,
        };
        {
            let s = Store::open(&db).unwrap();
            s.put_app(&app).unwrap();
            s.put_instance(&i, 1).unwrap();
        }
        let s = Store::open(&db).unwrap();
        assert_eq!(s.apps().unwrap(), vec![app.clone()]);
        assert_eq!(s.app("guestbook").unwrap(), Some(app));
        assert_eq!(s.instances().unwrap(), vec![i.clone()]);
        // A newer instance replaces the record; removing an old pid leaves it.
        let newer = InstanceRecord { pid: 43, ..i };
        s.put_instance(&newer, 2).unwrap();
        s.remove_instance("guestbook", "db", 42).unwrap();
        assert_eq!(s.instances().unwrap(), vec![newer]);
        s.set_stopped("guestbook", "web", true).unwrap();
        s.set_stopped("guestbook", "web", true).unwrap();
        assert_eq!(s.stopped("guestbook").unwrap(), ["web"]);
        s.set_stopped("guestbook", "web", false).unwrap();
        assert!(s.stopped("guestbook").unwrap().is_empty());
        s.set_stopped("guestbook", "db", true).unwrap();
        s.remove_app("guestbook").unwrap();
        assert!(s.stopped("guestbook").unwrap().is_empty());
        assert!(s.apps().unwrap().is_empty());
        assert!(s.instances().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = temp("newer");
        let db = dir.join("state.db");
        Connection::open(&db)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Store::open(&db).err().unwrap().to_string();
        assert!(err.contains("newer sturdy"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
