//! HTTP health probes from the host through the fabric: the supervisor publishes each
//! HTTP-checked guest port on an ephemeral 127.0.0.1 port of its own, so a probe is a host
//! connection the gateway forwards to the guest like any other. TCP checks do not come here:
//! the gateway makes them itself (`GatewayHandle::probe_tcp`), which answers exactly (the
//! guest's SYN-ACK or reset) where a host connection is accepted by the gateway first.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sturdy_compose::Probe;

/// Runs `probe` against `addr` within `timeout`: `Ok` if healthy, else why not.
///
/// - TCP: the gateway accepts the host connection itself, then connects to the guest and
///   resets the host side if the guest refuses. So the probe is healthy when the connection
///   is neither reset nor closed within a short wait (at most `timeout`).
/// - HTTP: `GET path`; healthy on a 2xx or 3xx status line.
pub fn probe(addr: SocketAddr, probe: &Probe, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    match probe {
        Probe::Tcp => {
            stream
                .set_read_timeout(Some(left().min(Duration::from_millis(200))))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 64];
            match stream.read(&mut buf) {
                Ok(0) => Err("connection closed".into()),
                Ok(_) => Ok(()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
        Probe::Http { path } => {
            stream
                .set_write_timeout(Some(left()))
                .map_err(|e| e.to_string())?;
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: sturdy\r\nConnection: close\r\n\r\n");
            stream
                .write_all(request.as_bytes())
                .map_err(|e| e.to_string())?;
            let mut head = Vec::new();
            let mut buf = [0u8; 256];
            while !head.contains(&b'\n') {
                stream
                    .set_read_timeout(Some(left()))
                    .map_err(|e| e.to_string())?;
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(e.to_string()),
                }
            }
            let line = String::from_utf8_lossy(&head);
            let line = line.lines().next().unwrap_or("").trim().to_string();
            match line.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()) {
                Some(code) if (200..400).contains(&code) => Ok(()),
                Some(_) => Err(format!("answered {line:?}")),
                None if line.is_empty() => Err("no answer".into()),
                None => Err(format!("not an HTTP answer: {line:?}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn server(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(answer);
            std::thread::sleep(Duration::from_millis(300));
        });
        addr
    }

    #[test]
    fn http_ok_and_failure() {
        let http = |path: &str| Probe::Http { path: path.into() };
        let ok = server(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(probe(ok, &http("/health"), Duration::from_secs(2)), Ok(()));
        let bad = server(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = probe(bad, &http("/health"), Duration::from_secs(2)).unwrap_err();
        assert!(err.contains("503"), "{err}");
    }

    #[test]
    fn tcp_open_and_refused() {
        let open = server(b"");
        assert_eq!(probe(open, &Probe::Tcp, Duration::from_secs(1)), Ok(()));
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(probe(closed, &Probe::Tcp, Duration::from_secs(1)).is_err());
    }
}
