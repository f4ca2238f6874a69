//! Splitting an inline command (`SET key "hello world"`, typed into telnet or nc) into
//! arguments, exactly as Redis's `sdssplitargs` (`sds.c`) does.
//!
//! Outside quotes, arguments are separated by runs of spaces, tabs, CR and LF (and VT and FF
//! between words, but not inside one). `"..."` understands
//! `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a` and `\<any>`; `'...'` understands only `\'`. A closing
//! quote must be followed by whitespace or the end of the line. Like the C original, a NUL byte
//! ends the line.

use alloc::vec::Vec;

/// The arguments of `line`, or `None` for unbalanced quotes (Redis: "unbalanced quotes in
/// request").
pub(super) fn split(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // What the C code sees: the string up to the first NUL.
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let at = |i: usize| line.get(i).copied();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while at(i).is_some_and(is_space) {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        let mut quote = None;
        loop {
            match (quote, at(i)) {
                (Some(b'"'), Some(b'\\')) => {
                    let hex = match at(i + 1) {
                        Some(b'x') => hex_byte(at(i + 2), at(i + 3)),
                        _ => None,
                    };
                    if let Some(byte) = hex {
                        arg.push(byte);
                        i += 3;
                    } else if let Some(c) = at(i + 1) {
                        arg.push(match c {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                        i += 1;
                    } else {
                        // A backslash ending the line: the quotes never close.
                        return None;
                    }
                }
                (Some(b'\''), Some(b'\\')) if at(i + 1) == Some(b'\'') => {
                    arg.push(b'\'');
                    i += 1;
                }
                (Some(q), Some(c)) if c == q => {
                    if at(i + 1).is_some_and(|next| !is_space(next)) {
                        return None;
                    }
                    i += 1;
                    break;
                }
                (Some(_), None) => return None,
                (Some(_), Some(c)) => arg.push(c),
                (None, None) => break,
                // Not `is_space`: the C code ends a bare word on these four only.
                (None, Some(b' ' | b'\t' | b'\n' | b'\r')) => break,
                (None, Some(c @ (b'"' | b'\''))) => quote = Some(c),
                (None, Some(c)) => arg.push(c),
            }
            i += 1;
        }
        args.push(arg);
    }
}

/// C's `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// The byte written `\xHH`, if both digits are hex digits.
fn hex_byte(hi: Option<u8>, lo: Option<u8>) -> Option<u8> {
    let digit = |b: Option<u8>| (b? as char).to_digit(16);
    Some((digit(hi)? << 4 | digit(lo)?) as u8)
}
