//! The incremental RESP2 request parser.
//!
//! Bytes arrive in whatever pieces TCP delivers them: [`Parser::feed`] appends them and
//! [`Parser::next_command`] returns each complete command, however the input was split and however
//! many commands one piece holds (pipelining). A request is either an array of bulk strings
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what every client library sends) or an inline command
//! (`GET k\r\n`, what people type into telnet), told apart by the first byte as Redis does
//! (`processInputBuffer` in `networking.c`).
//!
//! Everything is bounded by [`Limits`]; input that breaks them, or is not RESP, is a
//! [`ProtocolError`] whose reply is the one Redis sends (where Redis has one), after which the
//! connection is closed.
//! Complete arguments are moved out of the input buffer as soon as they are read, and the parser
//! remembers how far it has looked for a line end, so input trickling in a byte at a time costs
//! linear, not quadratic, time.

use alloc::vec::Vec;
use core::fmt;

use super::{encode, inline};
use crate::num::parse_i64;

/// A command: its name and arguments, binary safe. Never empty.
pub type Command = Vec<Vec<u8>>;

/// Bounds on what one client may make the server hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string (Redis's `proto-max-bulk-len`, which defaults to 512 MB).
    pub max_bulk: usize,
    /// Most elements in one request array.
    pub max_args: usize,
    /// Longest inline command, and longest length line (`*N` or `$N`) (Redis: 64 KiB).
    pub max_inline: usize,
    /// Most argument bytes in one command, all arguments together.
    pub max_command: usize,
    /// Most unparsed bytes held. A caller that drains [`Parser::next_command`] after every
    /// [`Parser::feed`] holds at most the unread part of one argument (`max_bulk` + 1 bytes)
    /// when it feeds again, so any feed of up to `max_buffer - max_bulk - 1` bytes (511 KiB
    /// with the defaults) is accepted.
    pub max_buffer: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk: 512 << 10,
            max_args: 1024,
            max_inline: 64 << 10,
            max_command: 1 << 20,
            max_buffer: 1 << 20,
        }
    }
}

/// Input that is not a valid request or breaks a [`Limits`] bound. The connection must be closed
/// after sending [`write_reply`](ProtocolError::write_reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*N` where N is not a number or above [`Limits::max_args`].
    InvalidMultibulkLength,
    /// `$N` where N is not a number, negative or above [`Limits::max_bulk`].
    InvalidBulkLength,
    /// An array element that is not a bulk string.
    ExpectedBulk(u8),
    /// Bulk data not followed by CRLF. (Redis skips the two bytes unread; we refuse the
    /// request rather than guess where the next one starts.)
    MissingCrlf,
    /// An inline command longer than [`Limits::max_inline`].
    TooBigInline,
    /// A `*N` line longer than [`Limits::max_inline`].
    TooBigMultibulkCount,
    /// A `$N` line longer than [`Limits::max_inline`].
    TooBigBulkCount,
    /// An inline command with a quote that does not close.
    UnbalancedQuotes,
    /// A command whose arguments add up to more than [`Limits::max_command`].
    TooBigCommand,
    /// More unparsed input than [`Limits::max_buffer`].
    TooMuchInput,
}

impl ProtocolError {
    /// Appends the error reply Redis sends in this case (`-ERR Protocol error: ...`).
    pub fn write_reply(&self, out: &mut Vec<u8>) {
        let mut msg = b"ERR Protocol error: ".to_vec();
        match self {
            // The byte as is, like Redis's `%c`.
            ProtocolError::ExpectedBulk(got) => {
                msg.extend_from_slice(b"expected '$', got '");
                msg.extend_from_slice(&[*got, b'\''])
            }
            other => msg.extend_from_slice(other.text().as_bytes()),
        }
        encode::error(out, &msg);
    }

