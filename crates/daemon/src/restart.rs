//! Restart policy, exponential backoff and crash-loop detection: pure, time is passed in.

use std::time::Duration;

use sturdy_compose::Restart;

/// Backoff and crash-loop limits, as Kubernetes' CrashLoopBackOff: a service that keeps
/// failing is restarted ever more slowly, never given up on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// The most the delay grows to (it doubles per restart in a row).
    pub max: Duration,
    /// An instance that ran this long ends the row: the next restart is quick again.
    pub window: Duration,
    /// After this many restarts in a row the service is shown as crash-looping (it is still
    /// restarted, after the growing delay).
    pub limit: usize,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(300),
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
    /// Restarted too often in a row: it is crash-looping; start it again after this
    /// (longer) delay.
    CrashLoop(Duration),
}

/// One service's restart history.
#[derive(Clone, Debug)]
pub struct Tracker {
    policy: Restart,
    backoff: Backoff,
    /// Restarts in a row, each after an instance that ran less than the window.
    in_a_row: u32,
}

impl Tracker {
    /// A tracker for `policy` with `backoff`.
    pub fn new(policy: Restart, backoff: Backoff) -> Tracker {
        Tracker {
            policy,
            backoff,
            in_a_row: 0,
        }
    }

    /// The instance exited with `status` (0 is success; a signal counts as failure) after
    /// running for `ran`.
    pub fn on_exit(&mut self, status: i32, ran: Duration) -> Decision {
        let wanted = match self.policy {
            Restart::No => false,
            Restart::OnFailure => status != 0,
            Restart::Always => true,
        };
        if !wanted {
            return Decision::Stay;
        }
        if ran >= self.backoff.window {
            self.in_a_row = 0;
        }
        let doublings = self.in_a_row.min(31);
        let delay = self
            .backoff
            .initial
            .saturating_mul(1u32 << doublings)
            .min(self.backoff.max);
        self.in_a_row = self.in_a_row.saturating_add(1);
        if self.in_a_row as usize > self.backoff.limit {
            Decision::CrashLoop(delay)
        } else {
            Decision::RestartAfter(delay)
        }
    }

    /// Restarts in a row so far.
    pub fn in_a_row(&self) -> u32 {
        self.in_a_row
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
        assert_eq!(t.on_exit(1, ms(5)), Decision::Stay);
        assert_eq!(t.on_exit(0, ms(5)), Decision::Stay);
    }

    #[test]
    fn on_failure_restarts_failures_only() {
        let mut t = Tracker::new(Restart::OnFailure, Backoff::default());
        assert_eq!(t.on_exit(0, ms(5)), Decision::Stay);
        assert_eq!(t.on_exit(137, ms(5)), Decision::RestartAfter(ms(100)));
    }

    #[test]
    fn always_restarts_success_too() {
        let mut t = Tracker::new(Restart::Always, Backoff::default());
        assert_eq!(t.on_exit(0, ms(5)), Decision::RestartAfter(ms(100)));
    }

    /// The delay doubles up to its cap; past the limit the service is crash-looping but
    /// still retried, every 5 minutes at most, for ever.
    #[test]
    fn backoff_doubles_to_its_cap_and_a_crash_loop_keeps_being_retried() {
        let mut t = Tracker::new(Restart::Always, Backoff::default());
        let delays: Vec<_> = (0..15).map(|_| t.on_exit(1, ms(10))).collect();
        let expected: Vec<Decision> = [100, 200, 400, 800, 1600]
            .iter()
            .map(|&d| Decision::RestartAfter(ms(d)))
            .chain(
                [
                    3200, 6400, 12800, 25600, 51200, 102400, 204800, 300000, 300000, 300000,
                ]
                .iter()
                .map(|&d| Decision::CrashLoop(ms(d))),
            )
            .collect();
        assert_eq!(delays, expected);
        assert_eq!(t.in_a_row(), 15);
    }

    #[test]
    fn an_instance_that_ran_a_while_ends_the_row() {
        let mut t = Tracker::new(Restart::OnFailure, Backoff::default());
        for _ in 0..7 {
            t.on_exit(1, ms(10));
        }
        assert!(matches!(t.on_exit(1, ms(10)), Decision::CrashLoop(_)));
        // Up for a minute: the row ends, the delay is back to the first.
        assert_eq!(
            t.on_exit(1, Duration::from_secs(60)),
            Decision::RestartAfter(ms(100))
        );
    }
}
