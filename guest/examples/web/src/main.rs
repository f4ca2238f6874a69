//! `web`: an HTTP/1.1 guestbook unikernel. It serves its endpoint `http` and keeps its entries
//! in a Redis-protocol key-value server (our `kv` unikernel, or any Redis) reached through its
//! capability `db`.
//!
//! Boot configuration (docs/bootcfg.md): a NIC `service`, `--sturdy.v1.provide=http:PORT/tcp`
//! and `--sturdy.v1.use=db:IPV4:PORT/tcp`. Options, all optional:
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `--max-connections=N` | 256 | clients served at once; more are answered 503 and closed |
//! | `--db-connections=N` | 16 | connections to the database at most (a pool shared by requests) |
//! | `--db-timeout=MS` | 2000 | the longest a request waits for the database |
//! | `--idle-timeout=S` | 30 | a keep-alive connection idle this long is closed |
//! | `--header-timeout=S` | 10 | a request's headers must arrive within this (slowloris) |
//!
//! Memory: each connection takes 32 KiB of socket buffers and up to 8 KiB of request head,
//! plus its body (up to 64 KiB) while it is read; `--mem=64` is enough for the defaults.
//!
//! Routes: see [`guestbook`]; HTTP handling and its limits: see [`http`].
#![no_std]
#![no_main]

extern crate alloc;

mod db;
mod guestbook;
mod http;
mod resp;
mod text;

use alloc::rc::Rc;
use core::cell::Cell;
use core::time::Duration;

use sturdy_rt::{println, spawn, timeout, Env, OrExit, TcpStream};

use crate::db::Db;
use crate::guestbook::Guestbook;
use crate::http::{Connection, Failure, Response, Timeouts};

sturdy_rt::main_async!(main);
sturdy_rt::manifest!(net "service");

async fn main(env: &Env) {
    let max_connections = option(env, "max-connections", 256);
    let db_connections = option(env, "db-connections", 16);
    let db_timeout = Duration::from_millis(option(env, "db-timeout", 2000));
    let timeouts = Timeouts {
        idle: Duration::from_secs(option(env, "idle-timeout", 30)),
        header: Duration::from_secs(option(env, "header-timeout", 10)),
        body: Duration::from_secs(30),
        write: Duration::from_secs(30),
    };

    let db = env.tcp("db").or_exit();
    let http = env.listen("http").or_exit();
    println!(
        "web: serving http on port {}, entries in db {db}",
        http.port()
    );

    let db = Db::new(db, db_connections as usize, db_timeout);
    let app = Rc::new(Guestbook::new(db));
    let open = Rc::new(Cell::new(0usize));
    loop {
        let stream = http.accept().await;
        if open.get() >= max_connections as usize {
            spawn(turn_away(stream, timeouts));
            continue;
        }
        let guard = OpenGuard::new(open.clone());
        spawn(serve(Connection::new(stream, timeouts), app.clone(), guard));
    }
}

/// Serves one client's requests until it closes, errs or goes idle.
async fn serve(mut conn: Connection, app: Rc<Guestbook>, _open: OpenGuard) {
    loop {
        match conn.request().await {
            Ok(request) => {
                let response = app.handle(&request).await;
                if !conn
                    .respond(&response, request.method, request.keep_alive)
                    .await
                {
                    break;
                }
            }
            Err(Failure::Closed) => return,
            Err(Failure::Refuse(response)) => {
                conn.respond(&response, http::Method::Get, false).await;
                break;
            }
        }
    }
    conn.close().await;
}

/// Answers a client beyond `--max-connections` with 503 and closes.
async fn turn_away(stream: TcpStream, timeouts: Timeouts) {
    let mut conn = Connection::new(stream, timeouts);
    let busy = Response::fatal(503, "too many connections; try again later");
    _ = timeout(
        Duration::from_secs(1),
        conn.respond(&busy, http::Method::Get, false),
    )
    .await;
    conn.close().await;
}

/// Counts a connection as open while it lives.
struct OpenGuard(Rc<Cell<usize>>);

impl OpenGuard {
    fn new(open: Rc<Cell<usize>>) -> Self {
        open.set(open.get() + 1);
        OpenGuard(open)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// The number of option `--NAME=N`, or `default`; a malformed one stops the guest.
fn option(env: &Env, name: &str, default: u64) -> u64 {
    match env.option(name) {
        None => default,
        Some(value) => value
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(alloc::format!(
                "--{name}={value}: expected a positive number"
            ))
            .or_exit(),
    }
}
