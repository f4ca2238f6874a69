//! The daemon's own log: its notes (started, stopped, recreated ...) and every warning or
//! error that the daemon's libraries report through `tracing` (the fabric's "1024
//! connections open", a refused frame burst), one line each, to its stderr and to
//! `STATE/daemon.log` (once: when the CLI started the daemon, its stderr is that file).
//!
//! A guest can make the fabric warn as fast as it sends frames, so events are rate-limited per
//! call site: at most [`BURST`] lines per [`WINDOW`], then one line saying how many were left
//! out once the window is over.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::prelude::*;
use tracing_subscriber::Layer;

use crate::console::timestamp;

/// The file name of the daemon's log in its state directory.
pub const FILE: &str = "daemon.log";
/// Lines per call site and window at most.
pub const BURST: u32 = 10;
/// The rate limit's window.
pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Where lines go besides stderr: the state directory's log, unless stderr is that file.
static FILE_OUT: OnceLock<Option<Mutex<File>>> = OnceLock::new();

/// Starts logging: `tracing` events of level `WARN` and above (or as `STURDY_LOG` says:
/// `error`, `warn`, `info`, `debug`, `trace`) go to the daemon's log, rate-limited, as do
/// [`line()`]s. Call once, before the daemon does anything worth logging.
pub fn init(state_dir: &Path) {
    FILE_OUT.get_or_init(|| open_unless_stderr(&state_dir.join(FILE)));
    let level = std::env::var("STURDY_LOG")
        .ok()
        .and_then(|l| l.parse::<Level>().ok())
        .unwrap_or(Level::WARN);
    let layer = RateLimited {
        level,
        limiter: Mutex::new(Limiter::default()),
    };
    // Fails only if a subscriber is set already (a test that started two daemons).
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Writes one line of the daemon's log, with the time.
pub fn line(what: &str) {
    let text = format!("{} sturdy daemon: {what}\n", timestamp(SystemTime::now()));
    let _ = std::io::stderr().write_all(text.as_bytes());
    if let Some(Some(file)) = FILE_OUT.get() {
        if let Ok(mut f) = file.lock() {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// The log file, opened for appending, never through a link; `None` if stderr is that file
/// already (or it cannot be opened: stderr still has every line).
fn open_unless_stderr(path: &Path) -> Option<Mutex<File>> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    let stderr = std::fs::metadata("/proc/self/fd/2").ok();
    if stderr.is_some_and(|s| s.dev() == meta.dev() && s.ino() == meta.ino()) {
        return None;
    }
    Some(Mutex::new(file))
}

/// Lines per call site and window: what a flood of one kind of event may write.
#[derive(Default)]
struct Limiter {
    sites: HashMap<tracing::callsite::Identifier, Site>,
}

/// One call site's window: when it began, lines written, lines left out.
struct Site {
    since: Instant,
    written: u32,
    left_out: u64,
}

impl Limiter {
    /// Whether a line of `site` may be written at `now`: `None` if not (it is counted as left
    /// out), else `Some(n)` with the lines of that site left out in its last window.
    fn admit(&mut self, site: tracing::callsite::Identifier, now: Instant) -> Option<u64> {
        let site = self.sites.entry(site).or_insert(Site {
            since: now,
            written: 0,
            left_out: 0,
        });
        let mut before = 0;
        if now.duration_since(site.since) >= WINDOW {
            before = site.left_out;
            *site = Site {
                since: now,
                written: 0,
                left_out: 0,
            };
        }
        if site.written >= BURST {
            site.left_out += 1;
            return None;
        }
        site.written += 1;
        Some(before)
    }
}

struct RateLimited {
    level: Level,
    limiter: Mutex<Limiter>,
}

impl<S: Subscriber> Layer<S> for RateLimited {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= self.level
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > self.level {
            return;
        }
        let Some(left_out) = self
            .limiter
            .lock()
            .ok()
            .and_then(|mut l| l.admit(meta.callsite(), Instant::now()))
        else {
            return;
        };
        if left_out > 0 {
            line(&format!(
                "{} {}: ... {left_out} more like the next left out in the last {}s",
                meta.level(),
                meta.target(),
                WINDOW.as_secs()
            ));
        }
        let mut text = Message::default();
        event.record(&mut text);
        line(&format!("{} {}: {}", meta.level(), meta.target(), text.0));
    }
}

/// An event's message and fields as `message key=value ...`.
#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            self.0.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_sites() -> [tracing::callsite::Identifier; 2] {
        let mut ids = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = std::sync::mpsc::channel();
            struct Grab(std::sync::mpsc::Sender<tracing::callsite::Identifier>);
            impl<S: Subscriber> Layer<S> for Grab {
                fn on_event(&self, e: &Event<'_>, _: Context<'_, S>) {
                    let _ = self.0.send(e.metadata().callsite());
                }
            }
            tracing::subscriber::with_default(
                tracing_subscriber::registry().with(Grab(tx)),
                || {
                    if ids.is_empty() {
                        tracing::warn!("one");
                    } else {
                        tracing::warn!("two");
                    }
                },
            );
            ids.push(rx.recv().unwrap());
        }
        [ids[0].clone(), ids[1].clone()]
    }

    /// A flooding call site writes BURST lines a window, then nothing until the window is
    /// over, when the next line comes with the count of those left out; another site is not
    /// held back by it.
    #[test]
    fn a_flooding_call_site_is_cut_to_its_burst() {
        let [flood, other] = two_sites();
        let mut limiter = Limiter::default();
        let start = Instant::now();
        let written = (0..1000)
            .filter(|_| limiter.admit(flood.clone(), start).is_some())
            .count();
        assert_eq!(written, BURST as usize);
        assert_eq!(limiter.admit(other, start), Some(0));
        assert_eq!(limiter.admit(flood.clone(), start + WINDOW / 2), None);
        assert_eq!(limiter.admit(flood.clone(), start + WINDOW), Some(991));
        assert_eq!(limiter.admit(flood, start + WINDOW), Some(0));
    }
}
