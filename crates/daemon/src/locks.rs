//! Locks that outlive a panic. A bug that panics while holding one of the daemon's locks (in a
//! request handler, which the server survives, or a supervisor thread) would otherwise poison
//! it, and every later request touching it would panic too: one bug would take down the whole
//! API until a restart. The state under these locks is updated a field at a time, so the next
//! user carries on with what is there; the panic itself is on the daemon's log.
use std::sync::{Mutex, MutexGuard};

pub(crate) trait LockExt<T> {
    /// Locks, taking the lock over from a thread that panicked while holding it.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> LockExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| {
            self.clear_poison();
            poisoned.into_inner()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lock_held_by_a_thread_that_panicked_is_taken_over() {
        let m = Arc::new(Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let mut g = held.lock().unwrap();
            *g = 2;
            panic!("a bug while holding the lock");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*m.locked(), 2);
        assert!(
            !m.is_poisoned(),
            "taken over once, not poisoned for every later user"
        );
        *m.locked() = 3;
        assert_eq!(*m.lock().unwrap(), 3);
    }
}
