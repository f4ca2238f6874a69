//! Clocks: monotonic time from the CPU's time-stamp counter, wall-clock time from the monitor.
//!
//! The monitor tells the guest the TSC frequency (`hvt_boot_info.cpu_cycle_freq`, docs/hvt-abi.md,
//! Boot information), so monotonic time costs an `rdtsc` and no exit; the wall clock costs a
//! WALLTIME hypercall.

use core::arch::asm;
use core::ops::{Add, Sub};
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use crate::hypercall;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// TSC at boot (monotonic time 0) and TSC frequency in Hz, set once by boot.
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(1);

/// Starts the monotonic clock. `tsc_hz` must not be 0.
pub(crate) fn init(tsc_hz: u64) {
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
}

/// Reads the time-stamp counter (unprivileged: the monitor leaves CR4.TSD clear).
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the counter into edx:eax.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// The TSC frequency in Hz, as the monitor reported it.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Converts a number of TSC ticks to nanoseconds (exact up to 2^64 ns, about 584 years).
pub fn ticks_to_nanos(ticks: u64) -> u64 {
    (u128::from(ticks) * NANOS_PER_SEC / u128::from(tsc_hz())) as u64
}

/// A point in monotonic time, in nanoseconds since boot. Never goes backwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The current monotonic time.
    pub fn now() -> Instant {
        Instant(ticks_to_nanos(
            rdtsc().wrapping_sub(TSC_AT_BOOT.load(Ordering::Relaxed)),
        ))
    }

    /// Nanoseconds since boot.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Time since `self`.
    pub fn elapsed(self) -> Duration {
        Instant::now().duration_since(self)
    }

    /// `self + duration`, or `None` past the end of time (2^64 ns after boot).
    pub fn checked_add(self, duration: Duration) -> Option<Instant> {
        let nanos = u64::try_from(duration.as_nanos()).ok()?;
        self.0.checked_add(nanos).map(Instant)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the end of time instead of overflowing, so `now + long_timeout` is safe.
    fn add(self, duration: Duration) -> Instant {
        self.checked_add(duration).unwrap_or(Instant(u64::MAX))
    }
}

impl Sub for Instant {
    type Output = Duration;

    fn sub(self, earlier: Instant) -> Duration {
        self.duration_since(earlier)
    }
}

/// Wall-clock time: the host's `CLOCK_REALTIME` as a duration since the Unix epoch. It may jump
/// when the host's clock is set; measure intervals with [`Instant`].
pub fn wall_clock() -> Duration {
    Duration::from_nanos(hypercall::walltime())
}
