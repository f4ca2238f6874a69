//! One thread reads the stdout and stderr of every monitor of the process, whatever their
//! number: an epoll over the pipes, each read cut into lines ([`Lines`]) and pushed to its
//! service's [`Console`]. Per pipe it holds one partial line (at most [`MAX_LINE`] bytes);
//! the read buffer is the thread's, shared by all.
//!
//! [`MAX_LINE`]: super::lines::MAX_LINE

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::lines::Lines;
use super::Console;
use crate::locks::LockExt;

/// The epoll token of the reader's wake-up eventfd (pipes get 1, 2, ...).
const WAKE: u64 = 0;
/// Bytes read from a pipe at once: a pipe's default capacity.
const READ_SIZE: usize = 64 * 1024;
/// Rounds of reads are at least this far apart, past a burst of [`BURST`] of them ([`Pace`]):
/// a console written a few bytes at a time (one PUTS per line, or per byte) is read in pieces
/// of up to that long, not with a wake-up per write, while lines now and then are read as they
/// come. A pipe holds 64 KiB, 250 ms of the monitor's default rate. A new pipe, or an exit
/// waiting for its monitor's last lines, ends a pause at once.
const ROUND: Duration = Duration::from_millis(10);
/// Rounds the reader may make back to back before it paces them.
const BURST: u32 = 10;
/// Events taken from the epoll at once; a round that fills them goes on without waiting.
const EVENTS: usize = 256;

/// The streams of one monitor that are not read to their end yet.
#[derive(Debug)]
pub(crate) struct Drained {
    open: Mutex<usize>,
    ended: Condvar,
    /// The reader that reads them, to hurry when an exit waits.
    reader: Arc<Reader>,
}

impl Drained {
    fn close(&self) {
        let mut open = self.open.locked();
        *open = open.saturating_sub(1);
        self.ended.notify_all();
    }

    /// Waits until every stream was read to its end (the monitor exited and everything it
    /// wrote is in its console); false if that took longer than `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut open = self.open.locked();
        if *open > 0 {
            let _ = self.reader.wake.write(1);
        }
        while *open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            open = self
                .ended
                .wait_timeout(open, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// A pipe to read: a monitor's stdout or stderr.
struct Source {
    pipe: File,
    /// `stdout` or `stderr`, as the console shows it.
    stream: &'static str,
    console: Arc<Mutex<Console>>,
    lines: Lines,
    drained: Arc<Drained>,
}

impl Source {
    /// Pushes the lines that `bytes` complete to the console, in one batch.
    fn feed(&mut self, bytes: &[u8]) {
        let mut batch = Vec::new();
        self.lines.feed(bytes, |l| batch.push(text(l)));
        self.push(&batch);
    }

    /// The pipe ended (or failed): its last partial line goes to the console.
    fn end(mut self) {
        let mut batch = Vec::new();
        self.lines.finish(|l| batch.push(text(l)));
        self.push(&batch);
        self.drained.close();
    }

    fn push(&self, batch: &[String]) {
        if !batch.is_empty() {
            let lines = batch.iter().map(String::as_str);
            self.console.locked().push_all(self.stream, lines);
        }
    }
}

/// A line's bytes as text: invalid UTF-8 replaced, carriage returns at its end dropped.
fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_string()
}

/// The reader thread's door: where to send new pipes, and how to wake it to take them.
#[derive(Debug)]
struct Reader {
    sources: Sender<Source>,
    wake: EventFd,
}

/// The process's reader, started by the first monitor.
static READER: Mutex<Option<Arc<Reader>>> = Mutex::new(None);

/// Has the reader thread read `stdout` and `stderr` of a monitor into `console` from now
/// on; the returned [`Drained`] tells when both ended.
pub(crate) fn read(
    stdout: OwnedFd,
    stderr: OwnedFd,
    console: &Arc<Mutex<Console>>,
) -> std::io::Result<Arc<Drained>> {
    let reader = {
        let mut reader = READER.locked();
        match &*reader {
            Some(r) => r.clone(),
            None => reader.insert(Arc::new(start()?)).clone(),
        }
    };
    let drained = Arc::new(Drained {
        open: Mutex::new(2),
        ended: Condvar::new(),
        reader: reader.clone(),
    });
    for (pipe, stream) in [(stdout, "stdout"), (stderr, "stderr")] {
        let source = Source {
            pipe: File::from(pipe),
            stream,
            console: console.clone(),
            lines: Lines::new(),
            drained: drained.clone(),
        };
        if reader.sources.send(source).is_err() {
            // It died (a bug): the next monitor starts a new one.
            *READER.locked() = None;
            return Err(std::io::Error::other("the console reader thread stopped"));
        }
    }
    reader.wake.write(1)?;
    Ok(drained)
}

/// Starts the reader thread.
fn start() -> std::io::Result<Reader> {
    let wake = EventFd::new(EFD_NONBLOCK)?;
    // Every pipe and the wake-up; and the wake-up alone, for the pause between rounds.
    let (epoll, pause) = (Epoll::new()?, Epoll::new()?);
    for e in [&epoll, &pause] {
        let event = EpollEvent::new(EventSet::IN, WAKE);
        e.ctl(ControlOperation::Add, wake.as_raw_fd(), event)?;
    }
    let (sources, added) = mpsc::channel();
    let woken = wake.try_clone()?;
    std::thread::Builder::new()
        .name("sturdy-consoles".into())
        .spawn(move || run(&epoll, &pause, &woken, &added))?;
    Ok(Reader { sources, wake })
}

/// The reader thread: waits for pipes with something to read (or ended), reads each once per
/// round (an ended one to its end), takes new pipes when woken, and paces its rounds ([`Pace`])
/// unless woken.
fn run(epoll: &Epoll, pause: &Epoll, wake: &EventFd, added: &Receiver<Source>) {
    let mut sources: HashMap<u64, Source> = HashMap::new();
    let mut next = WAKE + 1;
    let mut events = vec![EpollEvent::default(); EVENTS];
    let mut buf = vec![0u8; READ_SIZE];
    let mut pace = Pace::new(Instant::now());
    loop {
        let ready = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                // Not expected (the arguments are valid); do not spin on it.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        for event in &events[..ready] {
            let token = event.data();
            if token == WAKE {
                let _ = wake.read();
                for source in added.try_iter() {
                    let fd = source.pipe.as_raw_fd();
                    let watched = epoll.ctl(
                        ControlOperation::Add,
                        fd,
                        EpollEvent::new(EventSet::IN, next),
                    );
                    if let Err(e) = watched {
                        let note = format!("cannot read this instance's {}: {e}", source.stream);
                        source.console.locked().push("sturdy", &note);
                        source.end();
                        continue;
                    }
                    sources.insert(next, source);
                    next += 1;
                }
                continue;
            }
            let Some(source) = sources.get_mut(&token) else {
                continue;
            };
            // Hung up: nobody writes any more, so reading to the end cannot block.
            let ended = event
                .event_set()
                .intersects(EventSet::HANG_UP | EventSet::ERROR);
            loop {
                match source.pipe.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        source.feed(&buf[..n]);
                        if !ended {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // The end, or an error that will not go away.
                    _ => {
                        let source = sources.remove(&token).expect("found above");
                        let fd = source.pipe.as_raw_fd();
                        let _ = epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
                        source.end();
                        break;
                    }
                }
            }
        }
        let wait = pace.after_round(Instant::now());
        if ready < EVENTS && !wait.is_zero() {
            let mut woken = [EpollEvent::default()];
            let _ = pause.wait(wait.as_millis().max(1) as i32, &mut woken);
        }
    }
}

