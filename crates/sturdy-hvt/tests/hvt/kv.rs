//! The `kv` unikernel with real clients: every command through `redis-cli` over a TAP, malformed
//! RESP, durability across `kill -9` of its monitor, the volume flushed before a write's reply
//! (seen by strace), a torn last record, and a small volume filled, half deleted and filled
//! again.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::*;

const KV_NET: &str = "--sturdy.v1.net=service:10.0.0.2/24";
const KV_PROVIDE: &str = "--sturdy.v1.provide=kv:6379/tcp";

/// A namespace with a TAP at 10.0.0.1 and kv at 10.0.0.2:6379 on the volume `disk`.
fn start_kv(ns: &NetNs, disk: &str) -> (Running, String) {
    let mut g = start_in(
        ns,
        &[
            "--mem=64",
            "--net:service=tap0",
            &format!("--block:storage={disk}"),
        ],
        "kv",
        &[KV_NET, KV_PROVIDE],
    );
    let console = g.wait_for_line("serving on port 6379", Duration::from_secs(20));
    (g, console)
}

fn namespace(tag: &str) -> NetNs {
    let ns = NetNs::new(tag);
    ns.tap("tap0", "10.0.0.1/24", 1500);
    ns
}

/// `redis-cli -h 10.0.0.2 ARGS` inside `ns`; its stdout.
fn cli(ns: &NetNs, args: &[&str]) -> String {
    let out = ns
        .command("redis-cli")
        .args(["-h", "10.0.0.2"])
        .args(args)
        .output()
        .expect("redis-cli");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn every_command_answers_like_redis() {
    let dir = TempDir::new("kvcli");
    let disk = dir.file("kv.img", 8 << 20);
    let ns = namespace("kvcli");
    let _kv = start_kv(&ns, &disk);
    assert_eq!(cli(&ns, &["PING"]), "PONG");
    assert_eq!(cli(&ns, &["PING", "hello"]), "hello");
    assert_eq!(cli(&ns, &["SET", "greeting", "hello world"]), "OK");
    assert_eq!(cli(&ns, &["GET", "greeting"]), "hello world");
    assert_eq!(cli(&ns, &["GET", "missing"]), "");
    assert_eq!(cli(&ns, &["INCR", "counter"]), "1");
    assert_eq!(cli(&ns, &["INCR", "counter"]), "2");
    assert_eq!(
        cli(&ns, &["INCR", "greeting"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cli(&ns, &["EXISTS", "greeting", "counter", "missing"]), "2");
    assert_eq!(cli(&ns, &["SET", "user:1", "a"]), "OK");
    assert_eq!(cli(&ns, &["SET", "user:2", "b"]), "OK");
    let mut keys: Vec<String> = cli(&ns, &["KEYS", "user:*"])
        .lines()
        .map(String::from)
        .collect();
    keys.sort();
    assert_eq!(keys, ["user:1", "user:2"]);
    assert_eq!(cli(&ns, &["DBSIZE"]), "4");
    assert_eq!(cli(&ns, &["DEL", "user:1", "user:2", "missing"]), "2");
    assert_eq!(cli(&ns, &["DBSIZE"]), "2");
    assert!(cli(&ns, &["FROBNICATE"]).starts_with("ERR unknown command 'FROBNICATE'"));
    assert_eq!(
        cli(&ns, &["GET"]),
        "ERR wrong number of arguments for 'get' command"
    );
}

/// A client that speaks RESP over a std TcpStream (inside the namespace's thread).
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect() -> std::io::Result<Client> {
        let s =
            TcpStream::connect_timeout(&"10.0.0.2:6379".parse().unwrap(), Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Client {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Sends one command and reads its one-line reply (simple, error, integer, or bulk).
    fn call(&mut self, args: &[&[u8]]) -> std::io::Result<Vec<u8>> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&req)?;
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line[0] == b'$' {
            let len: i64 = std::str::from_utf8(&line[1..line.len() - 2])
                .unwrap()
                .parse()
                .unwrap();
            if len < 0 {
                return Ok(b"(nil)".to_vec());
            }
            let mut value = vec![0; len as usize + 2];
            self.reader.read_exact(&mut value)?;
            value.truncate(len as usize);
            return Ok(value);
        }
        Ok(line)
    }
}

#[test]
fn acknowledged_sets_survive_kill_9_of_the_monitor() {
    let dir = TempDir::new("kvkill");
    let disk = dir.file("kv.img", 16 << 20);
    let ns = namespace("kvkill");
    let (kv, _) = start_kv(&ns, &disk);
    let pid = kv.pid();

    // Load from redis-benchmark while our own client records exactly what was acknowledged.
    let mut bench = ns
        .command("redis-benchmark")
        .args([
            "-h", "10.0.0.2", "-t", "set", "-c", "20", "-n", "1000000", "-r", "100000", "-q",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-benchmark");
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: kill(2) of the monitor we started, by PID.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let acked: Vec<u32> = in_netns(&ns, || {
        let mut c = Client::connect().expect("connect to kv");
        let mut acked = Vec::new();
        let start = Instant::now();
        for i in 0u32.. {
            let key = format!("acked:{i}");
            match c.call(&[b"SET", key.as_bytes(), format!("value-{i}").as_bytes()]) {
                Ok(reply) if reply == b"+OK\r\n" => acked.push(i),
                Ok(reply) => panic!(
                    "SET {key}: unexpected reply {:?}",
                    String::from_utf8_lossy(&reply)
                ),
                Err(_) => break, // the monitor was killed
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "kv was never killed"
            );
        }
        acked
    });
    killer.join().unwrap();
    let _ = bench.kill();
    let _ = bench.wait();
    drop(kv);
    assert!(
        acked.len() > 100,
        "too few SETs before the kill: {}",
        acked.len()
    );

    let (_kv, console) = start_kv(&ns, &disk);
    let missing: Vec<u32> = in_netns(&ns, move || {
        let mut c = Client::connect().expect("connect to the restarted kv");
        acked
            .into_iter()
            .filter(|i| {
                c.call(&[b"GET", format!("acked:{i}").as_bytes()]).unwrap()
                    != format!("value-{i}").into_bytes()
            })
            .collect()
    });
    assert!(
        missing.is_empty(),
        "acknowledged SETs lost after kill -9: {missing:?}\nconsole: {console}"
    );
}

/// One system call in an `strace -f -ttt -T` trace: name, start and end (seconds), the line.
struct Traced {
    name: String,
    start: f64,
    end: f64,
    line: String,
}

/// Parses `strace -f -ttt -T -o` output, joining `<unfinished ...>` and `resumed` halves.
fn parse_strace(text: &str) -> Vec<Traced> {
    let mut calls = Vec::new();
    let mut open: std::collections::HashMap<(String, String), usize> = Default::default();
    for line in text.lines() {
        // "PID TIME CALL": strace pads the PID with spaces.
        let Some((pid, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        let duration = || {
            rest.rsplit_once('<')
                .and_then(|(_, d)| d.trim_end_matches('>').parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let name = resumed.split(' ').next().unwrap_or("").to_string();
            if let Some(i) = open.remove(&(pid.to_string(), name)) {
                let c: &mut Traced = &mut calls[i];
                c.end = ts;
                c.line.push_str(rest);
            }
            continue;
        }
        let Some((name, _)) = rest.split_once('(') else {
            continue;
        };
        let unfinished = rest.ends_with("<unfinished ...>");
        if unfinished {
            open.insert((pid.to_string(), name.to_string()), calls.len());
        }
        calls.push(Traced {
            name: name.to_string(),
            start: ts,
            end: if unfinished {
                f64::INFINITY
            } else {
                ts + duration()
            },
            line: rest.to_string(),
        });
    }
    calls
}

/// Bytes as `strace -xx` prints them.
fn strace_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// The issue's durability test, by observing the monitor's system calls: the SET's record is
/// written to the volume, the volume is fdatasync'ed, and only then does the reply leave on
/// the TAP. kv says what it does.
#[test]
fn a_write_is_flushed_before_its_reply() {
    let dir = TempDir::new("kvflush");
    let disk = dir.file("kv.img", 1 << 20);
    let trace = dir.file("strace.txt", 0);
    let ns = namespace("kvflush");
    let mut cmd = ns.command("strace");
    cmd.args(["-f", "-ttt", "-T", "-xx", "-s", "65536", "-o", &trace])
        .args(["-e", "trace=pwrite64,fdatasync,write,writev,sendmmsg"])
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_sturdy-hvt"))
        .args(["--mem=64", "--net:service=tap0"])
        .arg(format!("--block:storage={disk}"))
        .arg(guest("kv"))
        .args([KV_NET, KV_PROVIDE]);
    let mut kv = spawn(cmd);
    let console = kv.wait_for_line("serving on port 6379", Duration::from_secs(30));
    assert!(
        console.contains("flushed to the host's storage before its reply (appendfsync always)"),
        "{console}"
    );
    assert_eq!(
        cli(&ns, &["CONFIG", "GET", "appendfsync"]),
        "appendfsync\nalways"
    );
    let value = format!("flush-probe-{}", std::process::id());
    assert_eq!(cli(&ns, &["SET", "probe", &value]), "OK");
    // Stop the monitor (strace's child), then strace, which ends with it.
    let strace_pid = kv.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children"))
            .expect("strace's children");
    let monitor: i32 = children.trim().parse().expect("one child: the monitor");
    // SAFETY: kill(2) of the monitor we started under strace, by PID.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    let _ = kv.child.as_mut().unwrap().wait();

    let text = std::fs::read_to_string(&trace).unwrap();
    let calls = parse_strace(&text);
    let record = calls
        .iter()
        .find(|c| c.name == "pwrite64" && c.line.contains(&strace_hex(value.as_bytes())))
        .unwrap_or_else(|| {
            let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
            panic!("no pwrite64 of the SET's record among the traced calls {names:?}")
        });
    let flush = calls
        .iter()
        .find(|c| c.name == "fdatasync" && c.start >= record.start)
        .unwrap_or_else(|| panic!("no fdatasync after the SET's record was written"));
    assert!(flush.line.contains("= 0"), "{}", flush.line);
    let reply = calls
        .iter()
        .find(|c| c.name.starts_with("write") && c.line.contains(&strace_hex(b"+OK\r\n")))
        .unwrap_or_else(|| panic!("no +OK frame written to the TAP"));
    assert!(
        flush.end <= reply.start,
        "the reply left at {} before the flush ended at {}:\n{}\n{}",
        reply.start,
        flush.end,
        flush.line,
        reply.line
    );
}

#[test]
fn a_torn_last_record_is_skipped_with_a_log_line() {
    let dir = TempDir::new("kvtorn");
    let disk = dir.file("kv.img", 8 << 20);
    let ns = namespace("kvtorn");
    {
        let (_kv, _) = start_kv(&ns, &disk);
        for i in 0..50 {
            assert_eq!(cli(&ns, &["SET", &format!("k{i}"), &format!("v{i}")]), "OK");
        }
    }
    // Find the end of the log from the recovery line, then write the start of a record that
    // never finished: garbage where the next record would go.
    let (kv, console) = start_kv(&ns, &disk);
    drop(kv);
    let bytes: u64 = console
        .split("records (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no recovery line in {console}"));
    assert!(bytes > 0, "{console}");
    let mut image = std::fs::read(&disk).unwrap();
    image[bytes as usize..bytes as usize + 40].copy_from_slice(&[0x5a; 40]);
    let clean = image[..bytes as usize].to_vec();
    std::fs::write(&disk, &image).unwrap();

    let (_kv, console) = start_kv(&ns, &disk);
    assert!(console.contains("torn"), "no torn-record line: {console}");
    assert!(
        console.contains(&format!("recovered 50 records ({bytes} bytes at offset 0,")),
        "{console}"
    );
    for i in [0, 25, 49] {
        assert_eq!(cli(&ns, &["GET", &format!("k{i}")]), format!("v{i}"));
    }
    assert_eq!(cli(&ns, &["DBSIZE"]), "50");
    // New writes go after the last good record and survive the next restart.
    assert_eq!(cli(&ns, &["SET", "after", "torn"]), "OK");
    assert_eq!(std::fs::read(&disk).unwrap()[..bytes as usize], clean[..]);
}

/// The issue's test on the real unikernel: a small volume filled until kv answers -OOM, half
/// of it deleted, filled again (the log is compacted on the way), compacted on request, and all
/// of it there after restarts.
#[test]
fn a_full_volume_takes_writes_again_after_deleting_half() {
    let dir = TempDir::new("kvfull");
    let disk = dir.file("kv.img", 64 << 10);
    let ns = namespace("kvfull");
    let (kv, console) = start_kv(&ns, &disk);
    assert!(
        console.contains("24540 bytes of live data allowed"),
        "{console}"
    );
    let value = || vec![b'v'; 1000];
    let keys = in_netns(&ns, move || {
        let mut c = Client::connect().expect("connect to kv");
        let mut keys = 0;
        loop {
            let reply = c.call(&[b"SET", format!("k{keys:02}").as_bytes(), &value()]);
            let reply = reply.unwrap();
            if reply != b"+OK\r\n" {
                assert_eq!(
                    String::from_utf8_lossy(&reply),
                    "-OOM command not allowed when used memory > 'maxmemory'.\r\n"
                );
                break keys;
            }
            keys += 1;
        }
    });
    assert_eq!(keys, 23, "1029 bytes a key, 24540 at most");
    in_netns(&ns, move || {
        let mut c = Client::connect().unwrap();
        for i in (0..keys).step_by(2) {
            let reply = c.call(&[b"DEL", format!("k{i:02}").as_bytes()]).unwrap();
            assert_eq!(reply, b":1\r\n");
        }
        // Twice the volume's worth of writes: only possible if the log is compacted.
        for round in 0..4 {
            for i in (0..keys).step_by(2) {
                let key = format!("k{i:02}");
                let reply = c.call(&[b"SET", key.as_bytes(), &value()]).unwrap();
                assert_eq!(reply, b"+OK\r\n", "round {round}, {key}");
            }
            for i in (0..keys).step_by(2) {
                let key = format!("k{i:02}");
                assert_eq!(c.call(&[b"DEL", key.as_bytes()]).unwrap(), b":1\r\n");
            }
        }
        for i in (0..keys).step_by(2) {
            let reply = c.call(&[b"SET", format!("k{i:02}").as_bytes(), b"again"]);
            assert_eq!(reply.unwrap(), b"+OK\r\n");
        }
    });
    drop(kv);
    // Every key as left, then BGREWRITEAOF's reply.
    let check = |ns: &NetNs| {
        in_netns(ns, move || {
            let mut c = Client::connect().unwrap();
            for i in 0..keys {
                let got = c.call(&[b"GET", format!("k{i:02}").as_bytes()]).unwrap();
                let want = if i % 2 == 0 {
                    b"again".to_vec()
                } else {
                    value()
                };
                assert_eq!(got, want, "k{i:02}");
            }
            c.call(&[b"BGREWRITEAOF"]).unwrap()
        })
    };
    let (kv, console) = start_kv(&ns, &disk);
    let generation = generation_of(&console);
    assert!(generation > 1, "never compacted: {console}");
    assert_eq!(
        check(&ns),
        b"+Background append only file rewriting started\r\n"
    );
    drop(kv);
    let (_kv, console) = start_kv(&ns, &disk);
    assert_eq!(generation_of(&console), generation + 1, "{console}");
    check(&ns);
}

/// The generation in kv's recovery line.
fn generation_of(console: &str) -> u64 {
    console
        .split("generation ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no generation in {console}"))
}

#[test]
fn malformed_resp_is_refused_and_others_keep_being_served() {
    let dir = TempDir::new("kvbad");
    let disk = dir.file("kv.img", 8 << 20);
    let ns = namespace("kvbad");
    let (mut kv, _) = start_kv(&ns, &disk);
    in_netns(&ns, || {
        let mut good = Client::connect().unwrap();
        assert_eq!(good.call(&[b"SET", b"k", b"v"]).unwrap(), b"+OK\r\n");
        let attacks: [&[u8]; 5] = [
            b"*2\r\n$3\r\nGET\r\n$-7\r\n",       // negative bulk length
            b"*1\r\n$999999999\r\nx\r\n",        // oversized bulk
            b"\x00\x01\x02\xff\xfe garbage\r\n", // binary garbage
            b"*99999999\r\n",                    // too many elements
            b"*2\r\n$3\r\nGET\r\n",              // truncated, then closed
        ];
        for attack in attacks {
            let mut s = TcpStream::connect("10.0.0.2:6379").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(attack).unwrap();
            if attack.ends_with(b"GET\r\n") {
                s.shutdown(std::net::Shutdown::Write).unwrap();
            }
            let mut reply = Vec::new();
            let _ = s.read_to_end(&mut reply); // must end: error reply and close, or just close
            assert!(
                reply.is_empty() || reply.starts_with(b"-ERR"),
                "{:?}",
                String::from_utf8_lossy(&reply)
            );
            assert_eq!(
                good.call(&[b"GET", b"k"]).unwrap(),
                b"v",
                "the good client stopped being served"
            );
        }
    });
    let status = kv.child.as_mut().unwrap().try_wait().unwrap();
    assert!(status.is_none(), "kv exited: {status:?}");
}

#[test]
fn kv_without_its_endpoint_capability_fails_at_start_naming_it() {
    let dir = TempDir::new("kvnocap");
    let disk = dir.file("kv.img", 1 << 20);
    run_guest(
        &["--net:service=@0", &format!("--block:storage={disk}")],
        "kv",
        &[KV_NET],
    )
    .expect_status(1)
    .expect_stdout("'kv'");
}
