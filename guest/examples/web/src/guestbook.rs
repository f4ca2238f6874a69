//! The guestbook: its routes, and its entries in the database.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | an HTML page: a form, and the entries, newest first |
//! | `POST /`, `POST /entries` | a form `name=...&message=...` stores an entry; 303 to `/` |
//! | `GET /entries` | the entries as JSON, newest first |
//! | `GET /health` | `200 ok` if the database answers `PING`, else `503 db unreachable` |
//!
//! `HEAD` is answered wherever `GET` is. Other paths are 404, other methods 405.
//!
//! In the database, entry `N` is the string `guestbook:entry:N` holding `<name>\t<message>`,
//! and `guestbook:next` the last number given out (`INCR`). A listing reads `guestbook:next`,
//! then `GET`s the newest [`LIST_LIMIT`] entries in one pipeline, skipping numbers with no
//! entry (an `INCR` whose `SET` did not happen).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicU64, Ordering};

use sturdy_rt::Instant;

use crate::db::{Db, DbError, Pipeline};
use crate::http::{Method, Request, Response};
use crate::resp::Value;
use crate::text::{parse_form, push_html, push_json, FormError};

/// The longest name, in bytes (UTF-8).
pub const NAME_LIMIT: usize = 64;

/// The longest message, in bytes (UTF-8).
pub const MESSAGE_LIMIT: usize = 1024;

/// The most entries a listing shows: the newest.
pub const LIST_LIMIT: u64 = 200;

const NEXT_KEY: &[u8] = b"guestbook:next";
const ENTRY_PREFIX: &str = "guestbook:entry:";

const HTML: &str = "text/html; charset=utf-8";
const JSON: &str = "application/json";

/// One entry.
struct Entry {
    id: u64,
    name: String,
    message: String,
}

impl Entry {
    /// An entry as stored; a value without a tab (written by someone else) is all message.
    fn decode(id: u64, value: &[u8]) -> Entry {
        let value = String::from_utf8_lossy(value);
        let (name, message) = value.split_once('\t').unwrap_or(("", &value));
        Entry {
            id,
            name: name.into(),
            message: message.into(),
        }
    }
}

/// The application.
pub struct Guestbook {
    db: Db,
}

impl Guestbook {
    pub fn new(db: Db) -> Guestbook {
        Guestbook { db }
    }

    /// Answers `request`.
    pub async fn handle(&self, request: &Request) -> Response {
        let (get, post) = match request.method {
            Method::Get | Method::Head => (true, false),
            Method::Post => (false, true),
            Method::Other => (false, false),
        };
        match request.path.as_str() {
            "/" if get => self.page().await,
            "/entries" if get => self.json().await,
            "/" | "/entries" if post => self.post(request).await,
            "/" | "/entries" => not_allowed("GET, HEAD, POST"),
            "/health" if get => self.health().await,
            "/health" => not_allowed("GET, HEAD"),
            _ => Response::text(404, "not found"),
        }
    }

    async fn health(&self) -> Response {
        match self.db.run(&Pipeline::one(&[b"PING"])).await {
            Ok(replies) if replies.first() == Some(&Value::Simple("PONG".into())) => {
                Response::text(200, "ok")
            }
            _ => Response::text(503, "db unreachable"),
        }
    }

    async fn page(&self) -> Response {
        let entries = match self.entries().await {
            Ok(entries) => entries,
            Err(e) => return db_failure(&e),
        };
        let mut html = String::with_capacity(2048 + entries.len() * 256);
        html.push_str(PAGE_TOP);
        match entries.len() {
            0 => html.push_str("<p>No entries yet: be the first.</p>\n"),
            1 => html.push_str("<h2>1 entry</h2>\n"),
            n => _ = writeln!(html, "<h2>{n} entries</h2>"),
        }
        for entry in &entries {
            _ = write!(html, "<article id=\"entry-{}\"><h3>", entry.id);
            push_html(&mut html, &entry.name);
            html.push_str("</h3><p>");
            push_html(&mut html, &entry.message);
            html.push_str("</p></article>\n");
        }
        html.push_str("</body>\n</html>\n");
        Response::new(200, HTML, html.into_bytes())
    }

