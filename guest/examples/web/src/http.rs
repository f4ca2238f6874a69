//! HTTP/1.1 server connections: reading requests (parsed by `httparse`), writing responses.
//!
//! Everything a client sends is hostile. A connection is persistent unless the client asks
//! otherwise (`Connection: close`, or HTTP/1.0 without `Connection: keep-alive`), and requests
//! may be pipelined. Limits, each answered with a status and the end of the connection:
//!
//! - request line and headers: at most [`HEAD_LIMIT`] bytes (431) and [`MAX_HEADERS`] headers
//!   (431), received within the header timeout from their first byte (408), so a client that
//!   trickles a request (slowloris) cannot hold a connection for long;
//! - a body: `Content-Length` only, at most [`BODY_LIMIT`] bytes (413), received within the
//!   body timeout (408); `Transfer-Encoding` (chunked bodies) is not supported (411);
//! - anything malformed: 400 (and 505 for an HTTP version other than 1.0 and 1.1).
//!
//! A connection idle between requests for longer than the idle timeout is closed; so is one
//! whose client does not take its response within the write timeout.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::time::Duration;

use sturdy_rt::{timeout, Instant, NetError, TcpStream};

/// The longest request line and headers, final empty line included.
pub const HEAD_LIMIT: usize = 8 * 1024;

/// The most headers in a request.
pub const MAX_HEADERS: usize = 64;

/// The longest request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long a connection may stay, as the server sees it.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Between requests (keep-alive), until the first byte of the next one.
    pub idle: Duration,
    /// From the first byte of a request to the end of its headers.
    pub header: Duration,
    /// For a request's body, from the end of its headers.
    pub body: Duration,
    /// For the client to take a response.
    pub write: Duration,
}

/// The request methods the guestbook knows; any other is [`Method::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Other,
}

/// A request, its body read.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The path of the request target, without the query.
    pub path: String,
    /// `Content-Type`, if given.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Whether the client wants the connection kept open after the response.
    pub keep_alive: bool,
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// `Location`, for redirections.
    pub location: Option<&'static str>,
    /// `Allow`, for 405.
    pub allow: Option<&'static str>,
    /// End the connection after this response, whatever the client asked.
    pub close: bool,
}

impl Response {
    /// A response with a body of type `content_type`.
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            body,
            location: None,
            allow: None,
            close: false,
        }
    }

    /// A plain-text response: `text` and a newline.
    pub fn text(status: u16, text: &str) -> Response {
        let mut body = Vec::with_capacity(text.len() + 1);
        body.extend_from_slice(text.as_bytes());
        body.push(b'\n');
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    /// A plain-text response after which the connection ends.
    pub fn fatal(status: u16, text: &str) -> Response {
        Response {
            close: true,
            ..Response::text(status, text)
        }
    }
}

/// Why no request came.
#[derive(Debug)]
pub enum Failure {
    /// The connection ended, failed or stayed idle: close it without a word.
    Closed,
    /// The request is refused: send this response, then close the connection.
    Refuse(Response),
}

/// A client's connection.
pub struct Connection {
    stream: TcpStream,
    /// Received bytes not consumed yet: at most the head of one request (and what follows it).
    buf: Vec<u8>,
    filled: usize,
    timeouts: Timeouts,
}

impl Connection {
    pub fn new(stream: TcpStream, timeouts: Timeouts) -> Connection {
        Connection {
            stream,
            buf: Vec::new(),
            filled: 0,
            timeouts,
        }
    }

