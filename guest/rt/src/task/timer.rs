//! Timers: [`sleep`], [`sleep_until`] and [`timeout`].
//!
//! A sleeping future registers its deadline and waker here; the run loop wakes the futures
//! whose deadline has passed and, when nothing is ready, sleeps in the monitor (POLL) until the
//! earliest deadline.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use core::future::{poll_fn, Future};
use core::pin::{pin, Pin};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use crate::global::Global;
use crate::Instant;

/// A timer's key: its deadline, then a number that makes it unique.
type Key = (Instant, u64);

struct Timers {
    wakers: BTreeMap<Key, Waker>,
    next_id: u64,
}

static TIMERS: Global<Timers> = Global::new(Timers {
    wakers: BTreeMap::new(),
    next_id: 0,
});

/// Waits for `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Waits until monotonic time reaches `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        key: None,
    }
}

/// The future of [`sleep`] and [`sleep_until`].
#[derive(Debug)]
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    key: Option<Key>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            this.cancel();
            return Poll::Ready(());
        }
        TIMERS.with(|timers| {
            if let Some(waker) = this.key.and_then(|key| timers.wakers.get_mut(&key)) {
                waker.clone_from(cx.waker());
                return;
            }
            let key = (this.deadline, timers.next_id);
            timers.next_id += 1;
            timers.wakers.insert(key, cx.waker().clone());
            this.key = Some(key);
        });
        Poll::Pending
    }
}

impl Sleep {
    fn cancel(&mut self) {
        if let Some(key) = self.key.take() {
            TIMERS.with(|timers| timers.wakers.remove(&key));
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Runs `future` for at most `duration`: its output, or [`Elapsed`] if time ran out first
/// (`future` is then dropped).
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    let mut timer = sleep(duration);
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut timer)
            .poll(cx)
            .map(|()| Err(Elapsed(duration)))
    })
    .await
}

/// The error of [`timeout`]: the future did not finish in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed(Duration);

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "timed out after {:?}", self.0)
    }
}

impl core::error::Error for Elapsed {}

/// Wakes every timer whose deadline is at or before `now`.
pub(super) fn fire(now: Instant) {
    let due: Vec<Waker> = TIMERS.with(|timers| {
        if next(timers).is_none_or(|at| at > now) {
            return Vec::new();
        }
        let later = timers.wakers.split_off(&(now + Duration::from_nanos(1), 0));
        core::mem::replace(&mut timers.wakers, later)
            .into_values()
            .collect()
    });
    due.into_iter().for_each(Waker::wake);
}

/// The earliest deadline of a waiting timer.
pub(super) fn next_deadline() -> Option<Instant> {
    TIMERS.with(|timers| next(timers))
}

fn next(timers: &Timers) -> Option<Instant> {
    timers.wakers.first_key_value().map(|(&(at, _), _)| at)
}
