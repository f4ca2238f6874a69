//! The command set and its replies, byte for byte those of Redis 7 (`t_string.c`, `db.c`,
//! `server.c`, `config.c`), for: PING, GET, SET, DEL, INCR, EXISTS, KEYS, DBSIZE, SELECT, QUIT,
//! and the introspection clients send on connecting (COMMAND, CONFIG GET).
//!
//! SET takes NX, XX, GET and KEEPTTL. Keys never expire, so EX, PX, EXAT and PXAT are refused
//! with an error rather than ignored. There is one database, 0.
//!
//! A SET or INCR that would take the live data past [`Db::live_limit`] gets Redis's `-OOM`
//! error (as with `maxmemory` and `noeviction`), and writes nothing. BGREWRITEAOF compacts the
//! log in the round's commit, before its reply, which is Redis's ("Background append only file
//! rewriting started") although the rewrite is done by then.

use alloc::vec::Vec;

use crate::db::{Db, Flow};
use crate::glob::Pattern;
use crate::log::{set_len, BlockDevice, Record};
use crate::num::{format_i64, parse_i64, I64_MAX_LEN};
use crate::resp::{encode, Command};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Name {
    Ping,
    Get,
    Set,
    Del,
    Incr,
    Exists,
    Keys,
    DbSize,
    Select,
    Quit,
    Command,
    Config,
    BgRewriteAof,
}

/// Name, Redis's name and Redis's arity: N means exactly N words, -N at least N.
const COMMANDS: [(Name, &str, isize); 13] = [
    (Name::Ping, "ping", -1),
    (Name::Get, "get", 2),
    (Name::Set, "set", -3),
    (Name::Del, "del", -2),
    (Name::Incr, "incr", 2),
    (Name::Exists, "exists", -2),
    (Name::Keys, "keys", 2),
    (Name::DbSize, "dbsize", 1),
    (Name::Select, "select", 2),
    (Name::Quit, "quit", -1),
    (Name::Command, "command", -1),
    (Name::Config, "config", -2),
    (Name::BgRewriteAof, "bgrewriteaof", 1),
];

/// What CONFIG GET reports: the truth about this server, in Redis's terms (every write is in the
/// log before its reply, there is no snapshotting, one database). `appendfsync` is `always`
/// when the device flushes to stable storage before each reply and `no` when it cannot flush
/// ([`BlockDevice::durable_flush`]).
const CONFIG: [(&str, &str); 4] = [
    ("appendfsync", "always"),
    ("appendonly", "yes"),
    ("databases", "1"),
    ("save", ""),
];

/// Redis's `shared.oomerr`.
const OOM: &[u8] = b"OOM command not allowed when used memory > 'maxmemory'.";
const NOT_AN_INTEGER: &[u8] = b"ERR value is not an integer or out of range";
const SYNTAX_ERROR: &[u8] = b"ERR syntax error";

impl<D: BlockDevice> Db<D> {
    /// Executes one command, appending its reply to `out`. The reply may be sent only after the
    /// next [`commit`](Db::commit) (see [`Db`]).
    pub fn execute(&mut self, mut command: Command, out: &mut Vec<u8>) -> Flow {
        // The parser never yields an empty command; Redis ignores empty requests too.
        let Some(first) = command.first() else {
            return Flow::Continue;
        };
        let Some(&(name, lower, arity)) = COMMANDS
            .iter()
            .find(|(_, lower, _)| lower.as_bytes().eq_ignore_ascii_case(first))
        else {
            unknown_command(&command, out);
            return Flow::Continue;
        };
        if !arity_ok(arity, command.len()) {
            wrong_arity(lower.as_bytes(), out);
            return Flow::Continue;
        }
        match name {
            Name::Ping => match &command[1..] {
                [] => encode::simple(out, "PONG"),
                [message] => encode::bulk(out, message),
                _ => wrong_arity(b"ping", out),
            },
            Name::Get => match self.store.get(&command[1]) {
                Some(value) => encode::bulk(out, value),
                None => encode::null(out),
            },
            Name::Set => self.set(&mut command, out),
            Name::Del => self.del(&command[1..], out),
            Name::Incr => self.incr(&mut command, out),
            Name::Exists => {
                let n = command[1..]
                    .iter()
                    .filter(|key| self.store.contains(key))
                    .count();
                encode::integer(out, n as i64);
            }
            Name::Keys => self.keys(&command[1], out),
            Name::DbSize => encode::integer(out, self.store.len() as i64),
            Name::Select => match parse_i64(&command[1]).map(i32::try_from) {
                Some(Ok(0)) => encode::simple(out, "OK"),
                Some(Ok(_)) => encode::error(out, b"ERR DB index is out of range"),
                Some(Err(_)) => encode::error(
                    out,
                    b"ERR value is out of range, value must between -2147483648 and 2147483647",
                ),
                None => encode::error(out, NOT_AN_INTEGER),
            },
            Name::Quit => {
                encode::simple(out, "OK");
                return Flow::Close;
            }
            Name::Command => command_command(&command, out),
            Name::Config => config(&command, self.log.durable_flush(), out),
            Name::BgRewriteAof => {
                self.rewrite = true;
                encode::simple(out, "Background append only file rewriting started");
            }
        }
        Flow::Continue
    }

