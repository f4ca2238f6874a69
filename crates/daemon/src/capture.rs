//! Packet capture for the API: a service's port or one of its capabilities, written as a
//! pcap stream (tshark, tcpdump and Wireshark read it) to a channel the API answers with,
//! until a time or frame limit, or until the reader goes away.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sturdy_fabric::pcap::PcapWriter;
use sturdy_fabric::FrameSink;
use tokio::sync::mpsc::Sender;

/// A pcap byte stream of captured frames, sent in chunks (one per frame, the header first).
pub struct Streamed {
    pcap: PcapWriter<Chunks>,
    frames: Arc<AtomicU64>,
    limit: Option<u64>,
}

impl Streamed {
    /// A stream to `out` of at most `limit` frames, counted in `frames`; the pcap header is
    /// sent at once.
    pub fn new(
        out: Sender<Vec<u8>>,
        frames: Arc<AtomicU64>,
        limit: Option<u64>,
    ) -> io::Result<Streamed> {
        let mut pcap = PcapWriter::new(Chunks(out))?;
        FrameSink::flush(&mut pcap);
        if let Some(e) = pcap.error() {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        Ok(Streamed {
            pcap,
            frames,
            limit,
        })
    }
}

impl FrameSink for Streamed {
    fn frame(&mut self, at: Instant, frame: &[u8]) {
        if self
            .limit
            .is_some_and(|n| self.frames.load(Ordering::Relaxed) >= n)
        {
            return;
        }
        self.pcap.frame(at, frame);
        // Each frame goes out now: a capture is watched live (`| tshark -r -`).
        FrameSink::flush(&mut self.pcap);
        if self.pcap.error().is_none() {
            self.frames.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&mut self) {
        FrameSink::flush(&mut self.pcap);
    }
}

/// Bytes to a channel, never blocking the fabric's thread: a reader too slow to keep up
/// ends the capture (the writer then stops) rather than stalling the network.
struct Chunks(Sender<Vec<u8>>);

impl Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .try_send(buf.to_vec())
            .map_err(|_| io::Error::other("the capture's reader is gone or too slow"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_first_then_one_chunk_per_frame() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let frames = Arc::new(AtomicU64::new(0));
        let mut s = Streamed::new(tx, frames.clone(), Some(2)).unwrap();
        let header = rx.try_recv().unwrap();
        assert_eq!(header.len(), 24);
        s.frame(Instant::now(), &[0xaa; 60]);
        let record: Vec<u8> = std::iter::from_fn(|| rx.try_recv().ok())
            .flatten()
            .collect();
        assert_eq!(record.len(), 16 + 60);
        assert_eq!(frames.load(Ordering::Relaxed), 1);
        // The limit: a second frame, not a third.
        s.frame(Instant::now(), &[0xbb; 60]);
        s.frame(Instant::now(), &[0xcc; 60]);
        assert_eq!(frames.load(Ordering::Relaxed), 2);
        let rest: Vec<u8> = std::iter::from_fn(|| rx.try_recv().ok())
            .flatten()
            .collect();
        assert_eq!(rest.len(), 16 + 60);
        // The reader gone: the capture stops counting, nothing panics.
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let frames = Arc::new(AtomicU64::new(0));
        let mut s = Streamed::new(tx, frames.clone(), None).unwrap();
        drop(rx);
        s.frame(Instant::now(), &[0xdd; 60]);
        assert_eq!(frames.load(Ordering::Relaxed), 0);
    }
}
