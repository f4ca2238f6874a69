//! How an application ends: what `main` may return, and a shorthand to stop on an error.

use core::fmt::Display;

use crate::{exit, println};

/// What `main` (or the `async fn` given to [`main_async!`](crate::main_async)) may return:
/// an exit status (`i32`), `()` for 0, or a `Result` whose error is printed as
/// `error: <error>` before exiting with status 1.
pub trait Termination {
    /// The exit status.
    fn report(self) -> i32;
}

impl Termination for i32 {
    fn report(self) -> i32 {
        self
    }
}

impl Termination for () {
    fn report(self) -> i32 {
        0
    }
}

impl<T: Termination, E: Display> Termination for Result<T, E> {
    fn report(self) -> i32 {
        match self {
            Ok(value) => value.report(),
            Err(e) => {
                println!("error: {e}");
                1
            }
        }
    }
}

/// Stops the guest on an error: `env.tcp("db").or_exit()` prints `error: <error>` and exits
/// with status 1, which is what a unikernel missing a capability or an address should do at
/// start.
pub trait OrExit<T> {
    /// The value, or the end of the run.
    fn or_exit(self) -> T;
}

impl<T, E: Display> OrExit<T> for Result<T, E> {
    fn or_exit(self) -> T {
        self.unwrap_or_else(|e| {
            println!("error: {e}");
            exit(1)
        })
    }
}
