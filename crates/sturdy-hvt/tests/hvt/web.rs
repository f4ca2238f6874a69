//! The `web` example unikernel (guest/examples/web), an HTTP/1.1 guestbook, with real clients:
//! `curl`, `wrk` and raw sockets in a network namespace, through a TAP to the unikernel, and a
//! Debian `redis-server` as its `db`, started by each test in the same namespace on the TAP's
//! host address and killed by PID.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Where the guestbook listens, as seen from the namespace.
const WEB: &str = "10.0.0.2:80";
const URL: &str = "http://10.0.0.2";

/// A Debian redis-server on the TAP's host address, killed by PID on drop.
struct Redis {
    child: Option<Child>,
    ns_name: String,
    dir: TempDir,
}

impl Redis {
    fn start(ns: &NetNs) -> Redis {
        let dir = TempDir::new("web-redis");
        let child = ns
            .command("redis-server")
            .args(["--bind", "10.0.0.1", "--port", "6379"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .arg("--logfile")
            .arg(dir.0.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (scripts/install-deps.sh installs it)");
        let redis = Redis {
            child: Some(child),
            ns_name: ns.name.clone(),
            dir,
        };
        let start = Instant::now();
        while redis.cli(&["ping"]).trim() != "PONG" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not answer PING within 10 s; its log:\n{}",
                std::fs::read_to_string(redis.dir.0.join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    /// `redis-cli --raw ARGS` against it; its output (empty if it cannot connect).
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns_name, "redis-cli"])
            .args(["-h", "10.0.0.1", "-p", "6379", "--raw"])
            .args(args)
            .output()
            .expect("redis-cli (scripts/install-deps.sh installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills it (SIGKILL, by PID) and waits for it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The guestbook unikernel in its own namespace, with redis-server as its `db`.
struct Guestbook {
    web: Running,
    redis: Redis,
    ns: NetNs,
}

impl Guestbook {
    /// Starts redis-server, then `web` with its boot configuration and `options`.
    fn start(tag: &str, options: &[&str]) -> Guestbook {
        let ns = NetNs::new(tag);
        ns.tap("tap0", "10.0.0.1/24", 1500);
        let redis = Redis::start(&ns);
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_sturdy-hvt"));
        cmd.args(["--mem=64", "--net:service=tap0"])
            .arg(guest("web"))
            .args([
                "--sturdy.v1.net=service:10.0.0.2/24:gw=10.0.0.1",
                "--sturdy.v1.provide=http:80/tcp",
                "--sturdy.v1.use=db:10.0.0.1:6379/tcp",
            ])
            .args(options);
        let mut web = spawn(cmd);
        web.wait_for_line(
            "web: serving http on port 80, entries in db db (10.0.0.1:6379/tcp)",
            Duration::from_secs(20),
        );
        Guestbook { web, redis, ns }
    }

    /// `curl -sS -i --max-time 10 ARGS` from the namespace.
    fn curl(&self, args: &[&str]) -> Reply {
        let out = self
            .ns
            .command("curl")
            .args(["-sS", "-i", "--max-time", "10"])
            .args(args)
            .output()
            .expect("curl (scripts/install-deps.sh installs it)");
        assert!(
            out.status.success(),
            "curl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Reply::parse(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or_else(|| panic!("curl {args:?}: no HTTP response in its output"))
    }

    fn get(&self, path: &str) -> Reply {
        self.curl(&[&format!("{URL}{path}")])
    }

    /// Asserts that the guest is still running.
    #[track_caller]
    fn assert_running(&mut self) {
        let status = self.web.child.as_mut().unwrap().try_wait().expect("wait");
        assert!(status.is_none(), "the web guest exited: {status:?}");
    }
}

/// An HTTP response as curl -i printed it: the last one (curl prints interim 100 Continue
/// responses, and with -L each redirection, before it).
#[derive(Debug)]
struct Reply {
    status: u16,
    /// The header lines.
    headers: Vec<String>,
    body: String,
}

impl Reply {
    fn parse(mut text: &str) -> Option<Reply> {
        loop {
            let (head, body) = text.split_once("\r\n\r\n")?;
            let mut lines = head.split("\r\n");
            let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
            if body.starts_with("HTTP/") {
                text = body;
                continue;
            }
            return Some(Reply {
                status,
                headers: lines.map(str::to_string).collect(),
                body: body.to_string(),
            });
        }
    }

    /// The value of header `name`.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    #[track_caller]
    fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status: {self:#?}");
        self
    }
}

/// Moves the calling thread into network namespace `ns_name`.
fn enter_netns(ns_name: &str) {
    let path = format!("/var/run/netns/{ns_name}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: setns with a namespace file we opened; it moves only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread that has entered network namespace `ns`, and returns its result (a
/// panic in `f` fails the test with its message).
fn in_netns<T: Send + 'static>(ns: &NetNs, f: impl FnOnce() -> T + Send + 'static) -> T {
    let name = ns.name.clone();
    std::thread::spawn(move || {
        enter_netns(&name);
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// POSTs form `data` to / with curl (and `extra` options); the status.
fn post(gb: &Guestbook, data: &str, extra: &[&str]) -> u16 {
    let url = format!("{URL}/");
    let mut args = vec!["--data", data];
    args.extend_from_slice(extra);
    args.push(&url);
    gb.curl(&args).status
}

#[test]
fn web_stores_and_lists_entries_in_redis_through_curl() {
    let mut gb = Guestbook::start("web", &["--db-timeout=1000"]);

    let health = gb.get("/health");
    health.expect(200);
    assert_eq!(health.body, "ok\n");
    assert_eq!(gb.get("/entries").expect(200).body, "{\"entries\":[]}\n");
    let empty = gb.get("/");
    empty.expect(200);
    assert_eq!(
        empty.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(empty.body.contains("<form method=\"post\" action=\"/\">"));
    assert!(empty.body.contains("No entries yet"));

    // Entries posted as a browser would (form-urlencoded; curl encodes these) to / ...
    let posted = gb.curl(&[
        "--data-urlencode",
        "name=alice",
        "--data-urlencode",
        "message=hi <script>alert(1)</script> & \"all\"",
        &format!("{URL}/"),
    ]);
    posted.expect(303);
    assert_eq!(posted.header("location"), Some("/"));
    // ... and by hand (`+` for spaces, %-escapes, UTF-8) to /entries.
    gb.curl(&[
        "--data",
        "name=bob+smith&message=caf%C3%A9+%26+tea%0Aline+2",
        &format!("{URL}/entries"),
    ])
    .expect(303);
    // Following the redirect lands on the page showing the entry.
    let followed = gb.curl(&[
        "-L",
        "--data",
        "message=third%09tabbed&name=carol",
        &format!("{URL}/"),
    ]);
    followed.expect(200);
    assert!(followed.body.contains("<h3>carol</h3><p>third\ttabbed</p>"));

    // Stored as the guestbook's data layout says, as a real Redis client sees it.
    assert_eq!(gb.redis.cli(&["get", "guestbook:next"]), "3\n");
    assert_eq!(
        gb.redis.cli(&["get", "guestbook:entry:1"]),
        "alice\thi <script>alert(1)</script> & \"all\"\n"
    );
    assert_eq!(
        gb.redis.cli(&["get", "guestbook:entry:2"]),
        "bob smith\tcafé & tea\nline 2\n"
    );

    // JSON for scripts, newest first, escaped.
    let json = gb.get("/entries");
    json.expect(200);
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(
        json.body,
        "{\"entries\":[\
         {\"id\":3,\"name\":\"carol\",\"message\":\"third\\ttabbed\"},\
         {\"id\":2,\"name\":\"bob smith\",\"message\":\"café \\u0026 tea\\nline 2\"},\
         {\"id\":1,\"name\":\"alice\",\"message\":\"hi \\u003cscript\\u003ealert(1)\\u003c/script\\u003e \\u0026 \\\"all\\\"\"}\
         ]}\n"
    );

    // The page: HTML-escaped, newest first.
    let page = gb.get("/");
    page.expect(200);
    assert!(
        !page.body.contains("<script>"),
        "unescaped script: {}",
        page.body
    );
    assert!(page.body.contains(
        "<h3>alice</h3><p>hi &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;all&quot;</p>"
    ));
    assert!(page
        .body
        .contains("<h3>bob smith</h3><p>café &amp; tea\nline 2</p>"));
    assert!(page.body.contains("<h2>3 entries</h2>"));
    let position = |id: &str| page.body.find(id).expect(id);
    assert!(position("entry-3") < position("entry-2") && position("entry-2") < position("entry-1"));

    // Limits and malformed forms; nothing stored.
    let long_name = format!("name={}&message=hi", "n".repeat(65));
    assert_eq!(post(&gb, &long_name, &[]), 413, "a 65-byte name");
    let long_message = format!("name=x&message={}", "m".repeat(1025));
    assert_eq!(post(&gb, &long_message, &[]), 413, "a 1025-byte message");
    // 2-byte characters: 512 of them are 1024 bytes, the limit.
    let longest = format!("name=x&message={}", "%C3%A9".repeat(512));
    assert_eq!(post(&gb, &longest, &[]), 303, "a 1024-byte message");
    assert_eq!(post(&gb, "name=x", &[]), 400, "no message");
    assert_eq!(post(&gb, "name=&message=hi", &[]), 400, "an empty name");
    assert_eq!(post(&gb, "name=x&message=%zz", &[]), 400, "a bad %-escape");
    assert_eq!(post(&gb, "name=x&message=%FF", &[]), 400, "not UTF-8");
    assert_eq!(
        post(&gb, "name=a%09b&message=hi", &[]),
        400,
        "a tab in the name"
    );
    let json_body = ["-H", "Content-Type: application/json"];
    assert_eq!(post(&gb, "{}", &json_body), 415, "JSON");
    assert_eq!(gb.redis.cli(&["get", "guestbook:next"]), "4\n");

    // Other paths and methods; HEAD.
    gb.get("/nope").expect(404);
    let delete = gb.curl(&["-X", "DELETE", &format!("{URL}/")]);
    delete.expect(405);
    assert_eq!(delete.header("allow"), Some("GET, HEAD, POST"));
    gb.curl(&["-X", "POST", &format!("{URL}/health")])
        .expect(405);
    let head = gb.curl(&["-I", &format!("{URL}/")]);
    head.expect(200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 1000
    );

    // Persistent connections: curl reuses one for two requests, unless it asks to close.
    let connects = |extra: &[&str]| {
        let url = format!("{URL}/health");
        let out = gb
            .ns
            .command("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-o",
                "/dev/null",
            ])
            .args(["-w", "%{http_code}:%{num_connects} "])
            .args(extra)
            .args([&url, &url])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(connects(&[]), "200:1 200:0 ");
    assert_eq!(connects(&["-H", "Connection: close"]), "200:1 200:1 ");

    // The database goes away: errors, quickly (curl's --max-time bounds each), no hang.
    gb.redis.kill();
    let down = gb.get("/health");
    down.expect(503);
    assert_eq!(down.body, "db unreachable\n");
    gb.get("/").expect(503);
    gb.get("/entries").expect(503);
    assert_eq!(post(&gb, "name=x&message=lost", &[]), 503);

    // A database that accepts connections but never answers: the db timeout (1 s) answers.
    let ns_name = gb.ns.name.clone();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let silent = std::thread::spawn(move || {
        enter_netns(&ns_name);
        let listener = TcpListener::bind("10.0.0.1:6379").expect("bind 10.0.0.1:6379");
        listener.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let mut held = Vec::new();
        while stop_rx.try_recv().is_err() {
            match listener.accept() {
                Ok((conn, _)) => held.push(conn),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        held.len()
    });
    ready_rx.recv().unwrap();
    let start = Instant::now();
    gb.get("/health").expect(503);
    gb.get("/").expect(503);
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "two requests to a silent db took {:?}",
        start.elapsed()
    );
    stop_tx.send(()).unwrap();
    assert!(
        silent.join().unwrap() > 0,
        "the guestbook never connected to the silent db"
    );

    // The database is back: the guestbook reconnects.
    gb.redis = Redis::start(&gb.ns);
    gb.get("/health").expect(200);
    assert_eq!(post(&gb, "name=dave&message=back", &[]), 303);
    assert_eq!(
        gb.get("/entries").expect(200).body,
        "{\"entries\":[{\"id\":1,\"name\":\"dave\",\"message\":\"back\"}]}\n"
    );
    gb.assert_running();
}

/// A raw HTTP client connection, to send what curl would not.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect() -> Raw {
        let addr: SocketAddr = WEB.parse().unwrap();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connect to {WEB}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.stream.write_all(bytes).expect("send");
        self
    }

    /// Reads one response: its status and body (by Content-Length).
    fn response(&mut self) -> (u16, String) {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.more();
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let status: u16 = head[9..12].parse().expect("status");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("Content-Length")
            .trim()
            .parse()
            .unwrap();
        while self.buf.len() < head_end + len {
            self.more();
        }
        let body = String::from_utf8_lossy(&self.buf[head_end..head_end + len]).into_owned();
        self.buf.drain(..head_end + len);
        (status, body)
    }

    fn more(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).expect("read a response");
        assert!(n > 0, "connection closed before a whole response");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Reads until the server closes the connection; its status line (empty if it said
    /// nothing). Fails if the server keeps the connection open for 10 s.
    fn until_closed(&mut self) -> String {
        loop {
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!(
                    "the connection stayed open ({e}); received: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
        let text = String::from_utf8_lossy(&self.buf);
        text.lines().next().unwrap_or("").to_string()
    }
}

#[test]
fn web_refuses_malformed_http_and_keeps_serving_others() {
    let mut gb = Guestbook::start("web-bad", &["--header-timeout=2", "--idle-timeout=5"]);
    gb.curl(&["--data", "name=a&message=b", &format!("{URL}/")])
        .expect(303);

    in_netns(&gb.ns, || {
        // A well-behaved client on one persistent connection, served between every attack.
        let mut good = Raw::connect();
        let mut check_good = |what: &str| {
            good.send(b"GET /entries HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n");
            let (status, body) = good.response();
            assert_eq!(status, 200, "the good client after {what}");
            assert!(body.contains("\"message\":\"b\""), "after {what}: {body}");
        };
        check_good("nothing");

        // Binary garbage (deterministic).
        let mut x: u32 = 0x1234_5678;
        let garbage: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
            ("binary garbage", garbage, &["HTTP/1.1 400"]),
            ("NUL bytes", vec![0; 64], &["HTTP/1.1 400"]),
            (
                "an oversized header",
                [
                    &b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "[..],
                    &vec![b'a'; 10_000],
                    b"\r\n\r\n",
                ]
                .concat(),
                &["HTTP/1.1 431"],
            ),
            (
                "too many headers",
                [
                    b"GET / HTTP/1.1\r\n".to_vec(),
                    (0..100)
                        .flat_map(|i| format!("X-{i}: y\r\n").into_bytes())
                        .collect(),
                    b"\r\n".to_vec(),
                ]
                .concat(),
                &["HTTP/1.1 431"],
            ),
            (
                "a huge Content-Length",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n".to_vec(),
                &["HTTP/1.1 413"],
            ),
            (
                "an overflowing Content-Length",
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n".to_vec(),
                &["HTTP/1.1 413"],
            ),
            (
                "a malformed Content-Length",
                b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n".to_vec(),
                &["HTTP/1.1 400"],
            ),
            (
                "conflicting Content-Lengths",
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
                &["HTTP/1.1 400"],
            ),
            (
                "a chunked body",
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    .to_vec(),
                &["HTTP/1.1 411", "HTTP/1.1 501"],
            ),
            (
                "a bad request line",
                b"GET /\x01 HTTP/1.1\r\n\r\n".to_vec(),
                &["HTTP/1.1 400"],
            ),
            (
                "a bad header name",
                b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec(),
                &["HTTP/1.1 400"],
            ),
            (
                "HTTP/2's preface",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
                &["HTTP/1.1 400", "HTTP/1.1 505"],
            ),
        ];
        for (what, bytes, statuses) in &cases {
            let mut bad = Raw::connect();
            bad.send(bytes);
            let status = bad.until_closed();
            assert!(
                statuses.iter().any(|s| status.starts_with(s)),
                "{what}: got {status:?}, expected one of {statuses:?}"
            );
            check_good(what);
        }

        // A truncated request, then the end of the stream: refused or closed, not waited for.
        let mut truncated = Raw::connect();
        truncated.send(b"GET / HTTP/1.1\r\nHost: x\r\n");
        truncated.stream.shutdown(Shutdown::Write).unwrap();
        let status = truncated.until_closed();
        assert!(
            status.is_empty() || status.starts_with("HTTP/1.1 400"),
            "{status}"
        );
        let mut short_body = Raw::connect();
        short_body.send(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nname=x");
        short_body.stream.shutdown(Shutdown::Write).unwrap();
        let status = short_body.until_closed();
        assert!(
            status.is_empty() || status.starts_with("HTTP/1.1 400"),
            "{status}"
        );
        check_good("truncated requests");

        // Slowloris: headers that never end get 408 after the header timeout (2 s), although
        // bytes keep coming.
        let mut slow = Raw::connect();
        slow.send(b"GET / HTTP/1.1\r\n");
        let start = Instant::now();
        for i in 0..3 {
            std::thread::sleep(Duration::from_millis(500));
            slow.send(format!("X-{i}: y\r\n").as_bytes());
        }
        let status = slow.until_closed();
        assert!(
            status.starts_with("HTTP/1.1 408"),
            "slowloris got {status:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(8));
        check_good("slowloris");

        // An idle connection is closed after the idle timeout (5 s), and so is a connection
        // idle after a request.
        let mut idle = Raw::connect();
        let mut idle_after = Raw::connect();
        idle_after.send(b"GET /health HTTP/1.1\r\n\r\n");
        assert_eq!(idle_after.response().0, 200);
        assert_eq!(idle.until_closed(), "", "an idle connection");
        assert_eq!(
            idle_after.until_closed(),
            "",
            "a connection idle after a request"
        );

        // Pipelined requests on one connection, answered in order; `Connection: close` ends it.
        let mut pipelined = Raw::connect();
        pipelined.send(
            b"GET /health HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n\
              POST /entries HTTP/1.1\r\nContent-Length: 16\r\n\r\nname=p&message=q\
              GET /entries HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(pipelined.response(), (200, "ok\n".to_string()));
        assert_eq!(pipelined.response().0, 404);
        assert_eq!(pipelined.response().0, 303);
        let (status, body) = pipelined.response();
        assert_eq!(status, 200);
        assert!(
            body.starts_with("{\"entries\":[{\"id\":2,\"name\":\"p\""),
            "{body}"
        );
        assert_eq!(pipelined.until_closed(), "");

        // HTTP/1.0 closes after the response unless asked to keep the connection.
        let mut old = Raw::connect();
        old.send(b"GET /health HTTP/1.0\r\n\r\n");
        assert_eq!(old.response().0, 200);
        assert_eq!(old.until_closed(), "");
        let mut old = Raw::connect();
        old.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(old.response().0, 200);
        old.send(b"GET /health HTTP/1.0\r\n\r\n");
        assert_eq!(old.response().0, 200);
        assert_eq!(old.until_closed(), "");
    });

    gb.get("/health").expect(200);
    gb.assert_running();
}

#[test]
fn web_serves_256_concurrent_connections_and_wrk() {
    let mut gb = Guestbook::start("web-many", &[]);
    gb.curl(&["--data", "name=many&message=hello", &format!("{URL}/")])
        .expect(303);

    in_netns(&gb.ns, || {
        // Every connection is open before any is used...
        let mut conns: Vec<Raw> = (0..256).map(|_| Raw::connect()).collect();
        // ...then each asks for the entries and gets them...
        for conn in conns.iter_mut() {
            conn.send(b"GET /entries HTTP/1.1\r\nHost: 10.0.0.2\r\n\r\n");
        }
        for (i, conn) in conns.iter_mut().enumerate() {
            let (status, body) = conn.response();
            assert_eq!(status, 200, "connection {i}");
            assert!(body.contains("\"name\":\"many\""), "connection {i}: {body}");
        }
        // ...while one more than --max-connections (256) is turned away...
        let mut one_more = Raw::connect();
        let status = one_more.until_closed();
        assert!(
            status.starts_with("HTTP/1.1 503"),
            "connection 257: {status:?}"
        );
        // ...and each asks once more on the same connection, and closes it.
        for conn in conns.iter_mut() {
            conn.send(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
        }
        for (i, conn) in conns.iter_mut().enumerate() {
            assert_eq!(conn.response(), (200, "ok\n".to_string()), "connection {i}");
            assert_eq!(conn.until_closed(), "", "connection {i}");
        }
    });

    // wrk, 100 connections on the list page: every response 200, no socket errors.
    let out = gb
        .ns
        .command("wrk")
        .args(["-t", "2", "-c", "100", "-d", "3s", &format!("{URL}/")])
        .output()
        .expect("wrk (scripts/install-deps.sh installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {report}");
    assert!(!report.contains("Non-2xx"), "wrk saw errors:\n{report}");
    assert!(
        !report.contains("Socket errors"),
        "wrk saw errors:\n{report}"
    );
    let requests: u64 = report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's report:\n{report}"));
    assert!(
        requests > 100,
        "wrk made only {requests} requests:\n{report}"
    );
    gb.get("/health").expect(200);
    gb.assert_running();
}
