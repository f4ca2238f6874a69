//! Console output kept per service: a bounded ring of the last lines of every instance's
//! stdout and stderr (and the supervisor's own notes), each with its UTC time. It belongs to
//! the service, so it survives its instances; with a file ([`Console::with_file`]) it also
//! survives the supervisor: every line is appended to it, and a new console starts from its end.
//!
//! Every buffer a guest fills here is bounded: the monitors' output is read by one thread for
//! all of them (`reader`), cut into lines of at most [`lines::MAX_LINE`] bytes ([`lines`]),
//! kept up to the console's capacity and rotated on disk. (How much a guest may write at all
//! is the monitor's console limit.)

pub mod lines;
pub(crate) mod reader;

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes kept per service by default.
pub const DEFAULT_CAPACITY: usize = 256 * 1024;

/// The last lines of a service's console, at most `capacity` bytes of them.
#[derive(Debug)]
pub struct Console {
    capacity: usize,
    bytes: usize,
    lines: VecDeque<String>,
    /// Lines ever pushed (the sequence number of the next one).
    pushed: u64,
    file: Option<LogFile>,
}

/// The file a console's lines are appended to: `NAME.log`, rotated to `NAME.log.1` when it
/// passes its limit, so at most about twice the limit is on disk. Lines are gathered and
/// written together ([`flush`](LogFile::flush)): one write for all the lines of one read.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    bytes: u64,
    limit: u64,
    /// Lines not written yet, each with its newline.
    pending: String,
}

impl LogFile {
    /// Adds `entry` to the lines to write, rotating the file first if they would reach its
    /// limit.
    fn add(&mut self, entry: &str) {
        if self.bytes + self.pending.len() as u64 >= self.limit {
            self.flush();
            self.rotate();
        }
        self.pending.push_str(entry);
        self.pending.push('\n');
    }

    /// Writes the lines added. A full disk must not stop the service: they stay in memory.
    fn flush(&mut self) {
        if !self.pending.is_empty() && self.file.write_all(self.pending.as_bytes()).is_ok() {
            self.bytes += self.pending.len() as u64;
        }
        self.pending.clear();
    }

    fn rotate(&mut self) {
        if self.bytes < self.limit {
            return;
        }
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::rename(&self.path, old);
        match File::options().create(true).append(true).open(&self.path) {
            Ok(f) => {
                self.file = f;
                self.bytes = 0;
            }
            // Keep appending to the renamed file rather than lose lines.
            Err(_) => self.bytes = 0,
        }
    }
}