    /// `SET key value [NX | XX] [GET] [KEEPTTL]`, options parsed as Redis parses them
    /// (`parseExtendedStringArgumentsOrReply`).
    fn set(&mut self, command: &mut Command, out: &mut Vec<u8>) {
        let (mut nx, mut xx, mut get, mut keepttl, mut expire) = (false, false, false, false, None);
        let mut i = 3;
        while i < command.len() {
            let opt = command[i].to_ascii_uppercase();
            let has_next = i + 1 < command.len();
            match opt.as_slice() {
                b"NX" if !xx => nx = true,
                b"XX" if !nx => xx = true,
                b"GET" => get = true,
                b"KEEPTTL" if expire.is_none() => keepttl = true,
                // Redis accepts the same expiry option twice (the last wins), but not two kinds.
                b"EX" | b"PX" | b"EXAT" | b"PXAT"
                    if !keepttl && has_next && expire.as_ref().is_none_or(|kind| *kind == opt) =>
                {
                    expire = Some(opt);
                    i += 1;
                }
                _ => return encode::error(out, SYNTAX_ERROR),
            }
            i += 1;
        }
        if expire.is_some() {
            return encode::error(
                out,
                b"ERR key expiry (EX, PX, EXAT, PXAT) is not supported by this server",
            );
        }
        let old = self.store.get(&command[1]);
        let found = old.is_some();
        let old = get.then(|| old.map(<[u8]>::to_vec));
        if (!nx || !found) && (!xx || found) {
            let value = core::mem::take(&mut command[2]);
            let key = core::mem::take(&mut command[1]);
            if !self.write(
                &Record::Set {
                    key: &key,
                    value: &value,
                },
                out,
            ) {
                return;
            }
            self.store.set(key, value);
            if !get {
                encode::simple(out, "OK");
            }
        } else if !get {
            encode::null(out);
        }
        match old {
            Some(Some(value)) => encode::bulk(out, &value),
            Some(None) => encode::null(out),
            None => {}
        }
    }

    fn del(&mut self, keys: &[Vec<u8>], out: &mut Vec<u8>) {
        // Each existing key once: `DEL a a` deletes one key.
        let mut existing: Vec<&[u8]> = keys
            .iter()
            .map(Vec::as_slice)
            .filter(|key| self.store.contains(key))
            .collect();
        existing.sort_unstable();
        existing.dedup();
        let n = existing.len() as i64;
        // Deleting nothing writes nothing.
        if n > 0
            && !self.write(
                &Record::Del {
                    keys: existing.clone(),
                },
                out,
            )
        {
            return;
        }
        for key in existing {
            self.store.remove(key);
        }
        encode::integer(out, n);
    }

    fn incr(&mut self, command: &mut Command, out: &mut Vec<u8>) {
        let key = core::mem::take(&mut command[1]);
        let current = match self.store.get(&key) {
            None => 0,
            Some(value) => match parse_i64(value) {
                Some(n) => n,
                None => return encode::error(out, NOT_AN_INTEGER),
            },
        };
        let Some(next) = current.checked_add(1) else {
            return encode::error(out, b"ERR increment or decrement would overflow");
        };
        let mut digits = [0; I64_MAX_LEN];
        let value = format_i64(next, &mut digits);
        if self.write(&Record::Set { key: &key, value }, out) {
            self.store.set(key, value.to_vec());
            encode::integer(out, next);
        }
    }

