//! Helpers shared by the test guests.
//!
//! The guests follow Solo5's test conventions: a guest that passes prints a line `SUCCESS` and
//! exits 0; a failed check prints `FAILURE: <what>` and exits 1.
#![no_std]

use core::fmt;

pub mod responder;

/// Prints `FAILURE: <what>` and halts with status 1.
pub fn fail(what: fmt::Arguments) -> ! {
    sturdy_rt::println!("FAILURE: {what}");
    sturdy_rt::exit(1)
}

/// Prints `SUCCESS` and returns the status to exit with, for `main` to return.
pub fn success() -> i32 {
    sturdy_rt::println!("SUCCESS");
    0
}

/// The number from `--limit=N`, if given.
pub fn limit_option(env: &sturdy_rt::Env) -> Option<u64> {
    let value = env.option("limit")?;
    let limit = value.parse();
    Some(limit.unwrap_or_else(|_| fail(format_args!("--limit={value}: not a number"))))
}

/// Checks a condition; if it is false, fails the test with a formatted description.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($what:tt)+) => {
        if !$cond {
            $crate::fail(format_args!($($what)+))
        }
    };
}

/// A string formatted into a fixed buffer, for tests of formatting itself.
pub struct FmtBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FmtBuf<N> {
    /// Formats `args`; fails the test if the result does not fit.
    pub fn format(args: fmt::Arguments) -> Self {
        let mut s = FmtBuf {
            buf: [0; N],
            len: 0,
        };
        check!(
            fmt::write(&mut s, args).is_ok(),
            "formatted text longer than {N} bytes"
        );
        s
    }

    /// The formatted text.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended, so the contents are valid UTF-8.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for FmtBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