impl Console {
    /// An empty console keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> Console {
        Console {
            capacity,
            bytes: 0,
            lines: VecDeque::new(),
            pushed: 0,
            file: None,
        }
    }

    /// A console keeping at most `capacity` bytes in memory that also appends every line to
    /// `path` (rotated at 4 x `capacity`), starting with the last lines already there (and in
    /// its rotated predecessor): those of a previous supervisor.
    pub fn with_file(capacity: usize, path: &Path) -> std::io::Result<Console> {
        let mut console = Console::new(capacity);
        let mut old = path.to_path_buf().into_os_string();
        old.push(".1");
        for earlier in [Path::new(&old), path] {
            if let Ok(text) = std::fs::read_to_string(earlier) {
                for line in text.lines().filter(|l| !l.is_empty()) {
                    console.keep(line.to_string());
                }
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::options().create(true).append(true).open(path)?;
        let bytes = file.metadata()?.len();
        console.file = Some(LogFile {
            path: path.to_path_buf(),
            file,
            bytes,
            limit: 4 * capacity as u64,
            pending: String::new(),
        });
        Ok(console)
    }

    /// Adds `line` from `stream` (`stdout`, `stderr`, `sturdy`), stamped with the time now;
    /// the oldest lines go once over capacity. A line longer than the capacity is cut.
    pub fn push(&mut self, stream: &str, line: &str) {
        self.push_at(SystemTime::now(), stream, line);
    }

    /// [`push`](Self::push) at time `at`.
    pub fn push_at(&mut self, at: SystemTime, stream: &str, line: &str) {
        self.push_all_at(at, stream, [line]);
    }

    /// Adds `lines` from `stream` as [`push`](Self::push) does, all stamped with the time
    /// now and written to the file together.
    pub fn push_all<'a>(&mut self, stream: &str, lines: impl IntoIterator<Item = &'a str>) {
        self.push_all_at(SystemTime::now(), stream, lines);
    }

    fn push_all_at<'a>(
        &mut self,
        at: SystemTime,
        stream: &str,
        lines: impl IntoIterator<Item = &'a str>,
    ) {
        let time = timestamp(at);
        for line in lines {
            let mut entry = format!("{time} {stream} {line}");
            if entry.len() > self.capacity {
                let mut cut = self.capacity;
                while !entry.is_char_boundary(cut) {
                    cut -= 1;
                }
                entry.truncate(cut);
            }
            if let Some(file) = &mut self.file {
                file.add(&entry);
            }
            self.keep(entry);
        }
        if let Some(file) = &mut self.file {
            file.flush();
        }
    }

    /// Adds a whole entry (`TIME STREAM TEXT`) to the ring.
    fn keep(&mut self, entry: String) {
        if entry.len() > self.capacity {
            return;
        }
        self.bytes += entry.len();
        self.lines.push_back(entry);
        self.pushed += 1;
        while self.bytes > self.capacity {
            let old = self.lines.pop_front().expect("bytes counted");
            self.bytes -= old.len();
        }
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }

    /// The lines kept that were pushed after the first `seen` lines ever pushed, oldest
    /// first, and the new count to pass next time: for following a console by polling.
    pub fn lines_after(&self, seen: u64) -> (Vec<String>, u64) {
        let first = self.pushed - self.lines.len() as u64;
        let skip = seen.saturating_sub(first).min(self.lines.len() as u64) as usize;
        (self.lines.iter().skip(skip).cloned().collect(), self.pushed)
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// `2026-11-27T04:45:22.123Z`.
pub fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_754_722_123);
        assert_eq!(timestamp(at), "2026-11-27T04:45:22.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn keeps_the_newest_lines_within_capacity() {
        let mut c = Console::new(100);
        for i in 0..20 {
            c.push_at(UNIX_EPOCH, "stdout", &format!("line {i}"));
        }
        let lines = c.lines();
        assert!(c.bytes() <= 100);
        assert_eq!(
            lines.last().unwrap(),
            "1970-01-01T00:00:00.000Z stdout line 19"
        );
        assert!(!lines.iter().any(|l| l.ends_with("line 0")));
        assert_eq!(lines.iter().map(String::len).sum::<usize>(), c.bytes());
    }

    #[test]
    fn lines_after_follows_without_repeats_or_gaps_it_can_avoid() {
        let mut c = Console::new(100);
        let (lines, seen) = c.lines_after(0);
        assert!(lines.is_empty());
        assert_eq!(seen, 0);
        c.push_at(UNIX_EPOCH, "stdout", "a");
        c.push_at(UNIX_EPOCH, "stdout", "b");
        let (lines, seen) = c.lines_after(seen);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with("stdout b"));
        c.push_at(UNIX_EPOCH, "stdout", "c");
        let (lines, seen) = c.lines_after(seen);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with("stdout c"));
        assert!(c.lines_after(seen).0.is_empty());
        // Lines dropped over capacity before being read are skipped, the rest follow.
        for i in 0..20 {
            c.push_at(UNIX_EPOCH, "stdout", &format!("line {i}"));
        }
        let (lines, now) = c.lines_after(seen);
        assert_eq!(now, seen + 20);
        assert_eq!(lines, c.lines());
        assert!(lines.last().unwrap().ends_with("line 19"));
    }

    #[test]
    fn a_console_with_a_file_starts_where_the_last_one_ended_and_rotates() {
        let dir = std::env::temp_dir().join(format!("sturdy-console-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("logs/web.log");
        {
            let mut c = Console::with_file(100, &path).unwrap();
            c.push_at(UNIX_EPOCH, "stdout", "before the crash");
        }
        let mut c = Console::with_file(100, &path).unwrap();
        assert_eq!(
            c.lines(),
            ["1970-01-01T00:00:00.000Z stdout before the crash"]
        );
        // Followers start after what was loaded... and see what is pushed next.
        let (old, seen) = c.lines_after(0);
        assert_eq!(old.len(), 1);
        c.push_at(UNIX_EPOCH, "stderr", "after");
        assert_eq!(c.lines_after(seen).0.len(), 1);
        // 4 x 100 bytes on file, then rotated: both files hold at most ~2 x the limit.
        for i in 0..40 {
            c.push_at(UNIX_EPOCH, "stdout", &format!("line {i}"));
        }
        let rotated = dir.join("logs/web.log.1");
        assert!(rotated.is_file());
        let on_disk =
            std::fs::metadata(&path).unwrap().len() + std::fs::metadata(&rotated).unwrap().len();
        assert!(on_disk <= 2 * 400 + 100, "{on_disk}");
        let again = Console::with_file(100, &path).unwrap();
        assert!(again.lines().last().unwrap().ends_with("line 39"));
        assert!(again.bytes() <= 100);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_batch_of_lines_is_written_and_rotated_like_single_ones() {
        let dir = std::env::temp_dir().join(format!("sturdy-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("web.log");
        let mut c = Console::with_file(100, &path).unwrap();
        let lines: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
        c.push_all("stdout", lines.iter().map(String::as_str));
        let rotated = dir.join("web.log.1");
        let (now, old) = (
            std::fs::read_to_string(&path).unwrap(),
            std::fs::read_to_string(&rotated).unwrap(),
        );
        // Rotated within the batch at the limit (4 x 100 bytes); the last lines are in both
        // the file and memory, in order.
        assert!(old.len() <= 400 + 100 && now.len() <= 400, "{}", old.len());
        let on_disk: Vec<&str> = old
            .lines()
            .chain(now.lines())
            .map(|l| l.split_once(" stdout ").unwrap().1)
            .collect();
        assert!(on_disk.len() >= 10, "{on_disk:?}");
        assert_eq!(on_disk, lines[lines.len() - on_disk.len()..]);
        assert!(c.lines().last().unwrap().ends_with("stdout line 39"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cuts_a_line_longer_than_capacity() {
        let mut c = Console::new(40);
        c.push("stderr", &"é".repeat(100));
        assert_eq!(c.lines().len(), 1);
        assert!(c.bytes() <= 40);
    }
}
