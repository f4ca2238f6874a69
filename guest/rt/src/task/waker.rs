//! Wakers and the queue of tasks to poll.
//!
//! A waker is a task's number and nothing else (no allocation, no reference count): waking it
//! puts the number on the ready queue, once. [`ROOT`] stands for the future given to
//! [`block_on`](super::block_on).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::task::{RawWaker, RawWakerVTable, Waker};

use crate::global::Global;

/// The task number of `block_on`'s own future.
pub(super) const ROOT: usize = usize::MAX;

struct Queue {
    ready: VecDeque<usize>,
    /// `queued[id]`: `id` is in `ready` (so it is not added twice).
    queued: Vec<bool>,
    root: bool,
}

static QUEUE: Global<Queue> = Global::new(Queue {
    ready: VecDeque::new(),
    queued: Vec::new(),
    root: false,
});

/// A waker for task `id`.
pub(super) fn waker(id: usize) -> Waker {
    // SAFETY: the data pointer is just the number `id`, never dereferenced; the vtable's
    // functions below treat it so, and are safe to call from anywhere at any time.
    unsafe { Waker::from_raw(raw(id)) }
}

fn raw(id: usize) -> RawWaker {
    RawWaker::new(core::ptr::without_provenance(id), &VTABLE)
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(
    |data| raw(data.addr()),
    |data| wake(data.addr()),
    |data| wake(data.addr()),
    |_| {},
);

/// Puts task `id` on the ready queue, unless it is there already.
pub(super) fn wake(id: usize) {
    QUEUE.with(|q| {
        if id == ROOT {
            q.root = true;
            return;
        }
        if q.queued.len() <= id {
            q.queued.resize(id + 1, false);
        }
        if !q.queued[id] {
            q.queued[id] = true;
            q.ready.push_back(id);
        }
    });
}

/// Whether the root future was woken since the last call (and forgets it).
pub(super) fn take_root() -> bool {
    QUEUE.with(|q| core::mem::take(&mut q.root))
}

/// The next task to poll.
pub(super) fn next() -> Option<usize> {
    QUEUE.with(|q| {
        let id = q.ready.pop_front()?;
        q.queued[id] = false;
        Some(id)
    })
}

/// How many tasks are ready now.
pub(super) fn ready_count() -> usize {
    QUEUE.with(|q| q.ready.len())
}

/// Whether anything (a task or the root future) is ready.
pub(super) fn any_ready() -> bool {
    QUEUE.with(|q| q.root || !q.ready.is_empty())
}
