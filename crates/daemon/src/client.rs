//! A blocking client of the daemon's API ([`crate::api`]), for the CLI and tests: one HTTP/1.1
//! request per unix-socket connection (hyper), answers decoded from JSON.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::ErrorBody;
use crate::server::SOCKET;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket (none runs, or it is still starting).
    #[error("no sturdy daemon answers on {socket}: {why}")]
    NotRunning {
        /// The socket.
        socket: String,
        /// The connect error.
        why: String,
    },
    /// The socket is the daemon's, and this user may not use it.
    #[error(
        "permission denied on {socket}: the daemon lets root and the members of the group \
         '{group}' use it (add yourself: `usermod -aG {group} $USER`, then log in again), or \
         use a state directory of your own (--state-dir DIR or STURDY_HOME=DIR)"
    )]
    PermissionDenied {
        /// The socket.
        socket: String,
        /// The group whose members may use it.
        group: String,
    },
    /// The daemon answered with a failure.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// What the daemon said.
        message: String,
    },
    /// The exchange broke (the daemon died mid-answer, an answer that is not JSON).
    #[error("talking to the sturdy daemon on {socket}: {why}")]
    Transport {
        /// The socket.
        socket: String,
        /// What broke.
        why: String,
    },
}

impl ClientError {
    /// Whether this is a 404 from the daemon (no such application or service).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }
}

/// A connection to the daemon of one state directory.
pub struct Client {
    socket: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the daemon of `state_dir` (nothing is connected yet).
    pub fn new(state_dir: &Path) -> Client {
        Client::new_at(state_dir.join(SOCKET))
    }

    fn new_at(socket: PathBuf) -> Client {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime needs no resources that can run out");
        Client { socket, runtime }
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn connect_error(&self, e: &std::io::Error) -> ClientError {
        let socket = self.socket.display().to_string();
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            return ClientError::PermissionDenied {
                socket,
                group: crate::server::access_group_name(),
            };
        }
        ClientError::NotRunning {
            socket,
            why: e.to_string(),
        }
    }

    fn transport(&self, why: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            socket: self.socket.display().to_string(),
            why: why.to_string(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.connect_error(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.transport(e))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "sturdy");
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.transport(e))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| self.transport(e))
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        self.runtime.block_on(async {
            let response = self.send(method, path, body).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.transport(e))?
                .to_bytes();
            if !status.is_success() {
                return Err(api_error(status, &bytes));
            }
            serde_json::from_slice(&bytes).map_err(|e| self.transport(format!("bad answer: {e}")))
        })
    }

    /// `GET path`, its JSON answer decoded.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None)
    }

    /// `POST path` with `body` as JSON, its answer decoded.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| self.transport(e))?;
        self.call(Method::POST, path, Some(body))
    }

    /// `DELETE path`, its answer decoded.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None)
    }

    /// `GET path` answered line by line (NDJSON): `each` gets every line as it comes, and
    /// `None` after every `tick` without one; it returns false to stop. Returns when the
    /// daemon ends the answer or `each` stops. The answer is read by a thread of its own, so
    /// `each` may make requests of its own with this client.
    pub fn lines(
        &self,
        path: &str,
        tick: Duration,
        mut each: impl FnMut(Option<&str>) -> bool,
    ) -> Result<(), ClientError> {
        let mut pending: Vec<u8> = Vec::new();
        self.chunks(path, tick, |chunk| {
            let Some(chunk) = chunk else {
                return each(None);
            };
            pending.extend_from_slice(chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..end]);
                if !line.is_empty() && !each(Some(&line)) {
                    return false;
                }
            }
            true
        })
    }

    /// `GET path` answered as a byte stream: `each` gets every chunk as it comes, and `None`
    /// after every `tick` without one; it returns false to stop. As [`lines`](Self::lines).
    pub fn chunks(
        &self,
        path: &str,
        tick: Duration,
        mut each: impl FnMut(Option<&[u8]>) -> bool,
    ) -> Result<(), ClientError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = Client::new_at(self.socket.clone());
        let path = path.to_string();
        std::thread::spawn(move || {
            let result = reader.runtime.block_on(reader.stream(&path, &tx));
            let _ = tx.send(result.map(|()| None));
        });
        loop {
            match rx.recv_timeout(tick) {
                Ok(Ok(Some(chunk))) => {
                    if !each(Some(&chunk)) {
                        return Ok(());
                    }
                }
                Ok(Ok(None)) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => {
                    if !each(None) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Sends each chunk of `GET path`'s answer to `tx` until it ends or `tx`'s receiver is
    /// gone.
    async fn stream(
        &self,
        path: &str,
        tx: &Sender<Result<Option<Vec<u8>>, ClientError>>,
    ) -> Result<(), ClientError> {
        let response = self.send(Method::GET, path, None).await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body
                .collect()
                .await
                .map_err(|e| self.transport(e))?
                .to_bytes();
            return Err(api_error(status, &bytes));
        }
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|e| self.transport(e))?.into_data() else {
                continue;
            };
            if tx.send(Ok(Some(data.to_vec()))).is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(body).trim().to_string();
            if text.is_empty() {
                format!("the daemon answered {status}")
            } else {
                text
            }
        });
    ClientError::Api {
        status: status.as_u16(),
        message,
    }
}

/// `s` made safe for a URL path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
