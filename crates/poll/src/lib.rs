//! Adaptive polling before sleeping, for the threads that move frames: the monitor's NIC I/O
//! thread (`vmm::devices::ring`) and the fabric's run loop (`sturdy_fabric::port`, which also
//! serves the gateway).
//!
//! On a virtualised host a thread's sleep and wake-up cost tens of microseconds (an idle vCPU
//! halts; ~35 us of CPU per wake-up was measured on a nested host), once per hop of every
//! frame. While frames flow, the next one comes within a few hundred microseconds, so polling
//! that long (yielding the CPU each round) saves the wake-ups; idle, it would only burn CPU.

use std::time::{Duration, Instant};

/// How long to poll before sleeping, adapted as KVM adapts its halt polling: a sleep that ended
/// within the longest window would have been saved by polling, so the window grows (doubling
/// from 10 us); a longer sleep means polling only burnt CPU, so it halves.
/// Idle or sparse traffic thus polls little or not at all; while frames flow it polls the
/// longest.
#[derive(Debug)]
pub struct PollWindow {
    window: Duration,
    max: Duration,
    until: Instant,
}

impl PollWindow {
    const START: Duration = Duration::from_micros(10);

    /// A window of at most `max`; the environment variable `var` (microseconds), when set,
    /// replaces it (0: sleep at once), for measurements and tuning.
    pub fn new(max: Duration, var: &str) -> PollWindow {
        let max = std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(max, Duration::from_micros);
        PollWindow::with_max(max)
    }

    /// A window of at most `max`.
    pub fn with_max(max: Duration) -> PollWindow {
        PollWindow {
            window: Duration::ZERO,
            max,
            until: Instant::now(),
        }
    }

    /// Work was done at `now`: poll for the window from here.
    pub fn start(&mut self, now: Instant) {
        self.until = now + self.window;
    }

    /// Whether to keep polling at `now`.
    pub fn polling(&self, now: Instant) -> bool {
        now < self.until
    }

    /// After a sleep of `slept`, adapts the window.
    pub fn slept(&mut self, slept: Duration) {
        self.window = if slept <= self.max {
            // Not `clamp`: a max below START (0: never poll) must win, not panic.
            (self.window * 2).max(Self::START).min(self.max)
        } else if self.window / 2 >= Self::START {
            self.window / 2
        } else {
            Duration::ZERO
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_while_work_flows_and_shrinks_when_idle() {
        let max = Duration::from_micros(300);
        let mut p = PollWindow::with_max(max);
        p.start(Instant::now());
        assert!(!p.polling(Instant::now()), "no window yet, no polling");
        for _ in 0..10 {
            p.slept(Duration::from_micros(50));
        }
        assert_eq!(p.window, max);
        let now = Instant::now();
        p.start(now);
        assert!(p.polling(now));
        assert!(!p.polling(now + max));
        p.slept(Duration::from_millis(5));
        assert_eq!(p.window, max / 2);
        for _ in 0..10 {
            p.slept(Duration::from_secs(1));
        }
        assert_eq!(p.window, Duration::ZERO);
    }

    #[test]
    fn a_zero_max_never_polls() {
        let mut p = PollWindow::with_max(Duration::ZERO);
        p.slept(Duration::ZERO);
        p.start(Instant::now());
        assert!(!p.polling(Instant::now()));
    }
}
