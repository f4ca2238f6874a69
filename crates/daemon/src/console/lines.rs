//! Cutting a console's bytes into lines of at most [`MAX_LINE`] bytes, holding no more than
//! that: a guest that never writes a newline costs one line's worth of memory, not its output.

/// The longest line kept: a longer one is cut into lines of this many bytes (fewer where a
/// cut would split a UTF-8 character).
pub const MAX_LINE: usize = 4096;

/// The bytes of a console's current line, until its newline or [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub struct Lines {
    /// Never more than `MAX_LINE` bytes.
    partial: Vec<u8>,
}

impl Lines {
    /// An empty line.
    pub fn new() -> Lines {
        Lines::default()
    }

    /// Takes the next `bytes` of the console and calls `line` with each line they complete,
    /// without its newline: at a newline, or at [`MAX_LINE`] bytes without one.
    pub fn feed(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            if self.partial.len() == MAX_LINE {
                // A full line: the next byte says whether it ended here or goes on.
                if bytes[0] == b'\n' {
                    line(&self.partial);
                    self.partial.clear();
                    bytes = &bytes[1..];
                } else {
                    self.cut(&mut line);
                }
                continue;
            }
            let room = MAX_LINE - self.partial.len();
            let look = &bytes[..bytes.len().min(room)];
            let Some(end) = look.iter().position(|&b| b == b'\n') else {
                self.partial.extend_from_slice(look);
                bytes = &bytes[look.len()..];
                continue;
            };
            if self.partial.is_empty() {
                line(&look[..end]);
            } else {
                self.partial.extend_from_slice(&look[..end]);
                line(&self.partial);
                self.partial.clear();
            }
            bytes = &bytes[end + 1..];
        }
    }

    /// The console ended: calls `line` with what is left of the last line, if anything.
    pub fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(&self.partial);
            self.partial.clear();
        }
    }

    /// Emits the full line, except a UTF-8 character its end would split: that one starts the
    /// next line.
    fn cut(&mut self, line: &mut impl FnMut(&[u8])) {
        let at = utf8_cut(&self.partial);
        line(&self.partial[..at]);
        self.partial.drain(..at);
    }
}

/// Where to cut `bytes` so as not to split a UTF-8 character at its end: `bytes.len()`, or
/// the start of an incomplete character in its last 3 bytes (never 0: bytes that are not UTF-8
/// are cut anywhere).
fn utf8_cut(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=3.min(len) {
        let b = bytes[len - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: its lead is further back
        }
        let width = match b {
            0b1100_0000..=0b1101_1111 => 2,
            0b1110_0000..=0b1110_1111 => 3,
            0b1111_0000..=0b1111_0111 => 4,
            _ => 1,
        };
        return if width > back && back < len {
            len - back
        } else {
            len
        };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `chunks` fed one after the other, and what `finish` adds.
    fn lines(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut l = Lines::new();
        let mut out = Vec::new();
        for c in chunks {
            l.feed(c, |line| out.push(line.to_vec()));
            assert!(l.partial.len() <= MAX_LINE);
        }
        l.finish(|line| out.push(line.to_vec()));
        out
    }

    #[test]
    fn newlines_end_lines_across_chunks() {
        assert_eq!(
            lines(&[b"one\ntw", b"o\n\nthr", b"ee"]),
            [&b"one"[..], b"two", b"", b"three"]
        );
        assert_eq!(lines(&[b"\n"]), [b""]);
        assert!(lines(&[b"", b""]).is_empty());
    }

    #[test]
    fn a_line_without_newline_is_cut_every_max_line_bytes() {
        let flood = vec![b'x'; 10 * MAX_LINE + 5];
        // However it arrives: at once, or a byte or 3000 bytes at a time.
        for size in [flood.len(), 1, 3000] {
            let chunks: Vec<&[u8]> = flood.chunks(size).collect();
            let out = lines(&chunks);
            assert_eq!(out.len(), 11, "chunks of {size}");
            assert!(out[..10].iter().all(|l| l.len() == MAX_LINE));
            assert_eq!(out[10].len(), 5);
        }
    }

    #[test]
    fn a_line_of_exactly_max_line_bytes_is_one_line() {
        let mut line = vec![b'y'; MAX_LINE];
        line.push(b'\n');
        line.extend_from_slice(b"next\n");
        for split in [MAX_LINE, MAX_LINE + 1, 10, line.len()] {
            let (a, b) = line.split_at(split);
            let out = lines(&[a, b]);
            assert_eq!(out.len(), 2, "split at {split}");
            assert_eq!(out[0].len(), MAX_LINE);
            assert_eq!(out[1], b"next");
        }
    }

    #[test]
    fn a_cut_does_not_split_a_utf8_character() {
        // 4095 bytes, then a 3-byte character: the cut comes before it.
        let mut text = vec![b'a'; MAX_LINE - 1];
        text.extend_from_slice("€".as_bytes());
        text.extend_from_slice(b"b");
        let out = lines(&[&text]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE - 1);
        assert_eq!(out[1], "€b".as_bytes());
        assert!(out.iter().all(|l| std::str::from_utf8(l).is_ok()));
        // Bytes that are not UTF-8 are cut all the same, none lost.
        let junk = vec![0xe2; 3 * MAX_LINE];
        let out = lines(&[&junk]);
        assert!(out.iter().all(|l| (1..=MAX_LINE).contains(&l.len())));
        assert_eq!(out.iter().map(Vec::len).sum::<usize>(), junk.len());
    }

    #[test]
    fn utf8_cuts() {
        assert_eq!(utf8_cut(b"abc"), 3);
        assert_eq!(utf8_cut("a€".as_bytes()), 4);
        assert_eq!(utf8_cut(&"a€".as_bytes()[..3]), 1);
        assert_eq!(utf8_cut(&"a€".as_bytes()[..2]), 1);
        assert_eq!(utf8_cut(&"a😀".as_bytes()[..4]), 1);
        assert_eq!(utf8_cut(&"😀".as_bytes()[..3]), 3, "never an empty line");
        assert_eq!(utf8_cut(b"a\x80\x80\x80"), 4);
        assert_eq!(utf8_cut(b""), 0);
    }
}
