//! Redis glob patterns (KEYS): `*`, `?`, `[abc]`, `[^a]`, `[a-z]` and `\` escapes, with the
//! semantics of Redis's `stringmatchlen` (`util.c`), quirks included:
//! - a range may be written backwards (`[z-a]`) and compares bytes as signed `char`s, as Redis
//!   does on x86;
//! - an unterminated class (`[abc`) runs to the end of the pattern;
//! - a trailing lone `\` matches a `\`;
//! - the empty string matches only the empty pattern (KEYS `*` lists the empty key only because
//!   the KEYS command special-cases `*`).
//!
//! The pattern is compiled once into tokens and matched without recursion, in O(pattern x key)
//! time: Redis's recursive matcher gives up at 1000 nested stars, this one simply finishes.

use alloc::vec::Vec;

/// A compiled pattern.
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

enum Token {
    /// `*`: any run of bytes (consecutive stars are one token).
    Star,
    One(One),
}

/// A token that matches exactly one byte.
enum One {
    /// `?`
    Any,
    Byte(u8),
    Class {
        negate: bool,
        items: Vec<ClassItem>,
    },
}

enum ClassItem {
    Byte(u8),
    /// Inclusive, in signed-`char` order, `lo <= hi`.
    Range(i8, i8),
}

impl Pattern {
    pub(crate) fn new(pattern: &[u8]) -> Pattern {
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            let token = match pattern[i] {
                b'*' => {
                    while pattern.get(i + 1) == Some(&b'*') {
                        i += 1;
                    }
                    Token::Star
                }
                b'?' => Token::One(One::Any),
                b'[' => {
                    let (class, end) = class(pattern, i + 1);
                    i = end;
                    Token::One(class)
                }
                b'\\' if i + 1 < pattern.len() => {
                    i += 1;
                    Token::One(One::Byte(pattern[i]))
                }
                b => Token::One(One::Byte(b)),
            };
            tokens.push(token);
            i += 1;
        }
        Pattern { tokens }
    }

    pub(crate) fn matches(&self, s: &[u8]) -> bool {
        if s.is_empty() {
            return self.tokens.is_empty();
        }
        // Classic single-star backtracking: on a mismatch, let the most recent star swallow one
        // more byte and retry from just after it. Earlier stars never need revisiting.
        let (mut t, mut i) = (0, 0);
        let mut retry: Option<(usize, usize)> = None;
        while i < s.len() {
            match self.tokens.get(t) {
                Some(Token::Star) => {
                    t += 1;
                    retry = Some((t, i));
                    continue;
                }
                Some(Token::One(one)) if one.matches(s[i]) => {
                    t += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
            match retry {
                Some((after_star, from)) => {
                    t = after_star;
                    i = from + 1;
                    retry = Some((after_star, i));
                }
                None => return false,
            }
        }
        self.tokens[t..]
            .iter()
            .all(|token| matches!(token, Token::Star))
    }
}

/// Parses a class whose body starts at `i` (just after `[`). Returns it and the index of its
/// closing `]`, or of the pattern's last byte when the class is unterminated.
fn class(pattern: &[u8], mut i: usize) -> (One, usize) {
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut items = Vec::new();
    // The order of these tests is Redis's; it decides what `[\`, `[a-` and `[]` mean.
    loop {
        let left = pattern.len().saturating_sub(i);
        match pattern.get(i) {
            Some(b'\\') if left >= 2 => {
                items.push(ClassItem::Byte(pattern[i + 1]));
                i += 2;
            }
            Some(b']') => break,
            None => {
                i = pattern.len() - 1;
                break;
            }
            Some(&lo) if left >= 3 && pattern[i + 1] == b'-' => {
                let (lo, hi) = (lo as i8, pattern[i + 2] as i8);
                items.push(ClassItem::Range(lo.min(hi), lo.max(hi)));
                i += 3;
            }
            Some(&b) => {
                items.push(ClassItem::Byte(b));
                i += 1;
            }
        }
    }
    (One::Class { negate, items }, i)
}

impl One {
    fn matches(&self, b: u8) -> bool {
        match self {
            One::Any => true,
            One::Byte(p) => *p == b,
            One::Class { negate, items } => {
                let hit = items.iter().any(|item| match *item {
                    ClassItem::Byte(p) => p == b,
                    ClassItem::Range(lo, hi) => (lo..=hi).contains(&(b as i8)),
                });
                hit != *negate
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;
    use alloc::vec::Vec;

    // Generated by asking a real Redis 7.0 `KEYS pattern` over a database holding exactly KEYS.
    const KEYS: &[&[u8]] = &[
        b"a",
        b"b",
        b"ab",
        b"abc",
        b"aXc",
        b"abbc",
        b"hello",
        b"hallo",
        b"hxllo",
        b"heeeello",
        b"hllo",
        b"*",
        b"?",
        b"[",
        b"]",
        b"\\",
        b"-",
        b"^",
        b"a*c",
        b"a?c",
        b"a[c",
        b"a\\c",
        b"user:1",
        b"user:22",
        b"user:abc",
        b"A",
        b"Z",
        b"_",
        b"\x80",
        b"\xff",
        b"\x00",
        b"a-b",
        b"abcabcabc",
        b"ba",
        b"cab",
    ];
    /// Each pattern with the keys real Redis 7.0 lists for it.
    const EXPECTED: &[(&[u8], &[&[u8]])] = &[
        (
            b"*",
            &[
                b"\x00",
                b"*",
                b"-",
                b"?",
                b"A",
                b"Z",
                b"[",
                b"\\",
                b"]",
                b"^",
                b"_",
                b"a",
                b"a*c",
                b"a-b",
                b"a?c",
                b"aXc",
                b"a[c",
                b"a\\c",
                b"ab",
                b"abbc",
                b"abc",
                b"abcabcabc",
                b"b",
                b"ba",
                b"cab",
                b"hallo",
                b"heeeello",
                b"hello",
                b"hllo",
                b"hxllo",
                b"user:1",
                b"user:22",
                b"user:abc",
                b"\x80",
                b"\xff",
            ],
        ),
        (
            b"**",
            &[
                b"\x00",
                b"*",
                b"-",
                b"?",
                b"A",
                b"Z",
                b"[",
                b"\\",
                b"]",
                b"^",
                b"_",
                b"a",
                b"a*c",
                b"a-b",
                b"a?c",
                b"aXc",
                b"a[c",
                b"a\\c",
                b"ab",
                b"abbc",
                b"abc",
                b"abcabcabc",
                b"b",
                b"ba",
                b"cab",
                b"hallo",
                b"heeeello",
                b"hello",
                b"hllo",
                b"hxllo",
                b"user:1",
                b"user:22",
                b"user:abc",
                b"\x80",
                b"\xff",
            ],
        ),
        (
            b"a*",
            &[
                b"a",
                b"a*c",
                b"a-b",
                b"a?c",
                b"aXc",
                b"a[c",
                b"a\\c",
                b"ab",
                b"abbc",
                b"abc",
                b"abcabcabc",
            ],
        ),
        (
            b"*c",
            &[
                b"a*c",
                b"a?c",
                b"aXc",
                b"a[c",
                b"a\\c",
                b"abbc",
                b"abc",
                b"abcabcabc",
                b"user:abc",
            ],
        ),
        (
            b"a*c",
            &[
                b"a*c",
                b"a?c",
                b"aXc",
                b"a[c",
                b"a\\c",
                b"abbc",
                b"abc",
                b"abcabcabc",
            ],
        ),
        (
            b"*b*",
            &[
                b"a-b",
                b"ab",
                b"abbc",
                b"abc",
                b"abcabcabc",
                b"b",
                b"ba",
                b"cab",
                b"user:abc",
            ],
        ),
        (
            b"?",
            &[
                b"\x00", b"*", b"-", b"?", b"A", b"Z", b"[", b"\\", b"]", b"^", b"_", b"a", b"b",
                b"\x80", b"\xff",
            ],
        ),
        (b"??", &[b"ab", b"ba"]),
        (b"a?c", &[b"a*c", b"a?c", b"aXc", b"a[c", b"a\\c", b"abc"]),
        (b"h?llo", &[b"hallo", b"hello", b"hxllo"]),
        (
            b"h*llo",
            &[b"hallo", b"heeeello", b"hello", b"hllo", b"hxllo"],
        ),
        (b"h[ae]llo", &[b"hallo", b"hello"]),
        (b"h[^e]llo", &[b"hallo", b"hxllo"]),
        (b"h[a-b]llo", &[b"hallo"]),
        (b"[a-c]", &[b"a", b"b"]),
        (b"[c-a]", &[b"a", b"b"]),
        (
            b"[^a-c]",
            &[
                b"\x00", b"*", b"-", b"?", b"A", b"Z", b"[", b"\\", b"]", b"^", b"_", b"\x80",
                b"\xff",
            ],
        ),
        (b"[A-Z]", &[b"A", b"Z"]),
        (b"[a-]", &[b"]", b"^", b"_", b"a"]),
        (b"[-a]", &[b"-", b"a"]),
        (b"[]", &[]),
        (b"[]a]", &[]),
        (
            b"[^]",
            &[
                b"\x00", b"*", b"-", b"?", b"A", b"Z", b"[", b"\\", b"]", b"^", b"_", b"a", b"b",
                b"\x80", b"\xff",
            ],
        ),
        (b"[", &[]),
        (
            b"[^",
            &[
                b"\x00", b"*", b"-", b"?", b"A", b"Z", b"[", b"\\", b"]", b"^", b"_", b"a", b"b",
                b"\x80", b"\xff",
            ],
        ),
        (b"[abc", &[b"a", b"b"]),
        (b"[a-", &[b"-", b"a"]),
        (b"a\\*c", &[b"a*c"]),
        (b"a\\?c", &[b"a?c"]),
        (b"a\\[c", &[b"a[c"]),
        (b"\\", &[b"\\"]),
        (b"a\\", &[]),
        (b"\\a", &[b"a"]),
        (b"[\\]]", &[b"]"]),
        (b"[\\", &[b"\\"]),
        (b"[\\-]", &[b"-"]),
        (b"*\\*", &[b"*"]),
        (b"user:*", &[b"user:1", b"user:22", b"user:abc"]),
        (b"user:?", &[b"user:1"]),
        (b"user:[0-9]*", &[b"user:1", b"user:22"]),
        (b"user:[0-9][0-9]", &[b"user:22"]),
        (b"*a*b*c*", &[b"abbc", b"abc", b"abcabcabc", b"user:abc"]),
        (b"*abc", &[b"abc", b"abcabcabc", b"user:abc"]),
        (b"abc*abc", &[b"abcabcabc"]),
        (
            b"[\x00-\x7f]",
            &[
                b"\x00", b"*", b"-", b"?", b"A", b"Z", b"[", b"\\", b"]", b"^", b"_", b"a", b"b",
            ],
        ),
        (b"[\x80-\xff]", &[b"\x80", b"\xff"]),
        (
            b"[\x7f-\x80]",
            &[
                b"\x00", b"*", b"-", b"?", b"A", b"Z", b"[", b"\\", b"]", b"^", b"_", b"a", b"b",
                b"\x80", b"\xff",
            ],
        ),
        (
            b"[!-~]",
            &[
                b"*", b"-", b"?", b"A", b"Z", b"[", b"\\", b"]", b"^", b"_", b"a", b"b",
            ],
        ),
        (
            b"?*",
            &[
                b"\x00",
                b"*",
                b"-",
                b"?",
                b"A",
                b"Z",
                b"[",
                b"\\",
                b"]",
                b"^",
                b"_",
                b"a",
                b"a*c",
                b"a-b",
                b"a?c",
                b"aXc",
                b"a[c",
                b"a\\c",
                b"ab",
                b"abbc",
                b"abc",
                b"abcabcabc",
                b"b",
                b"ba",
                b"cab",
                b"hallo",
                b"heeeello",
                b"hello",
                b"hllo",
                b"hxllo",
                b"user:1",
                b"user:22",
                b"user:abc",
                b"\x80",
                b"\xff",
            ],
        ),
        (
            b"*?",
            &[
                b"\x00",
                b"*",
                b"-",
                b"?",
                b"A",
                b"Z",
                b"[",
                b"\\",
                b"]",
                b"^",
                b"_",
                b"a",
                b"a*c",
                b"a-b",
                b"a?c",
                b"aXc",
                b"a[c",
                b"a\\c",
                b"ab",
                b"abbc",
                b"abc",
                b"abcabcabc",
                b"b",
                b"ba",
                b"cab",
                b"hallo",
                b"heeeello",
                b"hello",
                b"hllo",
                b"hxllo",
                b"user:1",
                b"user:22",
                b"user:abc",
                b"\x80",
                b"\xff",
            ],
        ),
        (
            b"*??*",
            &[
                b"a*c",
                b"a-b",
                b"a?c",
                b"aXc",
                b"a[c",
                b"a\\c",
                b"ab",
                b"abbc",
                b"abc",
                b"abcabcabc",
                b"ba",
                b"cab",
                b"hallo",
                b"heeeello",
                b"hello",
                b"hllo",
                b"hxllo",
                b"user:1",
                b"user:22",
                b"user:abc",
            ],
        ),
        (b"", &[]),
        (
            b"a**",
            &[
                b"a",
                b"a*c",
                b"a-b",
                b"a?c",
                b"aXc",
                b"a[c",
                b"a\\c",
                b"ab",
                b"abbc",
                b"abc",
                b"abcabcabc",
            ],
        ),
        (
            b"**c",
            &[
                b"a*c",
                b"a?c",
                b"aXc",
                b"a[c",
                b"a\\c",
                b"abbc",
                b"abc",
                b"abcabcabc",
                b"user:abc",
            ],
        ),
        (b"[*]", &[b"*"]),
        (b"[?]", &[b"?"]),
        (b"[[]", &[b"["]),
        (b"\\[", &[b"["]),
        (b"[a-c]b*", &[b"ab", b"abbc", b"abc", b"abcabcabc"]),
    ];

    #[test]
    fn matches_what_redis_matches() {
        for &(pattern, expected) in EXPECTED {
            let compiled = Pattern::new(pattern);
            let mut found: Vec<&[u8]> = KEYS
                .iter()
                .copied()
                .filter(|key| compiled.matches(key))
                .collect();
            found.sort_unstable();
            assert_eq!(found, expected, "pattern {}", pattern.escape_ascii());
        }
    }

    #[test]
    fn the_empty_string_matches_only_the_empty_pattern() {
        assert!(Pattern::new(b"").matches(b""));
        for pattern in [&b"*"[..], b"**", b"?", b"[^a]"] {
            assert!(
                !Pattern::new(pattern).matches(b""),
                "{}",
                pattern.escape_ascii()
            );
        }
    }

    #[test]
    fn backtracking_is_not_exponential() {
        // Redis needed a fix (CVE-2022-36021) for patterns like this one; here it is linear in
        // the key for each star, and would take astronomically long if it were exponential.
        let key = [b'a'; 5000];
        let pattern = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        assert!(!Pattern::new(pattern).matches(&key));
        assert!(Pattern::new(&pattern[..pattern.len() - 2]).matches(&key));
    }
}
