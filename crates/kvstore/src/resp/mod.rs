//! RESP2, the Redis protocol: requests in ([`Parser`]), replies out ([`encode`]).
//!
//! Reference: <https://redis.io/docs/latest/develop/reference/protocol-spec/>; where the spec is
//! silent, Redis 7's `networking.c` is the authority and is cited where it matters.

pub mod encode;
mod inline;
mod parse;

pub use parse::{Command, Limits, Parser, ProtocolError};

#[cfg(test)]
mod tests;
