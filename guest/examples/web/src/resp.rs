//! RESP, the Redis serialization protocol (version 2): commands are encoded as arrays of bulk
//! strings; replies are parsed incrementally from whatever part of them has arrived.
//!
//! Everything the server sends is checked: a malformed reply, or one larger than the limits
//! below, is a [`ProtocolError`] rather than an allocation the server chose.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The longest bulk string accepted in a reply. An entry is at most about 1.1 KiB; this leaves
/// room for values other writers put in the same database.
pub const MAX_BULK: usize = 1 << 20;

/// The most elements accepted in one array reply.
const MAX_ARRAY: usize = 1 << 16;

/// The deepest nesting of arrays accepted.
const MAX_DEPTH: usize = 8;

/// The longest line (simple string, error, integer or length) accepted, CRLF included.
const MAX_LINE: usize = 4096;

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`: the server refused the command.
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3 foo`
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`: no such value.
    Null,
    /// `*2 ...`
    Array(Vec<Value>),
}

/// A reply that breaks the protocol (or the limits above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "malformed reply: {}", self.0)
    }
}

/// Appends the command `args` (`["GET", "key"]`) to `out`, as a RESP array of bulk strings.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(out, arg.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Parses the reply at the start of `buf`: the reply and how many bytes it took, or `None` if
/// `buf` holds only part of it.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let mut pos = 0;
    Ok(value(buf, &mut pos, 0)?.map(|v| (v, pos)))
}

fn value(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Value>, ProtocolError> {
    let Some(line) = line(buf, pos)? else {
        return Ok(None);
    };
    let (&kind, rest) = line.split_first().ok_or(ProtocolError("an empty line"))?;
    Ok(Some(match kind {
        b'+' => Value::Simple(String::from_utf8_lossy(rest).into_owned()),
        b'-' => Value::Error(String::from_utf8_lossy(rest).into_owned()),
        b':' => Value::Integer(integer(rest)?),
        b'$' => {
            let len = integer(rest)?;
            if len == -1 {
                return Ok(Some(Value::Null));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= MAX_BULK)
                .ok_or(ProtocolError("a bulk string of a bad or too large length"))?;
            let start = *pos;
            let end = start + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("a bulk string longer than its length"));
            }
            *pos = end + 2;
            Value::Bulk(buf[start..end].to_vec())
        }
        b'*' => {
            let len = integer(rest)?;
            if len == -1 {
                return Ok(Some(Value::Null));
            }
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= MAX_ARRAY)
                .ok_or(ProtocolError("an array of a bad or too large length"))?;
            if depth >= MAX_DEPTH {
                return Err(ProtocolError("arrays nested too deep"));
            }
            // Not `with_capacity(len)`: the length is the server's word, the elements are not
            // here yet.
            let mut elements = Vec::new();
            for _ in 0..len {
                match value(buf, pos, depth + 1)? {
                    Some(element) => elements.push(element),
                    None => return Ok(None),
                }
            }
            Value::Array(elements)
        }
        _ => return Err(ProtocolError("an unknown reply type")),
    }))
}

/// The line at `*pos` without its CRLF, moving `*pos` past it; `None` if it is incomplete.
fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, ProtocolError> {
    let rest = &buf[*pos..];
    match rest.iter().take(MAX_LINE).position(|&b| b == b'\n') {
        Some(0) => Err(ProtocolError("a line without CR")),
        Some(lf) => {
            if rest[lf - 1] != b'\r' {
                return Err(ProtocolError("a line without CR"));
            }
            *pos += lf + 1;
            Ok(Some(&rest[..lf - 1]))
        }
        None if rest.len() >= MAX_LINE => Err(ProtocolError("a line too long")),
        None => Ok(None),
    }
}

/// A RESP integer: an optional `-` and decimal digits, within `i64`.
fn integer(text: &[u8]) -> Result<i64, ProtocolError> {
    const BAD: ProtocolError = ProtocolError("a bad integer");
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return Err(BAD);
    }
    // Accumulated negatively, so that i64::MIN fits.
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(BAD);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_sub(i64::from(d - b'0')))
            .ok_or(BAD)?;
    }
    if negative {
        Ok(n)
    } else {
        n.checked_neg().ok_or(BAD)
    }
}
