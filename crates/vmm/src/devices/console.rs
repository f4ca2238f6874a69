//! The console: the PUTS hypercall writes guest bytes to the monitor's standard output,
//! unbuffered, straight from guest memory, at most at a set rate.
//!
//! A guest can write its console far faster than anyone can read it (a loop of 64 KiB PUTS
//! makes hundreds of MiB a second), and whatever reads the monitor's output pays for it. So the
//! console passes a [`TokenBucket`]: past its burst, the guest may write `rate` bytes a second;
//! what it writes beyond is dropped. The monitor counts the dropped bytes and says how many on
//! its standard error, where a guest cannot write (`sturdy-hvt: console: ... 3.2 MiB dropped`),
//! when the console flows again and when the guest exits. Standard output stays the guest's own
//! bytes, nothing added.

use std::time::Instant;

use crate::memory::{Access, GuestMemory};
use crate::VmError;

/// Bytes a second a guest's console may write by default (`--console-rate`).
pub const DEFAULT_RATE: u64 = 256 * 1024;
/// Bytes a guest may write at once, above the rate, by default (`--console-burst`).
pub const DEFAULT_BURST: u64 = 1024 * 1024;

/// How fast a console may write: `rate` bytes a second, up to `burst` bytes at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Bytes a second.
    pub rate: u64,
    /// Bytes at once (at least 1).
    pub burst: u64,
}

impl Default for Limit {
    fn default() -> Self {
        Limit {
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
        }
    }
}

/// A token bucket of bytes, with time passed in. It holds up to `burst` bytes and fills at
/// `rate` bytes a second; what is taken is removed. Once a write finds it empty, nothing passes
/// until a quarter of a second's rate has refilled (or the whole burst, if that is less): a
/// flood shows as whole pieces of output, four a second, instead of a trickle of fragments a
/// few bytes long (one per hypercall). Each piece follows a notice of what was dropped before
/// it, so the last few hundred KiB of a flooded console show a few of them.
#[derive(Debug)]
pub struct TokenBucket {
    limit: Limit,
    /// Bytes held, in units of 1/1e9 byte: a refill over `ns` nanoseconds adds `ns * rate`.
    tokens: u128,
    /// When `tokens` was last brought up to date.
    last: Instant,
    /// A write found the bucket empty; output waits for `resume` bytes.
    dropping: bool,
}

const NANOS: u128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket at `now`. `limit.rate` must be at least 1 and `limit.burst` at least 1.
    pub fn new(limit: Limit, now: Instant) -> TokenBucket {
        assert!(limit.rate > 0 && limit.burst > 0, "{limit:?}");
        TokenBucket {
            limit,
            tokens: u128::from(limit.burst) * NANOS,
            last: now,
            dropping: false,
        }
    }

    /// How many of `len` bytes offered at `now` may pass (a prefix of them; the rest is to be
    /// dropped).
    pub fn take(&mut self, now: Instant, len: u64) -> u64 {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let full = u128::from(self.limit.burst) * NANOS;
        let refill = elapsed
            .as_nanos()
            .saturating_mul(u128::from(self.limit.rate));
        self.tokens = self.tokens.saturating_add(refill).min(full);
        let held = (self.tokens / NANOS) as u64;
        if self.dropping {
            if held < self.resume() {
                return 0;
            }
            self.dropping = false;
        }
        let passed = len.min(held);
        self.tokens -= u128::from(passed) * NANOS;
        if passed < len {
            self.dropping = true;
        }
        passed
    }

    /// What the bucket must hold again before output resumes after a drop.
    fn resume(&self) -> u64 {
        (self.limit.rate / 4).clamp(1, self.limit.burst)
    }
}

/// The guest's console: where PUTS writes, its limit, and the bytes dropped.
#[derive(Debug)]
pub struct Console {
    bucket: Option<TokenBucket>,
    /// Bytes dropped since the last notice.
    unreported: u64,
}

impl Console {
    /// A console writing at most at `limit` (`None`: as fast as the guest writes).
    pub fn new(limit: Option<Limit>) -> Console {
        Console {
            bucket: limit.map(|l| TokenBucket::new(l, Instant::now())),
            unreported: 0,
        }
    }

    /// PUTS: writes the `len` guest bytes at `data` to stdout as far as the limit allows, and
    /// drops the rest. A closed or full stdout never stops the guest.
    pub fn puts(&mut self, mem: &GuestMemory, data: u64, len: u64) -> Result<(), VmError> {
        let ptr = mem.host_ptr(data, len, Access::Read)?;
        let passed = match &mut self.bucket {
            Some(b) => b.take(Instant::now(), len),
            None => len,
        };
        if passed > 0 {
            self.report();
        }
        // SAFETY: ptr..ptr+len was checked to lie in guest memory, which stays mapped while
        // the VM runs, and passed <= len.
        unsafe { write_all(libc::STDOUT_FILENO, ptr, passed as usize) };
        self.unreported += len - passed;
        Ok(())
    }

