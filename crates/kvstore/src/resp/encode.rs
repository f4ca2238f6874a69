//! Writing RESP2 replies into a connection's output buffer.
//!
//! Each function appends one complete value; arrays are a header followed by their elements.

use alloc::vec::Vec;

use crate::num::{format_i64, I64_MAX_LEN};

/// `+s\r\n`. `s` must not contain CR or LF (every caller passes a constant).
pub fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `-msg\r\n`, where `msg` starts with the error code (`ERR ...`, `WRONGTYPE ...`).
///
/// Messages may quote client input (an unknown command's name, say), so CR and LF become spaces,
/// as Redis does: a reply that ends early would desynchronise the client.
pub fn error(out: &mut Vec<u8>, msg: &[u8]) {
    out.push(b'-');
    out.extend(
        msg.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `:n\r\n`.
pub fn integer(out: &mut Vec<u8>, n: i64) {
    prefixed_number(out, b':', n);
}

/// `$len\r\nbytes\r\n`: binary safe.
pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    prefixed_number(out, b'$', bytes.len() as i64);
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// `$-1\r\n`, RESP2's "no value" (GET of a missing key).
pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// `*len\r\n`: the caller appends `len` values after it.
pub fn array(out: &mut Vec<u8>, len: usize) {
    prefixed_number(out, b'*', len as i64);
}

fn prefixed_number(out: &mut Vec<u8>, prefix: u8, n: i64) {
    let mut digits = [0; I64_MAX_LEN];
    out.push(prefix);
    out.extend_from_slice(format_i64(n, &mut digits));
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn every_kind() {
        let mut out = Vec::new();
        simple(&mut out, "OK");
        error(&mut out, b"ERR bad\r\nthing\n");
        integer(&mut out, -42);
        integer(&mut out, i64::MIN);
        bulk(&mut out, b"a\r\n\0b");
        bulk(&mut out, b"");
        null(&mut out);
        array(&mut out, 2);
        assert_eq!(
            out,
            b"+OK\r\n-ERR bad  thing \r\n:-42\r\n:-9223372036854775808\r\n$5\r\na\r\n\0b\r\n$0\r\n\r\n$-1\r\n*2\r\n"
        );
        let mut empty = vec![];
        array(&mut empty, 0);
        assert_eq!(empty, b"*0\r\n");
    }
}
