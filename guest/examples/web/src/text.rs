//! Text in and out: HTML form bodies (`application/x-www-form-urlencoded`) in; HTML and JSON
//! out, escaped.

use alloc::string::String;
use alloc::vec::Vec;

/// Why a form body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormError {
    /// A `%` not followed by two hexadecimal digits.
    BadEscape,
    /// A field that is not UTF-8 once decoded.
    NotUtf8,
}

/// The fields of a form body, decoded (`+` is a space, `%XX` a byte), in order.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &[][..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// Decodes one form field.
fn decode(field: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        match field[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = field.get(i + 1..i + 3).ok_or(FormError::BadEscape)?;
                let (Some(high), Some(low)) = (hex_digit(hex[0]), hex_digit(hex[1])) else {
                    return Err(FormError::BadEscape);
                };
                out.push(high << 4 | low);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends `text` to `out`, escaped for HTML text and attribute values.
pub fn push_html(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Appends `text` to `out` as a JSON string, quotes included. Besides what JSON requires, `<`,
/// `>` and `&` are escaped too, so the text is inert even if something takes it for HTML.
pub fn push_json(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                let n = c as u32;
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(char::from(HEX[(n >> shift & 0xf) as usize]));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