    /// Reads the next request, body included.
    pub async fn request(&mut self) -> Result<Request, Failure> {
        if self.buf.is_empty() {
            // Allocated on the first request, so that idle accepted connections cost little.
            self.buf = vec![0; HEAD_LIMIT];
        }
        if self.filled == 0 {
            // Keep-alive: wait for the next request, at most the idle timeout.
            match timeout(self.timeouts.idle, self.fill()).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err(Failure::Closed),
            }
        }
        let deadline = Instant::now() + self.timeouts.header;
        let (head, head_len) = loop {
            match parse_head(&self.buf[..self.filled])? {
                Some(parsed) => break parsed,
                None if self.filled == HEAD_LIMIT => {
                    return Err(Failure::Refuse(Response::fatal(
                        431,
                        "request line and headers too large (limit 8 KiB)",
                    )))
                }
                None => match self.fill_before(deadline).await {
                    Ok(0) => {
                        return Err(Failure::Refuse(Response::fatal(400, "incomplete request")))
                    }
                    Ok(_) => {}
                    Err(ReadError::TimedOut) => {
                        return Err(Failure::Refuse(Response::fatal(
                            408,
                            "request headers not received in time",
                        )))
                    }
                    Err(ReadError::Net) => return Err(Failure::Closed),
                },
            }
        };
        self.consume(head_len);
        let body = self.body(&head).await?;
        Ok(Request {
            method: head.method,
            path: head.path,
            content_type: head.content_type,
            body,
            keep_alive: head.keep_alive,
        })
    }

    /// Reads the body the head announces.
    async fn body(&mut self, head: &Head) -> Result<Vec<u8>, Failure> {
        let len = head.content_length;
        if len == 0 {
            return Ok(Vec::new());
        }
        let buffered = self.filled.min(len);
        if head.expect_continue && buffered < len {
            // The client waits for this before sending the body.
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| Failure::Closed)?;
        }
        let mut body = vec![0; len];
        body[..buffered].copy_from_slice(&self.buf[..buffered]);
        self.consume(buffered);
        let deadline = Instant::now() + self.timeouts.body;
        let mut got = buffered;
        while got < len {
            let read = timeout(
                deadline.duration_since(Instant::now()),
                self.stream.read(&mut body[got..]),
            )
            .await;
            match read {
                Ok(Ok(0)) => {
                    return Err(Failure::Refuse(Response::fatal(
                        400,
                        "request body shorter than its Content-Length",
                    )))
                }
                Ok(Ok(n)) => got += n,
                Ok(Err(_)) => return Err(Failure::Closed),
                Err(_) => {
                    return Err(Failure::Refuse(Response::fatal(
                        408,
                        "request body not received in time",
                    )))
                }
            }
        }
        Ok(body)
    }

    /// Sends `response` to a request (of method `method`: a HEAD gets no body) and says whether
    /// the connection may serve another request.
    pub async fn respond(&mut self, response: &Response, method: Method, keep_alive: bool) -> bool {
        let keep_alive = keep_alive && !response.close;
        let mut head = String::with_capacity(256);
        // Writing to a String cannot fail.
        _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Connection: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
            response.status,
            reason(response.status),
            response.content_type,
            response.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        if let Some(location) = response.location {
            _ = write!(head, "Location: {location}\r\n");
        }
        if let Some(allow) = response.allow {
            _ = write!(head, "Allow: {allow}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if method != Method::Head {
            bytes.extend_from_slice(&response.body);
        }
        self.write(&bytes).await.is_ok() && keep_alive
    }

    /// Ends the connection once the client has everything written (or after a short while).
    pub async fn close(self) {
        _ = timeout(Duration::from_secs(5), self.stream.close()).await;
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ()> {
        match timeout(self.timeouts.write, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }

    /// Receives more into `buf`; 0 at the end of the stream.
    async fn fill(&mut self) -> Result<usize, NetError> {
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        self.filled += n;
        Ok(n)
    }

    async fn fill_before(&mut self, deadline: Instant) -> Result<usize, ReadError> {
        match timeout(deadline.duration_since(Instant::now()), self.fill()).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(_)) => Err(ReadError::Net),
            Err(_) => Err(ReadError::TimedOut),
        }
    }

    /// Drops the first `n` bytes of `buf`.
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }
}

enum ReadError {
    TimedOut,
    /// The connection failed.
    Net,
}

/// What the request line and headers say.
struct Head {
    method: Method,
    path: String,
    keep_alive: bool,
    content_type: Option<String>,
    content_length: usize,
    expect_continue: bool,
}

/// Parses a request head at the start of `buf`: the head and its length, `None` if incomplete,
/// or the response refusing it.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Failure> {
    let refuse = |status, text| Err(Failure::Refuse(Response::fatal(status, text)));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return refuse(431, "too many headers (limit 64)"),
        Err(httparse::Error::Version) => return refuse(505, "only HTTP/1.0 and HTTP/1.1"),
        Err(_) => return refuse(400, "malformed request"),
    };
    // Complete: every field is there.
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return refuse(400, "malformed request");
    };
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let Some(path) = origin_path(target) else {
        return refuse(400, "malformed request target");
    };
    let http11 = version == 1;
    let mut head = Head {
        method,
        path: path.to_string(),
        keep_alive: http11,
        content_type: None,
        content_length: 0,
        expect_continue: false,
    };
    let mut content_length: Option<&[u8]> = None;
    let (mut close, mut keep_alive) = (false, false);
    for header in request.headers.iter() {
        let value = trim(header.value);
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some_and(|seen| seen != value) {
                return refuse(400, "conflicting Content-Length headers");
            }
            content_length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return refuse(
                411,
                "chunked request bodies are not supported: send a Content-Length",
            );
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            match core::str::from_utf8(value) {
                Ok(value) => head.content_type = Some(value.to_string()),
                Err(_) => return refuse(400, "malformed Content-Type"),
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return refuse(417, "only Expect: 100-continue is supported");
            }
            head.expect_continue = http11;
        }
    }
    // HTTP/1.1 keeps the connection unless told to close it; HTTP/1.0 closes it unless told
    // to keep it.
    head.keep_alive = !close && (http11 || keep_alive);
    if let Some(value) = content_length {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return refuse(400, "malformed Content-Length");
        }
        let len = value
            .iter()
            .try_fold(0usize, |n, &d| {
                n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
            })
            .filter(|&len| len <= BODY_LIMIT);
        match len {
            Some(len) => head.content_length = len,
            None => return refuse(413, "request body too large (limit 64 KiB)"),
        }
    }
    Ok(Some((head, head_len)))
}

/// The path of a request target in origin form (`/entries?x`: `/entries`) or absolute form
/// (`http://host/entries`); `None` for any other form.
fn origin_path(target: &str) -> Option<&str> {
    let target = if target.starts_with('/') {
        target
    } else {
        let rest = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))?;
        rest.find('/').map_or("/", |slash| &rest[slash..])
    };
    Some(target.split(['?', '#']).next().unwrap_or(target))
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
