//! [`JoinHandle`]: waiting for a spawned task's output.

use alloc::rc::Rc;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

/// A spawned task's output, once it finishes, and who waits for it.
struct Join<T> {
    output: Option<T>,
    waiter: Option<Waker>,
}

/// Awaits the output of a task started with [`spawn`](super::spawn). Dropping it lets the task
/// run on, detached.
#[derive(Debug)]
pub struct JoinHandle<T>(Rc<RefCell<Join<T>>>);

impl<T> core::fmt::Debug for Join<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.write_str(if self.output.is_some() {
            "finished"
        } else {
            "running"
        })
    }
}

/// Wraps `future` so that its output goes to the returned handle.
pub(super) fn joinable<F: Future + 'static>(
    future: F,
) -> (impl Future<Output = ()> + 'static, JoinHandle<F::Output>) {
    let join = Rc::new(RefCell::new(Join {
        output: None,
        waiter: None,
    }));
    let handle = JoinHandle(join.clone());
    let task = async move {
        let output = future.await;
        let waiter = {
            let mut join = join.borrow_mut();
            join.output = Some(output);
            join.waiter.take()
        };
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    };
    (task, handle)
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    /// Ready with the task's output once it finished (pending forever if polled again after).
    fn poll(self: Pin<&mut Self>, cx: &mut Context) -> Poll<T> {
        let mut join = self.0.borrow_mut();
        match join.output.take() {
            Some(output) => Poll::Ready(output),
            None => {
                join.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