    fn keys(&self, pattern: &[u8], out: &mut Vec<u8>) {
        // Redis's KEYS lists every key for `*` without matching, so `*` alone also lists the
        // empty key, which the matcher says `*` does not match.
        let all = pattern == b"*";
        let pattern = Pattern::new(pattern);
        let keys: Vec<&[u8]> = self
            .store
            .keys()
            .filter(|key| all || pattern.matches(key))
            .collect();
        encode::array(out, keys.len());
        for key in keys {
            encode::bulk(out, key);
        }
    }

    /// Stages `record`; `false`, with the error replied, if it would take the live data past
    /// the limit or the log refuses it.
    fn write(&mut self, record: &Record<'_>, out: &mut Vec<u8>) -> bool {
        if let Record::Set { key, value } = record {
            let old = self
                .store
                .get(key)
                .map_or(0, |old| set_len(key.len(), old.len()));
            let live = self.store.bytes() - old as u64 + set_len(key.len(), value.len()) as u64;
            if live > self.live_limit() {
                encode::error(out, OOM);
                return false;
            }
        }
        match self.log.stage(record) {
            Ok(()) => true,
            Err(e) => {
                let mut msg = b"ERR ".to_vec();
                msg.extend_from_slice(alloc::format!("{e}").as_bytes());
                encode::error(out, &msg);
                false
            }
        }
    }
}

fn arity_ok(arity: isize, words: usize) -> bool {
    match usize::try_from(arity) {
        Ok(exact) => words == exact,
        Err(_) => words >= arity.unsigned_abs(),
    }
}

fn wrong_arity(name: &[u8], out: &mut Vec<u8>) {
    let mut msg = b"ERR wrong number of arguments for '".to_vec();
    msg.extend_from_slice(name);
    msg.extend_from_slice(b"' command");
    encode::error(out, &msg);
}

/// Redis's message (`processCommand`), including its C-string truncation at the first NUL and
/// its 128-byte caps on the name and on the argument list.
fn unknown_command(command: &Command, out: &mut Vec<u8>) {
    let mut msg = b"ERR unknown command '".to_vec();
    msg.extend_from_slice(c_str(&command[0], 128));
    msg.extend_from_slice(b"', with args beginning with: ");
    let mut args = Vec::new();
    for arg in &command[1..] {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        args.push(b'\'');
        args.extend_from_slice(c_str(arg, room));
        args.extend_from_slice(b"' ");
    }
    msg.extend_from_slice(&args);
    encode::error(out, &msg);
}

fn unknown_subcommand(command: &Command, out: &mut Vec<u8>) {
    let mut msg = b"ERR unknown subcommand '".to_vec();
    msg.extend_from_slice(c_str(&command[1], 128));
    msg.extend_from_slice(b"'. Try ");
    msg.extend_from_slice(&command[0].to_ascii_uppercase());
    msg.extend_from_slice(b" HELP.");
    encode::error(out, &msg);
}

/// What C's `%.Ns` prints of `bytes`.
fn c_str(bytes: &[u8], max: usize) -> &[u8] {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..len.min(max)]
}

/// `COMMAND [DOCS | INFO | COUNT]`. Clients ask for the command table to drive hints and
/// key-slot routing; an empty one makes them use their built-in knowledge.
fn command_command(command: &Command, out: &mut Vec<u8>) {
    let Some(sub) = command.get(1) else {
        return encode::array(out, 0);
    };
    match sub.to_ascii_lowercase().as_slice() {
        b"docs" | b"info" => encode::array(out, 0),
        b"count" if command.len() == 2 => encode::integer(out, COMMANDS.len() as i64),
        b"count" => wrong_arity(b"command|count", out),
        _ => unknown_subcommand(command, out),
    }
}

