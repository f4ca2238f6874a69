//! Decimal integers exactly as Redis reads and writes them.
//!
//! Redis accepts a number only in its canonical form (`string2ll` in `util.c`): an optional `-`,
//! no `+`, no leading zeros, no spaces, at most 20 bytes, within `i64`. The same rule decides
//! whether INCR sees an integer and whether a RESP length line is valid, so it lives here once.

/// Parses `s` as Redis's `string2ll` does; `None` where Redis would refuse it.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    // 20 bytes is "-9223372036854775808"; Redis rejects anything longer before looking at it.
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    // The first digit must be 1-9: this rules out "-", "-0", "007" and "+1".
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        // -(2^63) is the one magnitude that fits only on the negative side.
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// The longest decimal `i64`, `i64::MIN`, is 20 bytes.
pub(crate) const I64_MAX_LEN: usize = 20;

/// Formats `n` in decimal into the end of `buf` and returns the digits.
pub(crate) fn format_i64(n: i64, buf: &mut [u8; I64_MAX_LEN]) -> &[u8] {
    let mut magnitude = n.unsigned_abs();
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if n < 0 {
        start -= 1;
        buf[start] = b'-';
    }
    &buf[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parses_what_redis_parses() {
        let ok: &[(&[u8], i64)] = &[
            (b"0", 0),
            (b"1", 1),
            (b"-1", -1),
            (b"10", 10),
            (b"9223372036854775807", i64::MAX),
            (b"-9223372036854775808", i64::MIN),
        ];
        for &(s, n) in ok {
            assert_eq!(parse_i64(s), Some(n), "{:?}", core::str::from_utf8(s));
        }
    }

    #[test]
    fn refuses_what_redis_refuses() {
        let bad: &[&[u8]] = &[
            b"",
            b"-",
            b"+1",
            b"-0",
            b"00",
            b"01",
            b" 1",
            b"1 ",
            b"1a",
            b"0x10",
            b"1.0",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"18446744073709551616",
            b"99999999999999999999",
            b"000000000000000000001",
        ];
        for &s in bad {
            assert_eq!(parse_i64(s), None, "{:?}", core::str::from_utf8(s));
        }
    }

    #[test]
    fn formats_like_display() {
        let mut buf = [0; I64_MAX_LEN];
        for n in [
            0,
            1,
            -1,
            9,
            10,
            -10,
            12345,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ] {
            assert_eq!(format_i64(n, &mut buf), n.to_string().as_bytes());
            assert_eq!(parse_i64(format_i64(n, &mut buf)), Some(n));
        }
    }
}
