//! State shared across the runtime: the task queue, timers, the network stack.
//!
//! A sturdy-rt guest runs on one vCPU with no interrupts, threads or signal handlers, so a
//! `static` needs no lock, only a guard against re-entrance: [`Global`] is a `RefCell` that may
//! live in a `static`. A nested borrow is a bug in sturdy-rt and panics.

use core::cell::RefCell;

/// A value in a `static`, borrowed mutably for the length of one closure.
pub(crate) struct Global<T>(RefCell<T>);

// SAFETY: the guest has one vCPU and nothing that preempts it (no interrupts, threads or signal
// handlers), so two accesses can never overlap in time; the RefCell catches nested ones.
unsafe impl<T> Sync for Global<T> {}

impl<T> Global<T> {
    pub(crate) const fn new(value: T) -> Self {
        Global(RefCell::new(value))
    }

    /// Runs `f` with the value. `f` must not use the same `Global` again (that panics).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}
