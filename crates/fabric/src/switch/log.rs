//! Rate-limited drop logs: at most one line per port and reason per interval, saying how many
//! were left out since the last.

use std::time::{Duration, Instant};

use crate::plan::PortId;
use crate::policy::{DropReason, Map};

#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval: Duration,
    /// Per port and reason: when the last line went out, and how many were suppressed since.
    last: Map<(PortId, u8), (Instant, u64)>,
}

impl LogLimiter {
    pub(crate) fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: Map::default(),
        }
    }

    /// Whether a line for `port` and `reason` may go out at `now`; if so, how many were
    /// suppressed since the last one.
    pub(crate) fn allow(&mut self, port: PortId, reason: DropReason, now: Instant) -> Option<u64> {
        let entry = self.last.entry((port, reason.index() as u8));
        match entry {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((now, 0));
                Some(0)
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let (at, suppressed) = o.get_mut();
                if now.saturating_duration_since(*at) >= self.interval {
                    let n = *suppressed;
                    *at = now;
                    *suppressed = 0;
                    Some(n)
                } else {
                    *suppressed += 1;
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_per_port_and_reason() {
        let mut l = LogLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let (a, b) = (PortId(0), PortId(1));
        assert_eq!(l.allow(a, DropReason::NoCapability, t0), Some(0));
        assert_eq!(l.allow(a, DropReason::NoCapability, t0), None);
        assert_eq!(
            l.allow(a, DropReason::NoCapability, t0 + Duration::from_millis(999)),
            None
        );
        assert_eq!(
            l.allow(a, DropReason::Fragment, t0),
            Some(0),
            "another reason"
        );
        assert_eq!(
            l.allow(b, DropReason::NoCapability, t0),
            Some(0),
            "another port"
        );
        assert_eq!(
            l.allow(a, DropReason::NoCapability, t0 + Duration::from_secs(1)),
            Some(2)
        );
        assert_eq!(
            l.allow(a, DropReason::NoCapability, t0 + Duration::from_secs(1)),
            None
        );
    }
}
