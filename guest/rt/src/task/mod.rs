//! Tasks: a single-threaded async executor with timers, driving the network stack.
//!
//! [`block_on`] runs a future to completion, together with every task [`spawn`]ed meanwhile.
//! Its loop, one round at a time:
//!
//! 1. wake the timers that are due;
//! 2. poll the root future if it was woken, then every task that was ready when the round began
//!    (a task that wakes itself waits for the next round, so it cannot starve the network);
//! 3. poll the network stack: receive what arrived (a bounded batch per NIC), let smoltcp
//!    answer and retransmit, and send what the tasks wrote; this wakes the tasks whose sockets
//!    changed;
//! 4. if nothing is ready, sleep in the monitor (POLL, docs/hvt-abi.md, Hypercalls) until a frame
//!    arrives or the earliest deadline, of a timer or of smoltcp (a retransmission, a delayed ACK).
//!
//! Every exit to the monitor is expensive (docs/hvt-abi.md, PVM hosts), so the loop leaves the
//! guest only to send and receive frames and to sleep.

mod join;
mod timer;
mod waker;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::{pin, Pin};
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};
use core::time::Duration;

pub use join::JoinHandle;
pub use timer::{sleep, sleep_until, timeout, Elapsed, Sleep};

use crate::global::Global;
use crate::{abort, poll, poll_until, println, tcpip, Instant, ReadySet};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The spawned tasks, by number. A slot is `None` while its task is being polled (or once it
/// finished: then its number is in `free`).
struct Tasks {
    slots: Vec<Option<Task>>,
    free: Vec<usize>,
}

static TASKS: Global<Tasks> = Global::new(Tasks {
    slots: Vec::new(),
    free: Vec::new(),
});

static RUNNING: AtomicBool = AtomicBool::new(false);

/// Starts `future` as a task of its own; the handle awaits its output. It runs while
/// [`block_on`] runs (from `main`, or from [`main_async!`](crate::main_async)), interleaved with
/// the other tasks at each `.await`.
pub fn spawn<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    let (task, handle) = join::joinable(future);
    let task: Task = Box::pin(task);
    let id = TASKS.with(|tasks| match tasks.free.pop() {
        Some(id) => {
            tasks.slots[id] = Some(task);
            id
        }
        None => {
            tasks.slots.push(Some(task));
            tasks.slots.len() - 1
        }
    });
    waker::wake(id);
    handle
}

/// Runs `future`, and the spawned tasks, until `future` is done; returns its output.
///
/// Panics if called from inside a task (there is one run loop).
pub fn block_on<F: Future>(future: F) -> F::Output {
    assert!(
        !RUNNING.swap(true, Ordering::Relaxed),
        "sturdy_rt::block_on called inside block_on"
    );
    let mut future = pin!(future);
    let root = waker::waker(waker::ROOT);
    let mut cx = Context::from_waker(&root);
    waker::wake(waker::ROOT);
    // The NICs to read: `None` after a round that did not wait in POLL (anything may have come).
    let mut readable: Option<ReadySet> = None;
    loop {
        timer::fire(Instant::now());
        if waker::take_root() {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                RUNNING.store(false, Ordering::Relaxed);
                return output;
            }
        }
        run_ready_tasks();
        let now = Instant::now();
        let more_frames = tcpip::poll(now, readable.take());
        if more_frames || waker::any_ready() {
            continue;
        }
        let deadline = [timer::next_deadline(), tcpip::poll_at(now)]
            .into_iter()
            .flatten()
            .min();
        readable = Some(idle(deadline));
    }
}

/// Polls the tasks that are ready now, each once.
fn run_ready_tasks() {
    for _ in 0..waker::ready_count() {
        let Some(id) = waker::next() else { break };
        let Some(mut task) = TASKS.with(|tasks| tasks.slots.get_mut(id).and_then(Option::take))
        else {
            continue; // finished since it was woken
        };
        let waker = waker::waker(id);
        match task.as_mut().poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(()) => TASKS.with(|tasks| tasks.free.push(id)),
            Poll::Pending => TASKS.with(|tasks| tasks.slots[id] = Some(task)),
        }
        // A finished task is dropped here, outside the borrow: its destructors may close
        // sockets or cancel timers.
    }
}

/// Sleeps in the monitor until a NIC has a frame or `deadline` passes.
fn idle(deadline: Option<Instant>) -> ReadySet {
    match deadline {
        Some(deadline) => poll_until(deadline),
        None if tcpip::started() => poll(Duration::MAX),
        None => {
            println!(
                "sturdy-rt: deadlock: every task is waiting, and nothing can wake them \
                 (no timer, no network)"
            );
            abort()
        }
    }
}