/// `CONFIG GET pattern [pattern ...]`, matching names without regard to case as Redis does.
fn config(command: &Command, fsync: bool, out: &mut Vec<u8>) {
    if !command[1].eq_ignore_ascii_case(b"get") {
        return unknown_subcommand(command, out);
    }
    if command.len() < 3 {
        return wrong_arity(b"config|get", out);
    }
    let patterns: Vec<Pattern> = command[2..]
        .iter()
        .map(|p| Pattern::new(&p.to_ascii_lowercase()))
        .collect();
    let found: Vec<&(&str, &str)> = CONFIG
        .iter()
        .filter(|(name, _)| patterns.iter().any(|p| p.matches(name.as_bytes())))
        .collect();
    encode::array(out, 2 * found.len());
    for &(name, value) in found {
        let value = match name {
            "appendfsync" if !fsync => "no",
            _ => value,
        };
        encode::bulk(out, name.as_bytes());
        encode::bulk(out, value.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::{String, ToString};
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::log::REGION_LEN;
    use crate::testdev::MemDevice;

    fn open(dev: &MemDevice) -> Db<MemDevice> {
        Db::open(dev.clone(), 1).expect("open").0
    }

    /// Executes and commits one command; its reply and flow.
    fn run(db: &mut Db<MemDevice>, words: &[&[u8]]) -> (Vec<u8>, Flow) {
        let mut out = Vec::new();
        let flow = db.execute(words.iter().map(|w| w.to_vec()).collect(), &mut out);
        db.commit().unwrap();
        (out, flow)
    }

    fn reply(db: &mut Db<MemDevice>, words: &[&[u8]]) -> String {
        run(db, words).0.escape_ascii().to_string()
    }

    // Generated from a real Redis 7.0, fed this sequence from an empty database.
    const SCRIPT: &[(&[&[u8]], &[u8])] = &[
        (&[b"PING"], b"+PONG\r\n"),
        (&[b"ping", b"hello"], b"$5\r\nhello\r\n"),
        (&[b"PING", b"x\r\ny"], b"$4\r\nx\r\ny\r\n"),
        (&[b"PING", b"a", b"b"], b"-ERR wrong number of arguments for 'ping' command\r\n"),
        (&[b"GET"], b"-ERR wrong number of arguments for 'get' command\r\n"),
        (&[b"GET", b"nokey"], b"$-1\r\n"),
        (&[b"SET", b"k1", b"v1"], b"+OK\r\n"),
        (&[b"GET", b"k1"], b"$2\r\nv1\r\n"),
        (&[b"get", b"k1", b"extra"], b"-ERR wrong number of arguments for 'get' command\r\n"),
        (&[b"SET", b"k1"], b"-ERR wrong number of arguments for 'set' command\r\n"),
        (&[b"SET", b"bin", b"\0\x01\r\n\xff"], b"+OK\r\n"),
        (&[b"GET", b"bin"], b"$5\r\n\0\x01\r\n\xff\r\n"),
        (&[b"SET", b"", b"empty key"], b"+OK\r\n"),
        (&[b"GET", b""], b"$9\r\nempty key\r\n"),
        (&[b"SET", b"k2", b"v", b"NX"], b"+OK\r\n"),
        (&[b"SET", b"k2", b"w", b"NX"], b"$-1\r\n"),
        (&[b"GET", b"k2"], b"$1\r\nv\r\n"),
        (&[b"SET", b"k2", b"w", b"xx"], b"+OK\r\n"),
        (&[b"SET", b"k3", b"w", b"XX"], b"$-1\r\n"),
        (&[b"EXISTS", b"k3"], b":0\r\n"),
        (&[b"SET", b"k2", b"x", b"GET"], b"$1\r\nw\r\n"),
        (&[b"SET", b"k4", b"x", b"GET"], b"$-1\r\n"),
        (&[b"SET", b"k4", b"y", b"NX", b"GET"], b"$1\r\nx\r\n"),
        (&[b"SET", b"k5", b"y", b"nx", b"get"], b"$-1\r\n"),
        (&[b"SET", b"k6", b"y", b"XX", b"GET"], b"$-1\r\n"),
        (&[b"SET", b"k2", b"z", b"NX", b"XX"], b"-ERR syntax error\r\n"),
        (&[b"SET", b"k2", b"z", b"XX", b"NX"], b"-ERR syntax error\r\n"),
        (&[b"SET", b"k2", b"z", b"NX", b"NX"], b"$-1\r\n"),
        (&[b"SET", b"k2", b"z", b"KEEPTTL"], b"+OK\r\n"),
        (&[b"SET", b"k2", b"z", b"GET", b"GET"], b"$1\r\nz\r\n"),
        (&[b"SET", b"k2", b"z", b"foo"], b"-ERR syntax error\r\n"),
        (&[b"SET", b"k2", b"z", b"EX"], b"-ERR syntax error\r\n"),
        (&[b"SET", b"k2", b"z", b"EX", b"10", b"PX", b"100"], b"-ERR syntax error\r\n"),
        (&[b"SET", b"k2", b"z", b"EX", b"10", b"KEEPTTL"], b"-ERR syntax error\r\n"),
        (&[b"SET", b"k2", b"z", b"KEEPTTL", b"EX", b"10"], b"-ERR syntax error\r\n"),
        (&[b"GET", b"k2"], b"$1\r\nz\r\n"),
        (&[b"DEL"], b"-ERR wrong number of arguments for 'del' command\r\n"),
        (&[b"DEL", b"nokey"], b":0\r\n"),
        (&[b"DEL", b"k1", b"k1", b"k2", b"nokey"], b":2\r\n"),
        (&[b"GET", b"k1"], b"$-1\r\n"),
        (&[b"EXISTS"], b"-ERR wrong number of arguments for 'exists' command\r\n"),
        (&[b"EXISTS", b"bin", b"bin", b"nokey", b"k4"], b":3\r\n"),
        (&[b"INCR", b"ctr"], b":1\r\n"),
        (&[b"INCR", b"CTR"], b":1\r\n"),
        (&[b"incr", b"ctr"], b":2\r\n"),
        (&[b"GET", b"ctr"], b"$1\r\n2\r\n"),
        (&[b"INCR"], b"-ERR wrong number of arguments for 'incr' command\r\n"),
        (&[b"INCR", b"a", b"b"], b"-ERR wrong number of arguments for 'incr' command\r\n"),
        (&[b"INCR", b"bin"], b"-ERR value is not an integer or out of range\r\n"),
        (&[b"SET", b"n", b"9223372036854775806"], b"+OK\r\n"),
        (&[b"INCR", b"n"], b":9223372036854775807\r\n"),
        (&[b"INCR", b"n"], b"-ERR increment or decrement would overflow\r\n"),
        (&[b"GET", b"n"], b"$19\r\n9223372036854775807\r\n"),
        (&[b"SET", b"n", b"-9223372036854775808"], b"+OK\r\n"),
        (&[b"INCR", b"n"], b":-9223372036854775807\r\n"),
        (&[b"SET", b"n", b" 1"], b"+OK\r\n"),
        (&[b"INCR", b"n"], b"-ERR value is not an integer or out of range\r\n"),
        (&[b"SET", b"n", b"01"], b"+OK\r\n"),
        (&[b"INCR", b"n"], b"-ERR value is not an integer or out of range\r\n"),
        (&[b"SET", b"n", b"+1"], b"+OK\r\n"),
        (&[b"INCR", b"n"], b"-ERR value is not an integer or out of range\r\n"),
        (&[b"SET", b"n", b"-0"], b"+OK\r\n"),
        (&[b"INCR", b"n"], b"-ERR value is not an integer or out of range\r\n"),
        (&[b"SET", b"n", b""], b"+OK\r\n"),
        (&[b"INCR", b"n"], b"-ERR value is not an integer or out of range\r\n"),
        (&[b"SET", b"n", b"-1"], b"+OK\r\n"),
        (&[b"INCR", b"n"], b":0\r\n"),
        (&[b"INCR", b"n"], b":1\r\n"),
        (&[b"GET", b"n"], b"$1\r\n1\r\n"),
        (&[b"SET", b"n", b"1.5"], b"+OK\r\n"),
        (&[b"INCR", b"n"], b"-ERR value is not an integer or out of range\r\n"),
        (&[b"SET", b"n", b"99999999999999999999"], b"+OK\r\n"),
        (&[b"INCR", b"n"], b"-ERR value is not an integer or out of range\r\n"),
        (&[b"DBSIZE"], b":7\r\n"),
        (&[b"DBSIZE", b"x"], b"-ERR wrong number of arguments for 'dbsize' command\r\n"),
        (&[b"SELECT", b"0"], b"+OK\r\n"),
        (&[b"SELECT", b"-1"], b"-ERR DB index is out of range\r\n"),
        (&[b"SELECT", b"x"], b"-ERR value is not an integer or out of range\r\n"),
        (&[b"SELECT", b"99999999999"], b"-ERR value is out of range, value must between -2147483648 and 2147483647\r\n"),
        (&[b"SELECT"], b"-ERR wrong number of arguments for 'select' command\r\n"),
        (&[b"KEYS"], b"-ERR wrong number of arguments for 'keys' command\r\n"),
        (&[b"KEYS", b"a", b"b"], b"-ERR wrong number of arguments for 'keys' command\r\n"),
        (&[b"FOO"], b"-ERR unknown command 'FOO', with args beginning with: \r\n"),
        (&[b"foo", b"a", b"b"], b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"),
        (&[b"foo", b"a", b"b\r\nc", b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"], b"-ERR unknown command 'foo', with args beginning with: 'a' 'b  c' 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' \r\n"),
        (&[b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", b"a"], b"-ERR unknown command 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', with args beginning with: 'a' \r\n"),
        (&[b"ab\0cd", b"e\0f", b"g"], b"-ERR unknown command 'ab', with args beginning with: 'e' 'g' \r\n"),
        (&[b"foo", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij", b"abcdefghij"], b"-ERR unknown command 'foo', with args beginning with: 'abcdefghij' 'abcdefghij' 'abcdefghij' 'abcdefghij' 'abcdefghij' 'abcdefghij' 'abcdefghij' 'abcdefghij' 'abcdefghij' 'abcdefghij' \r\n"),
        (&[b"foo", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a", b"a"], b"-ERR unknown command 'foo', with args beginning with: 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' 'a' \r\n"),
        (&[b"", b"a"], b"-ERR unknown command '', with args beginning with: 'a' \r\n"),
        (&[b"CONFIG"], b"-ERR wrong number of arguments for 'config' command\r\n"),
        (&[b"CONFIG", b"foo", b"bar"], b"-ERR unknown subcommand 'foo'. Try CONFIG HELP.\r\n"),
        (&[b"config", b"get"], b"-ERR wrong number of arguments for 'config|get' command\r\n"),
        (&[b"COMMAND", b"COUNTX"], b"-ERR unknown subcommand 'COUNTX'. Try COMMAND HELP.\r\n"),
        (&[b"COMMAND", b"COUNT", b"x"], b"-ERR wrong number of arguments for 'command|count' command\r\n"),
    ];

    #[test]
    fn replies_are_those_of_redis() {
        let dev = MemDevice::new(512, 64);
        let mut db = open(&dev);
        for &(words, expected) in SCRIPT {
            let shown: Vec<_> = words.iter().map(|w| w.escape_ascii().to_string()).collect();
            assert_eq!(
                reply(&mut db, words),
                expected.escape_ascii().to_string(),
                "{shown:?}"
            );
        }
        // And the writes among them survive a restart.
        let store = db.store().clone();
        assert_eq!(open(&dev).store(), &store);
    }

    #[test]
    fn keys_lists_matches_in_byte_order() {
        let mut db = open(&MemDevice::new(512, 64));
        for key in [&b"user:2"[..], b"user:10", b"", b"admin", b"user:1"] {
            run(&mut db, &[b"SET", key, b"v"]);
        }
        let list = |keys: &[&str]| {
            let mut out = Vec::new();
            encode::array(&mut out, keys.len());
            keys.iter()
                .for_each(|k| encode::bulk(&mut out, k.as_bytes()));
            out.escape_ascii().to_string()
        };
        assert_eq!(
            reply(&mut db, &[b"KEYS", b"*"]),
            list(&["", "admin", "user:1", "user:10", "user:2"])
        );
        assert_eq!(
            reply(&mut db, &[b"KEYS", b"**"]),
            list(&["admin", "user:1", "user:10", "user:2"])
        );
        assert_eq!(
            reply(&mut db, &[b"KEYS", b"user:?"]),
            list(&["user:1", "user:2"])
        );
        assert_eq!(reply(&mut db, &[b"KEYS", b"user:[^1]*"]), list(&["user:2"]));
        assert_eq!(reply(&mut db, &[b"KEYS", b"nothing"]), "*0\\r\\n");
    }

    #[test]
    fn what_clients_ask_on_connecting() {
        let mut db = open(&MemDevice::new(512, 8));
        // redis-benchmark reads these two; redis-cli asks for COMMAND DOCS.
        assert_eq!(
            reply(&mut db, &[b"CONFIG", b"GET", b"save"]),
            "*2\\r\\n$4\\r\\nsave\\r\\n$0\\r\\n\\r\\n"
        );
        assert_eq!(
            reply(&mut db, &[b"config", b"get", b"APPENDONLY"]),
            "*2\\r\\n$10\\r\\nappendonly\\r\\n$3\\r\\nyes\\r\\n"
        );
        assert_eq!(
            reply(&mut db, &[b"CONFIG", b"GET", b"append*", b"*fsync"]),
            "*4\\r\\n$11\\r\\nappendfsync\\r\\n$6\\r\\nalways\\r\\n$10\\r\\nappendonly\\r\\n$3\\r\\nyes\\r\\n"
        );
        assert_eq!(
            reply(&mut db, &[b"CONFIG", b"GET", b"maxmemory"]),
            "*0\\r\\n"
        );
        assert_eq!(reply(&mut db, &[b"COMMAND", b"DOCS"]), "*0\\r\\n");
        assert_eq!(reply(&mut db, &[b"COMMAND"]), "*0\\r\\n");
        assert_eq!(reply(&mut db, &[b"COMMAND", b"count"]), ":13\\r\\n");
    }

    /// Without a flush that reaches stable storage, kv says so as Redis would.
    #[test]
    fn appendfsync_is_no_without_a_durable_flush() {
        let mut db = open(&MemDevice::new(512, 8).without_durable_flush());
        assert_eq!(
            reply(&mut db, &[b"CONFIG", b"GET", b"appendfsync"]),
            "*2\\r\\n$11\\r\\nappendfsync\\r\\n$2\\r\\nno\\r\\n"
        );
    }

    #[test]
    fn quit_replies_then_closes() {
        let mut db = open(&MemDevice::new(512, 8));
        assert_eq!(run(&mut db, &[b"QUIT"]), (b"+OK\r\n".to_vec(), Flow::Close));
        assert_eq!(
            run(&mut db, &[b"quit", b"now"]),
            (b"+OK\r\n".to_vec(), Flow::Close)
        );
        assert_eq!(run(&mut db, &[b"PING"]).1, Flow::Continue);
    }

    #[test]
    fn expiry_is_refused_not_ignored() {
        let mut db = open(&MemDevice::new(512, 8));
        let refused = "-ERR key expiry (EX, PX, EXAT, PXAT) is not supported by this server\\r\\n";
        for opt in [&b"EX"[..], b"px", b"EXAT", b"pxat"] {
            assert_eq!(reply(&mut db, &[b"SET", b"k", b"v", opt, b"10"]), refused);
        }
        assert_eq!(
            reply(&mut db, &[b"SET", b"k", b"v", b"EX", b"10", b"EX", b"20"]),
            refused
        );
        assert_eq!(reply(&mut db, &[b"EXISTS", b"k"]), ":0\\r\\n");
    }

    #[test]
    fn incr_keeps_the_canonical_form() {
        let mut db = open(&MemDevice::new(512, 8));
        run(&mut db, &[b"SET", b"n", b"-2"]);
        assert_eq!(reply(&mut db, &[b"INCR", b"n"]), ":-1\\r\\n");
        assert_eq!(reply(&mut db, &[b"INCR", b"n"]), ":0\\r\\n");
        assert_eq!(reply(&mut db, &[b"GET", b"n"]), "$1\\r\\n0\\r\\n");
        run(&mut db, &[b"SET", b"n", b"9223372036854775807"]);
        assert_eq!(
            reply(&mut db, &[b"INCR", b"n"]),
            "-ERR increment or decrement would overflow\\r\\n"
        );
        assert_eq!(
            reply(&mut db, &[b"GET", b"n"]),
            "$19\\r\\n9223372036854775807\\r\\n"
        );
    }

    /// Writes that would take the live data past the limit get Redis's -OOM and change
    /// nothing; reads and DEL still work, and after a DEL there is room again.
    #[test]
    fn writes_past_the_live_limit_are_refused_with_oom() {
        let dev = MemDevice::new(512, 4);
        let mut db = open(&dev);
        // A region of 1024 bytes less its 45-byte header, three quarters of it.
        assert_eq!(db.live_limit(), 732);
        let oom = "-OOM command not allowed when used memory > \\'maxmemory\\'.\\r\\n";
        // A SET record is 26 bytes plus key and value.
        assert_eq!(reply(&mut db, &[b"SET", b"a", &[b'x'; 706]]), "+OK\\r\\n");
        assert_eq!(db.store().bytes(), 732);
        assert_eq!(reply(&mut db, &[b"SET", b"b", b""]), oom);
        assert_eq!(reply(&mut db, &[b"INCR", b"b"]), oom);
        assert_eq!(reply(&mut db, &[b"SET", b"a", &[b'y'; 707], b"GET"]), oom);
        assert_eq!(
            reply(&mut db, &[b"SET", b"a", &[b'z'; 706]]),
            "+OK\\r\\n",
            "a write that keeps the data at the limit is accepted"
        );
        assert_eq!(reply(&mut db, &[b"EXISTS", b"b"]), ":0\\r\\n");
        assert_eq!(reply(&mut db, &[b"DEL", b"missing"]), ":0\\r\\n");
        assert_eq!(reply(&mut db, &[b"DEL", b"a"]), ":1\\r\\n");
        assert_eq!(reply(&mut db, &[b"SET", b"b", b"1"]), "+OK\\r\\n");
        assert_eq!(reply(&mut db, &[b"INCR", b"b"]), ":2\\r\\n");
        let store = db.store().clone();
        assert_eq!(open(&dev).store(), &store);
    }

    /// BGREWRITEAOF answers as Redis does and compacts the log before that answer.
    #[test]
    fn bgrewriteaof_compacts_before_replying() {
        let dev = MemDevice::new(512, 16);
        let mut db = open(&dev);
        for i in 0..10 {
            run(&mut db, &[b"SET", b"k", alloc::format!("{i}").as_bytes()]);
        }
        assert_eq!(db.log().generation(), 1);
        let mut out = Vec::new();
        db.execute(vec![b"bgrewriteaof".to_vec()], &mut out);
        assert!(db.has_uncommitted(), "the reply waits for the commit");
        db.commit().unwrap();
        assert_eq!(out, b"+Background append only file rewriting started\r\n");
        assert_eq!(db.log().generation(), 2);
        assert_eq!(db.log().end(), (REGION_LEN + set_len(1, 1)) as u64);
        assert_eq!(
            reply(&mut db, &[b"BGREWRITEAOF", b"x"]),
            "-ERR wrong number of arguments for \\'bgrewriteaof\\' command\\r\\n"
        );
        assert_eq!(reply(&mut db, &[b"GET", b"k"]), "$1\\r\\n9\\r\\n");
        assert_eq!(open(&dev).store(), db.store());
    }

    #[test]
    fn a_multi_key_del_is_one_record() {
        let dev = MemDevice::new(512, 8);
        let mut db = open(&dev);
        for key in [b"a", b"b", b"c"] {
            run(&mut db, &[b"SET", key, b"v"]);
        }
        let end = db.log().end();
        assert_eq!(
            reply(&mut db, &[b"DEL", b"c", b"a", b"a", b"zz"]),
            ":2\\r\\n"
        );
        // One header, the op, the count and two length-prefixed keys.
        assert_eq!(db.log().end() - end, 20 + 1 + 4 + 2 * (4 + 1));
        assert_eq!(
            open(&dev).store().keys().collect::<Vec<_>>(),
            vec![&b"b"[..]]
        );
    }
}
