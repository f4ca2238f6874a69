//! The console: text written to the monitor's standard output with the PUTS hypercall
//! (docs/hvt-abi.md, Hypercalls).
//!
//! [`print!`](crate::print) and [`println!`](crate::println) are for the guest's own output and
//! always print. The log macros ([`error!`](crate::error), [`warn!`](crate::warn),
//! [`info!`](crate::info), [`debug!`](crate::debug)) print only up to the level chosen on the
//! command line with a leading `--solo5:quiet|error|warn|info|debug` option (default: info;
//! `quiet` is the same as `error`), like Solo5's own messages.
//!
//! Every hypercall is an exit to the monitor, which is expensive (docs/hvt-abi.md, PVM hosts), so
//! formatted output is gathered in a buffer on the stack and written with one hypercall per line in
//! the common case.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU8, Ordering};

use crate::hypercall;

/// How much a log message matters; a message prints if its level is at most [`level()`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed; printed even with `--solo5:quiet`.
    Error = 1,
    /// Something looks wrong.
    Warn = 2,
    /// What a guest normally says, such as sturdy-rt's banner.
    Info = 3,
    /// Details for whoever is debugging.
    Debug = 4,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// The current log level.
pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        1 => Level::Error,
        2 => Level::Warn,
        3 => Level::Info,
        _ => Level::Debug,
    }
}

/// Changes the log level (initially the one from the command line).
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether a message at `level` would be printed.
pub fn enabled(level: Level) -> bool {
    level <= self::level()
}

/// The level a leading `--solo5:` command-line option selects, if `token` is one.
pub(crate) fn level_option(token: &str) -> Option<Level> {
    match token.strip_prefix("--solo5:")? {
        "quiet" | "error" => Some(Level::Error),
        "warn" => Some(Level::Warn),
        "info" => Some(Level::Info),
        "debug" => Some(Level::Debug),
        _ => None,
    }
}

/// Writes `bytes` to the console as they are.
pub fn write(bytes: &[u8]) {
    hypercall::puts(bytes);
}

/// A [`fmt::Write`] sink that fills a buffer and writes it out when full and when dropped.
pub(crate) struct Buffered {
    buf: [u8; 256],
    len: usize,
}

impl Buffered {
    pub(crate) fn new() -> Self {
        Buffered {
            buf: [0; 256],
            len: 0,
        }
    }

    /// Writes `n` in base `radix` (2 to 16) without `core::fmt`, whose precompiled integer
    /// formatting uses SSE: this also works at CPL 0 on PVM hosts, where SSE faults
    /// (docs/hvt-abi.md, PVM hosts).
    pub(crate) fn write_u64(&mut self, n: u64, radix: u64) {
        let mut scale = 1;
        while n / scale >= radix {
            scale *= radix;
        }
        while scale > 0 {
            let digit = (n / scale % radix) as usize;
            _ = self.write_str(&"0123456789abcdef"[digit..digit + 1]);
            scale /= radix;
        }
    }

    fn flush(&mut self) {
        if self.len > 0 {
            write(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Write for Buffered {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.flush();
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    match args.as_str() {
        Some(s) => write(s.as_bytes()),
        // Writing into the buffer cannot fail; a failing Display impl just ends the output.
        None => _ = Buffered::new().write_fmt(args),
    }
}

#[doc(hidden)]
pub fn _log(level: Level, args: fmt::Arguments) {
    if !enabled(level) {
        return;
    }
    let prefix = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug => "debug: ",
    };
    let mut out = Buffered::new();
    _ = out.write_str(prefix);
    _ = out.write_fmt(args);
    _ = out.write_str("\n");
}

/// Prints to the console, like `std::print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(format_args!($($arg)*))
    };
}

/// Prints to the console with a newline, like `std::println!`.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::console::_print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Logs a line at the given [`Level`]: `log!(Level::Warn, "disk {} is small", name)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        $crate::console::_log($level, format_args!($($arg)*))
    };
}

/// Logs a line at [`Level::Error`], prefixed `error: `.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log!($crate::console::Level::Error, $($arg)*) };
}

/// Logs a line at [`Level::Warn`], prefixed `warning: `.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log!($crate::console::Level::Warn, $($arg)*) };
}

/// Logs a line at [`Level::Info`], as it is.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log!($crate::console::Level::Info, $($arg)*) };
}

/// Logs a line at [`Level::Debug`], prefixed `debug: `.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log!($crate::console::Level::Debug, $($arg)*) };
}
