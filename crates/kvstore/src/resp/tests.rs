//! The parser against every request form, every way of splitting the input, the limits and
//! garbage. Expected replies and inline splits were checked against a real Redis 7.0.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;

/// Feeds `chunks` one by one, draining commands after each, as a server does. Stops at the
/// first error.
fn parse_chunks(limits: Limits, chunks: &[&[u8]]) -> (Vec<Command>, Option<ProtocolError>) {
    let mut parser = Parser::new(limits);
    let mut commands = Vec::new();
    for chunk in chunks {
        if let Err(e) = parser.feed(chunk) {
            return (commands, Some(e));
        }
        loop {
            match parser.next_command() {
                Ok(Some(command)) => commands.push(command),
                Ok(None) => break,
                Err(e) => return (commands, Some(e)),
            }
        }
    }
    (commands, None)
}

fn parse(input: &[u8]) -> (Vec<Command>, Option<ProtocolError>) {
    parse_chunks(Limits::default(), &[input])
}

fn words(words: &[&[u8]]) -> Command {
    words.iter().map(|w| w.to_vec()).collect()
}

/// `words` as the RESP array a client library sends.
fn array(args: &[&[u8]]) -> Vec<u8> {
    let mut out = alloc::format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(alloc::format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn arrays_of_bulk_strings() {
    assert_eq!(
        parse(b"*1\r\n$4\r\nPING\r\n"),
        (vec![words(&[b"PING"])], None)
    );
    assert_eq!(
        parse(&array(&[b"SET", b"k", b""])),
        (vec![words(&[b"SET", b"k", b""])], None)
    );
    let binary: &[u8] = b"\0\r\n\xff*$\r\n";
    assert_eq!(
        parse(&array(&[b"SET", binary, binary])),
        (vec![words(&[b"SET", binary, binary])], None)
    );
    // Empty arrays are skipped without a reply, like Redis.
    assert_eq!(
        parse(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n"),
        (vec![words(&[b"PING"])], None)
    );
}

#[test]
fn inline_commands() {
    let cases: &[(&[u8], &[&[u8]])] = &[
        (b"PING\r\n", &[b"PING"]),
        (b"ping\n", &[b"ping"]),
        (b"SET  \t  t1   v1  \r\n", &[b"SET", b"t1", b"v1"]),
        (
            b"SET \"a b\" \"c\\x41\\n\\\"d\" \r\n",
            &[b"SET", b"a b", b"cA\n\"d"],
        ),
        (b"SET 'x y' 'it\\'s'\r\n", &[b"SET", b"x y", b"it's"]),
        (
            b"PING \"\\q\\a\\b\\t\\r\\n\"\r\n",
            &[b"PING", b"q\x07\x08\t\r\n"],
        ),
        (b"PING \"\\x4\"\r\n", &[b"PING", b"x4"]),
        (b"PING \"\\x4g\"\r\n", &[b"PING", b"x4g"]),
        (b"PING a\x0bb\r\n", &[b"PING", b"a\x0bb"]),
        (b"PING \x0ba\x0c\r\n", &[b"PING", b"a\x0c"]),
        (b"PING \"\"\r\n", &[b"PING", b""]),
        (b"PING ''\r\n", &[b"PING", b""]),
        (b"PING a\"b c\"\r\n", &[b"PING", b"ab c"]),
        (b"PING '\\x41'\r\n", &[b"PING", b"\\x41"]),
        (b"PING '\\\"'\r\n", &[b"PING", b"\\\""]),
        // As for Redis's C string, a NUL ends the line.
        (b"GET a\0 b\r\n", &[b"GET", b"a"]),
    ];
    for &(input, expected) in cases {
        assert_eq!(
            parse(input),
            (vec![words(expected)], None),
            "{:?}",
            input.escape_ascii().to_string()
        );
    }
    // Blank lines are skipped without a reply.
    assert_eq!(
        parse(b"\r\n\n  \r\n\t\nPING\r\n"),
        (vec![words(&[b"PING"])], None)
    );
}

#[test]
fn unbalanced_quotes() {
    for input in [
        &b"SET \"a\r\n"[..],
        b"SET 'a\r\n",
        b"SET \"a\"b c\r\n",
        b"PING \"\"\"\r\n",
        b"PING \"x\\\r\n",
    ] {
        assert_eq!(
            parse(input),
            (vec![], Some(ProtocolError::UnbalancedQuotes))
        );
    }
}

/// A stream with every form, pipelined; the commands it holds.
fn mixed_stream() -> (Vec<u8>, Vec<Command>) {
    let mut stream = Vec::new();
    stream.extend_from_slice(&array(&[b"SET", b"key:1", b"a\r\nb"]));
    stream.extend_from_slice(b"GET key:1\r\n");
    stream.extend_from_slice(b"*0\r\n");
    stream.extend_from_slice(&array(&[b"DEL", b"", b"x"]));
    stream.extend_from_slice(b"\r\nSET \"q x\" 'y z'\n");
    stream.extend_from_slice(&array(&[b"PING"]));
    let commands = vec![
        words(&[b"SET", b"key:1", b"a\r\nb"]),
        words(&[b"GET", b"key:1"]),
        words(&[b"DEL", b"", b"x"]),
        words(&[b"SET", b"q x", b"y z"]),
        words(&[b"PING"]),
    ];
    (stream, commands)
}

#[test]
fn any_split_of_the_input_gives_the_same_commands() {
    let (stream, expected) = mixed_stream();
    for i in 0..=stream.len() {
        for j in i..=stream.len() {
            let chunks = [&stream[..i], &stream[i..j], &stream[j..]];
            assert_eq!(
                parse_chunks(Limits::default(), &chunks),
                (expected.clone(), None),
                "split at {i}, {j}"
            );
        }
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(parse_chunks(Limits::default(), &bytes), (expected, None));
}

#[test]
fn pipelined_commands_in_one_chunk() {
    let mut stream = Vec::new();
    for i in 0..1000 {
        if i % 2 == 0 {
            stream.extend_from_slice(&array(&[b"SET", alloc::format!("k{i}").as_bytes(), b"v"]));
        } else {
            stream.extend_from_slice(alloc::format!("GET k{i}\r\n").as_bytes());
        }
    }
    let (commands, error) = parse(&stream);
    assert_eq!((commands.len(), error), (1000, None));
    assert_eq!(commands[998], words(&[b"SET", b"k998", b"v"]));
    assert_eq!(commands[999], words(&[b"GET", b"k999"]));
}

#[test]
fn malformed_requests_get_redis_errors() {
    let cases: &[(&[u8], &[u8])] = &[
        (
            b"*x\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*01\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*2147483648\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n:1\r\n",
            b"-ERR Protocol error: expected '$', got ':'\r\n",
        ),
        (
            b"*1\r\n+OK\r\n",
            b"-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"*1\r\n\r\n",
            b"-ERR Protocol error: expected '$', got ' '\r\n",
        ),
        (
            b"*1\r\n\xfe\r\n",
            b"-ERR Protocol error: expected '$', got '\xfe'\r\n",
        ),
        (
            b"*1\r\n$x\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$-1\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$04\r\nPING\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$1\n\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1x\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\rx",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$4\r\nPINGxx",
            b"-ERR Protocol error: expected CRLF after bulk data\r\n",
        ),
        (
            b"\"\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for &(input, reply) in cases {
        let (commands, error) = parse(input);
        let error = error.unwrap_or_else(|| panic!("{} parsed", input.escape_ascii()));
        let mut out = Vec::new();
        error.write_reply(&mut out);
        assert_eq!(
            (commands, out.escape_ascii().to_string()),
            (vec![], reply.escape_ascii().to_string())
        );
    }
}

#[test]
fn errors_are_final() {
    let mut parser = Parser::default();
    parser.feed(b"*x\r\nPING\r\n").unwrap();
    assert_eq!(
        parser.next_command(),
        Err(ProtocolError::InvalidMultibulkLength)
    );
    assert_eq!(
        parser.next_command(),
        Err(ProtocolError::InvalidMultibulkLength)
    );
    assert_eq!(
        parser.feed(b"PING\r\n"),
        Err(ProtocolError::InvalidMultibulkLength)
    );
}

fn small_limits() -> Limits {
    Limits {
        max_bulk: 10,
        max_args: 4,
        max_inline: 16,
        max_command: 25,
        max_buffer: 64,
    }
}

#[test]
fn limits_are_enforced_at_their_bounds() {
    let limits = small_limits();
    let ok = |input: &[u8]| {
        let (commands, error) = parse_chunks(limits, &[input]);
        assert_eq!(
            (commands.len(), error),
            (1, None),
            "{}",
            input.escape_ascii()
        );
    };
    let fails = |input: &[u8], expected: ProtocolError| {
        // Refused whether the input comes at once or a byte at a time.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        for chunks in [vec![input], bytes] {
            assert_eq!(
                parse_chunks(limits, &chunks),
                (vec![], Some(expected)),
                "{}",
                input.escape_ascii()
            );
        }
    };
    ok(&array(&[b"0123456789"]));
    fails(&array(&[b"0123456789x"]), ProtocolError::InvalidBulkLength);
    ok(&array(&[b"a", b"b", b"c", b"d"]));
    fails(
        &array(&[b"a", b"b", b"c", b"d", b"e"]),
        ProtocolError::InvalidMultibulkLength,
    );
    ok(&array(&[b"0123456789", b"0123456789", b"01234"]));
    fails(
        &array(&[b"0123456789", b"0123456789", b"012345"]),
        ProtocolError::TooBigCommand,
    );
    ok(b"0123456789abcdef\r\n");
    fails(b"0123456789abcdefg\r\n", ProtocolError::TooBigInline);
    fails(b"0123456789abcdefg", ProtocolError::TooBigInline);
    fails(b"*00000000000000001", ProtocolError::TooBigMultibulkCount);
    fails(b"*1\r\n$00000000000000001", ProtocolError::TooBigBulkCount);
    // Within the limit and incomplete: the parser waits.
    assert_eq!(parse_chunks(limits, &[b"0123456789abcdef"]), (vec![], None));
    assert_eq!(
        parse_chunks(limits, &[b"*1\r\n$10\r\n012345678"]),
        (vec![], None)
    );
}

#[test]
fn the_buffer_is_bounded() {
    let limits = small_limits();
    let mut parser = Parser::new(limits);
    // Up to the bound without draining, then no further.
    parser.feed(&[b'x'; 60]).unwrap();
    parser.feed(&[b'x'; 4]).unwrap();
    assert_eq!(parser.feed(b"x"), Err(ProtocolError::TooMuchInput));

    // Drained input does not count: pipelined commands flow through a bounded buffer.
    let mut parser = Parser::new(limits);
    for _ in 0..100 {
        parser.feed(b"PING\r\nPING\r\nPING\r\nPI").unwrap();
        while parser.next_command().unwrap().is_some() {}
        parser.feed(b"NG\r\n").unwrap();
        assert_eq!(parser.next_command(), Ok(Some(words(&[b"PING"]))));
    }
}

/// Requests: valid ones in either form, or arbitrary bytes.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let arg = prop::collection::vec(any::<u8>(), 0..20);
    let args = prop::collection::vec(arg, 1..5);
    prop_oneof![
        args.prop_map(|args| array(&args.iter().map(Vec::as_slice).collect::<Vec<_>>())),
        "[a-zA-Z \"'\\\\]{0,10}\r?\n".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..10),
    ]
}

proptest! {
    /// However TCP splits a stream, valid or not, the parser sees the same commands and the same
    /// error, and never panics.
    #[test]
    fn chunking_never_matters(requests in prop::collection::vec(request(), 0..8), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let stream = requests.concat();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            chunks.push(&stream[from..cut]);
            from = cut;
        }
        prop_assert_eq!(parse_chunks(Limits::default(), &chunks), parse(&stream));
    }

    /// Every array a client can send comes out as it went in.
    #[test]
    fn arrays_round_trip(commands in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6), 1..6)) {
        let stream: Vec<u8> = commands.iter().flat_map(|c| array(&c.iter().map(Vec::as_slice).collect::<Vec<_>>())).collect();
        prop_assert_eq!(parse(&stream), (commands, None));
    }
}