    async fn json(&self) -> Response {
        let entries = match self.entries().await {
            Ok(entries) => entries,
            Err(e) => return db_failure(&e),
        };
        let mut json = String::with_capacity(16 + entries.len() * 128);
        json.push_str("{\"entries\":[");
        for (i, entry) in entries.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            _ = write!(json, "{{\"id\":{},\"name\":", entry.id);
            push_json(&mut json, &entry.name);
            json.push_str(",\"message\":");
            push_json(&mut json, &entry.message);
            json.push('}');
        }
        json.push_str("]}\n");
        Response::new(200, JSON, json.into_bytes())
    }

    async fn post(&self, request: &Request) -> Response {
        if let Some(content_type) = &request.content_type {
            let media_type = content_type.split(';').next().unwrap_or("").trim();
            if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                return Response::text(
                    415,
                    "send the entry as application/x-www-form-urlencoded: name=...&message=...",
                );
            }
        }
        let fields = match parse_form(&request.body) {
            Ok(fields) => fields,
            Err(FormError::BadEscape) => {
                return Response::text(400, "malformed form: bad %-escape")
            }
            Err(FormError::NotUtf8) => return Response::text(400, "malformed form: not UTF-8"),
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.trim())
                .unwrap_or("")
        };
        let (name, message) = (field("name"), field("message"));
        if name.is_empty() || message.is_empty() {
            return Response::text(400, "a name and a message are required");
        }
        if name.len() > NAME_LIMIT {
            return Response::text(413, "name too long (limit 64 bytes)");
        }
        if message.len() > MESSAGE_LIMIT {
            return Response::text(413, "message too long (limit 1024 bytes)");
        }
        // The name is stored before a tab: no control characters in it; a message may have
        // line breaks and tabs, nothing else of the kind.
        if name.chars().any(char::is_control)
            || message
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Response::text(400, "control characters are not allowed");
        }
        match self.store(name, message).await {
            Ok(()) => Response {
                location: Some("/"),
                ..Response::text(303, "stored; see /")
            },
            Err(e) => db_failure(&e),
        }
    }

    /// Stores an entry under a new number.
    async fn store(&self, name: &str, message: &str) -> Result<(), DbError> {
        let id = match one(self.db.run(&Pipeline::one(&[b"INCR", NEXT_KEY])).await?)? {
            Value::Integer(id) if id > 0 => id,
            other => return Err(unexpected("INCR", &other)),
        };
        let key = format!("{ENTRY_PREFIX}{id}");
        let mut value = Vec::with_capacity(name.len() + 1 + message.len());
        value.extend_from_slice(name.as_bytes());
        value.push(b'\t');
        value.extend_from_slice(message.as_bytes());
        match one(self
            .db
            .run(&Pipeline::one(&[b"SET", key.as_bytes(), &value]))
            .await?)?
        {
            Value::Simple(ok) if ok == "OK" => Ok(()),
            other => Err(unexpected("SET", &other)),
        }
    }

    /// The newest [`LIST_LIMIT`] entries, newest first.
    async fn entries(&self) -> Result<Vec<Entry>, DbError> {
        let last = match one(self.db.run(&Pipeline::one(&[b"GET", NEXT_KEY])).await?)? {
            Value::Null => 0,
            Value::Bulk(n) => core::str::from_utf8(&n)
                .ok()
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| DbError::Reply("guestbook:next is not a number".into()))?,
            other => return Err(unexpected("GET", &other)),
        };
        if last == 0 {
            return Ok(Vec::new());
        }
        let ids: Vec<u64> = (last.saturating_sub(LIST_LIMIT - 1).max(1)..=last)
            .rev()
            .collect();
        let mut pipeline = Pipeline::new();
        for id in &ids {
            let key = format!("{ENTRY_PREFIX}{id}");
            pipeline.push(&[b"GET", key.as_bytes()]);
        }
        let replies = self.db.run(&pipeline).await?;
        let mut entries = Vec::with_capacity(ids.len());
        for (&id, reply) in ids.iter().zip(replies) {
            match reply {
                Value::Bulk(value) => entries.push(Entry::decode(id, &value)),
                Value::Null => {}
                other => return Err(unexpected("GET", &other)),
            }
        }
        Ok(entries)
    }
}

/// The one reply of a one-command pipeline.
fn one(replies: Vec<Value>) -> Result<Value, DbError> {
    replies
        .into_iter()
        .next()
        .ok_or_else(|| DbError::Reply("no reply".into()))
}

fn unexpected(command: &str, reply: &Value) -> DbError {
    DbError::Reply(match reply {
        Value::Error(e) => format!("{command}: {e}"),
        _ => format!("{command}: unexpected reply {reply:?}"),
    })
}

/// The answer to a request the database failed: 503 if it cannot be reached, 502 if it
/// answered wrongly.
fn db_failure(e: &DbError) -> Response {
    // Logged at most once a second: every request fails while the database is down, and a
    // console write is an exit to the monitor.
    static LAST_LOG: AtomicU64 = AtomicU64::new(0);
    let now = Instant::now().as_nanos();
    let last = LAST_LOG.load(Ordering::Relaxed);
    if last == 0 || now.saturating_sub(last) >= 1_000_000_000 {
        LAST_LOG.store(now.max(1), Ordering::Relaxed);
        sturdy_rt::println!("web: db: {e}");
    }
    if e.unreachable() {
        Response::text(503, "db unreachable")
    } else {
        Response::text(502, "db error")
    }
}

fn not_allowed(allow: &'static str) -> Response {
    Response {
        allow: Some(allow),
        ..Response::text(405, "method not allowed")
    }
}

const PAGE_TOP: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Guestbook</title>
<style>
body { font-family: sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em; color: #222; }
form p { margin: 0.5em 0; }
input, textarea { width: 100%; box-sizing: border-box; font: inherit; }
article { border-top: 1px solid #ddd; padding: 0.5em 0; }
article h3 { margin: 0; font-size: 1em; }
article p { margin: 0.25em 0; white-space: pre-wrap; }
</style>
</head>
<body>
<h1>Guestbook</h1>
<form method="post" action="/">
<p><label>Name<br><input name="name" maxlength="64" required></label></p>
<p><label>Message<br><textarea name="message" maxlength="1024" rows="4" required></textarea></label></p>
<p><button type="submit">Sign the guestbook</button></p>
</form>
"#;