    fn text(&self) -> &'static str {
        match self {
            ProtocolError::InvalidMultibulkLength => "invalid multibulk length",
            ProtocolError::InvalidBulkLength => "invalid bulk length",
            ProtocolError::ExpectedBulk(_) => "expected '$'",
            ProtocolError::MissingCrlf => "expected CRLF after bulk data",
            ProtocolError::TooBigInline => "too big inline request",
            ProtocolError::TooBigMultibulkCount => "too big mbulk count string",
            ProtocolError::TooBigBulkCount => "too big bulk count string",
            ProtocolError::UnbalancedQuotes => "unbalanced quotes in request",
            ProtocolError::TooBigCommand => "too big request",
            ProtocolError::TooMuchInput => "too much unprocessed input",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Protocol error: {}", self.text())?;
        if let ProtocolError::ExpectedBulk(got) = self {
            write!(f, ", got '{}'", got.escape_ascii())?;
        }
        Ok(())
    }
}

/// One connection's request parser.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    /// Input not yet consumed starts at `pos`; `buf[..pos]` is dropped at the next feed.
    buf: Vec<u8>,
    pos: usize,
    /// `buf[pos..pos + scanned]` holds no line terminator (valid while `pos` does not move).
    scanned: usize,
    /// The array being read: arguments so far, how many are still to come (0 between
    /// requests), the length of the bulk string being read once its `$N` line is parsed, and
    /// the argument bytes so far.
    args: Vec<Vec<u8>>,
    remaining: usize,
    bulk_len: Option<usize>,
    command_bytes: usize,
    /// Errors are final: the stream cannot be resynchronised.
    failed: Option<ProtocolError>,
}

impl Default for Parser {
    fn default() -> Parser {
        Parser::new(Limits::default())
    }
}

