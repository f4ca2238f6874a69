//! Capture files in the classic libpcap format (LINKTYPE_ETHERNET, microsecond timestamps),
//! which tshark, tcpdump and Wireshark read.
//!
//! The format: a 24-byte file header (magic 0xa1b2c3d4 in the writer's byte order, version
//! 2.4, snapshot length, link type 1), then per frame a 16-byte record header (seconds and
//! microseconds since the epoch, captured length, original length) and the frame's bytes.
#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::switch::FrameSink;

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// The snapshot length written in the header: frames are never cut.
pub const SNAPLEN: u32 = 65535;

/// Writes frames to a pcap stream.
///
/// The switch gives monotonic times ([`Instant`]); the writer turns them into wall-clock
/// timestamps from one reference taken when it was created, so the timestamps are consistent
/// with each other even if the wall clock jumps. A write error stops the capture (the fabric
/// must not stall on a full disk); [`PcapWriter::error`] tells.
pub struct PcapWriter<W: Write> {
    out: io::BufWriter<W>,
    start: Instant,
    start_wall: SystemTime,
    error: Option<io::Error>,
    frames: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header to `out`.
    pub fn new(out: W) -> io::Result<PcapWriter<W>> {
        let mut out = io::BufWriter::new(out);
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs: 0.
        header[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter {
            out,
            start: Instant::now(),
            start_wall: SystemTime::now(),
            error: None,
            frames: 0,
        })
    }

    /// Writes one frame seen at `at`.
    pub fn write_frame(&mut self, at: Instant, frame: &[u8]) -> io::Result<()> {
        let wall = if at >= self.start {
            self.start_wall + (at - self.start)
        } else {
            self.start_wall - (self.start - at)
        };
        let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&(since.as_secs() as u32).to_le_bytes());
        record[4..8].copy_from_slice(&since.subsec_micros().to_le_bytes());
        record[8..12].copy_from_slice(&len.min(SNAPLEN).to_le_bytes());
        record[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&record)?;
        self.out.write_all(&frame[..len.min(SNAPLEN) as usize])?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The write error that stopped the capture, if any.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

impl<W: Write + Send> FrameSink for PcapWriter<W> {
    fn frame(&mut self, at: Instant, frame: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.write_frame(at, frame) {
            tracing::warn!(target: "sturdy_fabric::pcap", "capture stopped: {e}");
            self.error = Some(e);
        }
    }

    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                tracing::warn!(target: "sturdy_fabric::pcap", "capture stopped: {e}");
                self.error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn writes_the_classic_header_and_records() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let t = w.start + Duration::from_micros(1_500_001);
        w.write_frame(t, &[1, 2, 3]).unwrap();
        assert_eq!(w.frames(), 1);
        let start_wall = w.start_wall;
        let b = w.into_inner().unwrap();
        assert_eq!(b.len(), 24 + 16 + 3);
        assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&b[4..8], &[2, 0, 4, 0]);
        assert_eq!(u32::from_le_bytes(b[16..20].try_into().unwrap()), 65535);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
        let want = (start_wall + Duration::from_micros(1_500_001))
            .duration_since(UNIX_EPOCH)
            .unwrap();
        let secs = u32::from_le_bytes(b[24..28].try_into().unwrap());
        let micros = u32::from_le_bytes(b[28..32].try_into().unwrap());
        assert_eq!(
            (u64::from(secs), micros),
            (want.as_secs(), want.subsec_micros())
        );
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(b[36..40].try_into().unwrap()), 3);
        assert_eq!(&b[40..], &[1, 2, 3]);
    }

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
        }
    }

    #[test]
    fn a_write_error_stops_the_capture_quietly() {
        // The header fits the buffer; the error shows on flush.
        let mut w = PcapWriter::new(Full).unwrap();
        FrameSink::frame(&mut w, Instant::now(), &[0; 64]);
        FrameSink::flush(&mut w);
        assert!(w.error().is_some());
        FrameSink::frame(&mut w, Instant::now(), &[0; 64]);
    }
}