    /// Says on stderr how many bytes were dropped since it last said so, if any: when the
    /// console flows again, and when the guest's run ends.
    pub fn report(&mut self) {
        if self.unreported == 0 {
            return;
        }
        let limit = self.bucket.as_ref().map(|b| b.limit).unwrap_or_default();
        let notice = notice(self.unreported, limit);
        // SAFETY: `notice` is a live string of notice.len() bytes.
        unsafe { write_all(libc::STDERR_FILENO, notice.as_ptr(), notice.len()) };
        self.unreported = 0;
    }
}

/// The line that reports `dropped` bytes.
fn notice(dropped: u64, limit: Limit) -> String {
    format!(
        "sturdy-hvt: console: ... {} dropped ({dropped} bytes over the limit of {}/s, burst {})\n",
        human(dropped),
        human(limit.rate),
        human(limit.burst),
    )
}

/// `n` bytes in the largest binary unit that keeps it at least 1: `512 bytes`, `3.2 MiB`.
fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let value = format!("{value:.1}");
    format!("{} {}", value.trim_end_matches(".0"), UNITS[unit])
}

/// Writes the `len` bytes at `ptr` to `fd`, retrying on EINTR; gives up (the bytes are lost)
/// if `fd` is closed or broken. A raw pointer, not a slice: guest memory is not Rust's to
/// borrow.
///
/// # Safety
/// `ptr..ptr+len` must be readable memory for the whole call.
unsafe fn write_all(fd: libc::c_int, ptr: *const u8, len: usize) {
    let mut done = 0;
    while done < len {
        // SAFETY: done < len, so ptr+done..ptr+len is inside the caller's readable range;
        // write(2) only reads it.
        let rc = unsafe { libc::write(fd, ptr.add(done).cast(), len - done) };
        if rc > 0 {
            done += rc as usize;
        } else if rc < 0
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            break; // stdout closed or broken: the guest's output is lost, the guest goes on
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const KIB: u64 = 1024;

    fn limit(rate: u64, burst: u64) -> Limit {
        Limit { rate, burst }
    }

    #[test]
    fn a_full_bucket_passes_its_burst_then_drops() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(limit(256 * KIB, 1024 * KIB), t0);
        assert_eq!(b.take(t0, 600 * KIB), 600 * KIB);
        // 424 KiB left: a prefix of the next write passes, the rest is to be dropped.
        assert_eq!(b.take(t0, 600 * KIB), 424 * KIB);
        assert_eq!(b.take(t0, 1), 0);
    }

    #[test]
    fn after_a_drop_output_resumes_once_a_quarter_second_of_the_rate_refilled() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = TokenBucket::new(limit(4000, 10_000), t0);
        assert_eq!(b.take(t0, 20_000), 10_000);
        // 249 ms: 996 bytes refilled, less than the 1000 needed: still nothing passes.
        assert_eq!(b.take(ms(249), 10), 0);
        // At 250 ms the bucket holds 1000 bytes: they pass, then it drops again.
        assert_eq!(b.take(ms(250), 5000), 1000);
        assert_eq!(b.take(ms(400), 100), 0);
        assert_eq!(b.take(ms(500), 100), 100);
        // A write that fits takes only what it needs; the bucket keeps the rest.
        assert_eq!(b.take(ms(500), 900), 900);
        assert_eq!(b.take(ms(500), 1), 0);
    }

    #[test]
    fn with_a_burst_below_a_quarter_second_output_resumes_when_the_bucket_is_full() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = TokenBucket::new(limit(4000, 500), t0);
        assert_eq!(b.take(t0, 1000), 500);
        assert_eq!(b.take(ms(124), 1000), 0);
        assert_eq!(b.take(ms(125), 1000), 500);
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(limit(1000, 3000), t0);
        assert_eq!(b.take(t0 + Duration::from_secs(3600), u64::MAX), 3000);
        // An earlier time than the last one seen refills nothing (and does not panic).
        assert_eq!(b.take(t0, 10), 0);
    }

    #[test]
    fn over_a_long_flood_the_bytes_passed_follow_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(limit(256 * KIB, 1024 * KIB), t0);
        let mut passed = 0;
        // 60 s of 64 KiB writes every 100 us (640 MiB/s offered).
        for i in 0..600_000u64 {
            passed += b.take(t0 + Duration::from_micros(100 * i), 64 * KIB);
        }
        let most = 1024 * KIB + 60 * 256 * KIB;
        assert!(passed <= most, "{passed} > {most}");
        assert!(passed >= most - 257 * KIB, "{passed}");
    }

    #[test]
    fn human_units() {
        assert_eq!(human(0), "0 bytes");
        assert_eq!(human(1023), "1023 bytes");
        assert_eq!(human(1024), "1 KiB");
        assert_eq!(human(256 * 1024), "256 KiB");
        assert_eq!(human(3_355_443), "3.2 MiB");
        assert_eq!(human((1 << 30) - 1), "1024 MiB");
        assert_eq!(human(1_072_692_979), "1023 MiB");
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(5 << 40), "5 TiB");
        assert_eq!(human(u64::MAX), "16777216 TiB");
    }

    #[test]
    fn the_notice_says_how_much_in_human_units_and_bytes() {
        assert_eq!(
            notice(12 << 20, Limit::default()),
            "sturdy-hvt: console: ... 12 MiB dropped (12582912 bytes over the limit of \
             256 KiB/s, burst 1 MiB)\n"
        );
    }
}