impl Parser {
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            args: Vec::new(),
            remaining: 0,
            bulk_len: None,
            command_bytes: 0,
            failed: None,
        }
    }

    /// Appends bytes received from the client.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.len() + data.len() > self.limits.max_buffer {
            return Err(self.fail(ProtocolError::TooMuchInput));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The next complete command, `Ok(None)` if more input is needed.
    pub fn next_command(&mut self) -> Result<Option<Command>, ProtocolError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        self.parse().map_err(|e| self.fail(e))
    }

    fn fail(&mut self, e: ProtocolError) -> ProtocolError {
        self.failed = Some(e);
        e
    }

    fn parse(&mut self) -> Result<Option<Command>, ProtocolError> {
        loop {
            if self.remaining == 0 {
                match self.buf.get(self.pos) {
                    None => return Ok(None),
                    Some(b'*') => {
                        if !self.array_header()? {
                            return Ok(None);
                        }
                    }
                    Some(_) => match self.inline()? {
                        Some(args) if args.is_empty() => {}
                        command => return Ok(command),
                    },
                }
                continue;
            }
            let len = match self.bulk_len {
                Some(len) => len,
                None => match self.bulk_header()? {
                    Some(len) => len,
                    None => return Ok(None),
                },
            };
            if !self.bulk_data(len)? {
                return Ok(None);
            }
            if self.remaining == 0 {
                return Ok(Some(core::mem::take(&mut self.args)));
            }
        }
    }

    /// Reads `*N\r\n`. `false` if the line is incomplete.
    fn array_header(&mut self) -> Result<bool, ProtocolError> {
        let invalid = ProtocolError::InvalidMultibulkLength;
        let Some(cr) = self.length_line(ProtocolError::TooBigMultibulkCount)? else {
            return Ok(false);
        };
        let count = self.length(cr, invalid)?;
        // Like Redis, `*0` and `*-1` are empty requests that are skipped without a reply.
        if count > 0 {
            let count = usize::try_from(count).map_err(|_| invalid)?;
            if count > self.limits.max_args {
                return Err(invalid);
            }
            self.remaining = count;
            self.args = Vec::with_capacity(count);
            self.command_bytes = 0;
        }
        Ok(true)
    }

    /// Reads `$N\r\n` and returns N.
    fn bulk_header(&mut self) -> Result<Option<usize>, ProtocolError> {
        let Some(cr) = self.length_line(ProtocolError::TooBigBulkCount)? else {
            return Ok(None);
        };
        let kind = self.buf[self.pos];
        if kind != b'$' {
            return Err(ProtocolError::ExpectedBulk(kind));
        }
        let invalid = ProtocolError::InvalidBulkLength;
        let len = usize::try_from(self.length(cr, invalid)?).map_err(|_| invalid)?;
        if len > self.limits.max_bulk {
            return Err(invalid);
        }
        self.command_bytes += len;
        if self.command_bytes > self.limits.max_command {
            return Err(ProtocolError::TooBigCommand);
        }
        self.bulk_len = Some(len);
        Ok(Some(len))
    }

    /// Reads `len` bytes of bulk data and their CRLF into the next argument. `false` if they
    /// have not all arrived.
    fn bulk_data(&mut self, len: usize) -> Result<bool, ProtocolError> {
        let end = self.pos + len;
        if self.buf.len() < end + 2 {
            return Ok(false);
        }
        if &self.buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        self.args.push(self.buf[self.pos..end].to_vec());
        self.advance(end + 2);
        self.bulk_len = None;
        self.remaining -= 1;
        Ok(true)
    }

    /// Reads an inline command up to LF (CR LF or a bare LF, as Redis accepts). `Some` of an
    /// empty command for a blank line.
    fn inline(&mut self) -> Result<Option<Command>, ProtocolError> {
        let Some(newline) = self.find(b'\n') else {
            if self.buf.len() - self.pos > self.limits.max_inline {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(None);
        };
        let mut end = newline;
        if end > self.pos && self.buf[end - 1] == b'\r' {
            end -= 1;
        }
        // Redis checks the length only while the line is incomplete, so whether a long line
        // is refused depends on how TCP split it; checking it here too makes it deterministic.
        if end - self.pos > self.limits.max_inline {
            return Err(ProtocolError::TooBigInline);
        }
        let args =
            inline::split(&self.buf[self.pos..end]).ok_or(ProtocolError::UnbalancedQuotes)?;
        self.advance(newline + 1);
        Ok(Some(args))
    }

    /// Finds a complete length line (`*N\r\n` or `$N\r\n`) at `pos` and returns the index of
    /// its CR; `None` while it is incomplete, `too_big` once it is longer than any valid one.
    fn length_line(&mut self, too_big: ProtocolError) -> Result<Option<usize>, ProtocolError> {
        match self.find(b'\r') {
            Some(cr) if cr + 1 < self.buf.len() => Ok(Some(cr)),
            Some(_) => Ok(None),
            None if self.buf.len() - self.pos > self.limits.max_inline => Err(too_big),
            None => Ok(None),
        }
    }

    /// Parses the number of the length line at `pos` ending at `cr` and consumes the line.
    fn length(&mut self, cr: usize, invalid: ProtocolError) -> Result<i64, ProtocolError> {
        let n = parse_i64(&self.buf[self.pos + 1..cr]).ok_or(invalid)?;
        // Redis takes any byte after CR as the LF; we insist, the line is malformed otherwise.
        if self.buf[cr + 1] != b'\n' {
            return Err(invalid);
        }
        self.advance(cr + 2);
        Ok(n)
    }

    /// The index of the first `byte` at or after `pos`, remembering how far it looked. Which
    /// byte is looked for (LF for inline commands, CR for length lines) depends only on the
    /// state at `pos`, so the memory stays valid until `pos` moves.
    fn find(&mut self, byte: u8) -> Option<usize> {
        let from = self.pos + self.scanned;
        match self.buf[from..].iter().position(|&b| b == byte) {
            Some(i) => Some(from + i),
            None => {
                self.scanned = self.buf.len() - self.pos;
                None
            }
        }
    }

    fn advance(&mut self, to: usize) {
        self.pos = to;
        self.scanned = 0;
    }
}