/// A token bucket of rounds: up to [`BURST`] back to back, one per [`ROUND`] on average.
struct Pace {
    /// Time banked for rounds, at most `BURST` rounds' worth; a round spends a `ROUND`.
    credit: Duration,
    last: Instant,
}

impl Pace {
    fn new(now: Instant) -> Pace {
        Pace {
            credit: ROUND * BURST,
            last: now,
        }
    }

    /// A round ended at `now`: how long to wait before the next one.
    fn after_round(&mut self, now: Instant) -> Duration {
        let earned = now.saturating_duration_since(self.last);
        self.credit = (self.credit + earned).min(ROUND * BURST);
        self.last = self.last.max(now);
        match self.credit.checked_sub(ROUND) {
            Some(left) => {
                self.credit = left;
                Duration::ZERO
            }
            None => {
                // The wait pays for the next round.
                let wait = ROUND - self.credit;
                self.credit = Duration::ZERO;
                self.last = now + wait;
                wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rounds_come_in_bursts_then_one_per_round() {
        let t0 = Instant::now();
        let mut pace = Pace::new(t0);
        for _ in 0..BURST {
            assert_eq!(pace.after_round(t0), Duration::ZERO);
        }
        assert_eq!(pace.after_round(t0), ROUND);
        // Paused for it: the round after the pause waits again, a round later.
        assert_eq!(pace.after_round(t0 + ROUND), ROUND);
        // Half a round earned: the other half to wait.
        assert_eq!(pace.after_round(t0 + ROUND * 5 / 2), ROUND / 2);
        // Idle for long: a whole burst again, no more.
        let later = t0 + ROUND * 1000;
        for _ in 0..BURST {
            assert_eq!(pace.after_round(later), Duration::ZERO);
        }
        assert_eq!(pace.after_round(later), ROUND);
    }

    #[test]
    fn both_pipes_are_read_to_their_end_in_lines_of_at_most_max_line() {
        let console = Arc::new(Mutex::new(Console::new(1 << 20)));
        let (out, mut out_w) = std::io::pipe().unwrap();
        let (err, mut err_w) = std::io::pipe().unwrap();
        let drained = read(out.into(), err.into(), &console).unwrap();
        out_w.write_all(&[b'x'; 10_000]).unwrap();
        out_w.write_all(b"\r\nlast, without newline").unwrap();
        err_w.write_all(b"on stderr\n").unwrap();
        assert!(
            !drained.wait(Duration::from_millis(50)),
            "drained before the pipes ended"
        );
        drop((out_w, err_w));
        assert!(drained.wait(Duration::from_secs(10)));
        let texts: Vec<String> = console
            .locked()
            .lines()
            .iter()
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .collect();
        let x = |n| format!("stdout {}", "x".repeat(n));
        let expected = [
            x(4096),
            x(4096),
            x(1808),
            "stdout last, without newline".to_string(),
        ];
        let stdout: Vec<&String> = texts.iter().filter(|t| t.starts_with("stdout")).collect();
        assert_eq!(stdout, expected.iter().collect::<Vec<_>>());
        assert!(texts.contains(&"stderr on stderr".to_string()), "{texts:?}");
    }
}
