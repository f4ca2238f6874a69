//! Restart policy, exponential backoff and crash-loop detection: pure, time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sturdy_compose::Restart;

/// Backoff and crash-loop limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// The most the delay grows to (it doubles per recent restart).
    pub max: Duration,
    /// Restarts older than this are forgotten (a service up this long starts afresh).
    pub window: Duration,
    /// This many restarts within `window` and the next exit is a crash loop.
    pub limit: usize,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            window: Duration::from_secs(30),
            limit: 5,
        }
    }
}

/// What to do after an instance exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The policy does not restart it: it stays exited.
    Stay,
    /// Start it again after this delay.
    RestartAfter(Duration),
    /// Too many restarts in the window: stop restarting.
    CrashLoop,
}

/// One service's restart history.
#[derive(Clone, Debug)]
pub struct Tracker {
    policy: Restart,
    backoff: Backoff,
    recent: VecDeque<Instant>,
}

impl Tracker {
    /// A tracker for `policy` with `backoff`.
    pub fn new(policy: Restart, backoff: Backoff) -> Tracker {
        Tracker {
            policy,
            backoff,
            recent: VecDeque::new(),
        }
    }

    /// The instance exited at `now` with `status` (0 is success; a signal counts as failure).
    pub fn on_exit(&mut self, status: i32, now: Instant) -> Decision {
        let wanted = match self.policy {
            Restart::No => false,
            Restart::OnFailure => status != 0,
            Restart::Always => true,
        };
        if !wanted {
            return Decision::Stay;
        }
        while let Some(&first) = self.recent.front() {
            if now.saturating_duration_since(first) > self.backoff.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() >= self.backoff.limit {
            return Decision::CrashLoop;
        }
        let doublings = self.recent.len().min(31) as u32;
        let delay = self
            .backoff
            .initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff.max);
        self.recent.push_back(now);
        Decision::RestartAfter(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_never_restarts() {
        let mut t = Tracker::new(Restart::No, Backoff::default());
        let now = Instant::now();
        assert_eq!(t.on_exit(1, now), Decision::Stay);
        assert_eq!(t.on_exit(0, now), Decision::Stay);
    }

    #[test]
    fn on_failure_restarts_failures_only() {
        let mut t = Tracker::new(Restart::OnFailure, Backoff::default());
        let now = Instant::now();
        assert_eq!(t.on_exit(0, now), Decision::Stay);
        assert_eq!(t.on_exit(137, now), Decision::RestartAfter(ms(100)));
    }

    #[test]
    fn always_restarts_success_too() {
        let mut t = Tracker::new(Restart::Always, Backoff::default());
        assert_eq!(
            t.on_exit(0, Instant::now()),
            Decision::RestartAfter(ms(100))
        );
    }

    #[test]
    fn backoff_doubles_to_max_then_crash_loops() {
        let backoff = Backoff {
            limit: 10,
            window: Duration::from_secs(3600),
            ..Backoff::default()
        };
        let mut t = Tracker::new(Restart::Always, backoff);
        let start = Instant::now();
        let delays: Vec<_> = (0..10)
            .map(|i| match t.on_exit(1, start + ms(i)) {
                Decision::RestartAfter(d) => d.as_millis(),
                other => panic!("restart {i}: {other:?}"),
            })
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000]
        );
        assert_eq!(t.on_exit(1, start + ms(11)), Decision::CrashLoop);
    }

    #[test]
    fn crash_loop_after_limit_within_window() {
        let mut t = Tracker::new(Restart::OnFailure, Backoff::default());
        let start = Instant::now();
        for i in 0..5 {
            assert!(matches!(
                t.on_exit(1, start + Duration::from_secs(i)),
                Decision::RestartAfter(_)
            ));
        }
        assert_eq!(t.on_exit(1, start + ms(5500)), Decision::CrashLoop);
    }

    #[test]
    fn old_restarts_are_forgotten() {
        let mut t = Tracker::new(Restart::OnFailure, Backoff::default());
        let start = Instant::now();
        for i in 0..5 {
            t.on_exit(1, start + ms(i));
        }
        // Up for a minute: the window is empty again, the delay back to the first.
        assert_eq!(
            t.on_exit(1, start + Duration::from_secs(60)),
            Decision::RestartAfter(ms(100))
        );
    }
}
