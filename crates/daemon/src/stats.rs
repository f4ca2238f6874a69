//! Resource use of a service: its monitor's CPU time and memory (from /proc) and its fabric
//! port's counters.

use serde::{Deserialize, Serialize};
use sturdy_fabric::PortStats;

/// Clock ticks per second of /proc's CPU times: USER_HZ, fixed at 100 by the Linux ABI on
/// x86-64 whatever the kernel's own HZ.
const USER_HZ: u64 = 100;

/// One service's resource use.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// The service.
    pub service: String,
    /// Its running monitor, if any.
    pub pid: Option<u32>,
    /// CPU time the monitor used (user + system, all threads), in milliseconds.
    pub cpu_ms: u64,
    /// The monitor's resident memory (guest pages touched + the monitor), in bytes.
    pub rss_bytes: u64,
    /// Frames and bytes the guest received (the fabric delivered to it): the service's
    /// point of view, as `docker stats` shows a container's.
    pub rx_frames: u64,
    /// See `rx_frames`.
    pub rx_bytes: u64,
    /// Frames and bytes the guest sent into the fabric (dropped ones too).
    pub tx_frames: u64,
    /// See `tx_frames`.
    pub tx_bytes: u64,
    /// Frames of the guest the fabric dropped, all reasons.
    pub drops: u64,
    /// The drops by reason (only reasons that occurred).
    pub drops_by_reason: Vec<(String, u64)>,
    /// Host connections to its published ports the gateway refused or reset: too many from
    /// one source, idle or unanswered too long, the gateway full, or the service not ready.
    #[serde(default)]
    pub connections_refused: u64,
}

/// The stats of service `name`, running as `pid`, with its port's counters.
pub fn of_service(name: &str, pid: Option<u32>, port: Option<PortStats>) -> ServiceStats {
    let mut s = ServiceStats {
        service: name.to_string(),
        pid,
        ..Default::default()
    };
    if let Some(pid) = pid {
        s.cpu_ms = cpu_ms(pid).unwrap_or(0);
        s.rss_bytes = rss_bytes(pid).unwrap_or(0);
    }
    if let Some(port) = port {
        // The port's counters are the fabric's: what it received is what the guest sent.
        s.rx_frames = port.tx.frames;
        s.rx_bytes = port.tx.bytes;
        s.tx_frames = port.rx.frames;
        s.tx_bytes = port.rx.bytes;
        s.drops = port.drops.total();
        s.drops_by_reason = port
            .drops
            .nonzero()
            .map(|(r, n)| (r.name().to_string(), n))
            .collect();
    }
    s
}

/// User + system CPU time of `pid`, in milliseconds.
fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    // Fields 14 and 15 of proc(5) (utime, stime): 12 and 13 after the command.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1000 / USER_HZ)
}

/// When `pid` started, in clock ticks after boot (field 22 of /proc/PID/stat): with the pid,
/// it names one process even after the pid is reused.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat)?.get(19)?.parse().ok()
}

/// Whether `pid` is the process that started at `start_ticks` and has not exited (a zombie,
/// dead but not yet reaped, counts as exited).
pub fn is_alive(pid: u32, start_ticks: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(fields) = stat_fields(&stat) else {
        return false;
    };
    let state = fields.first().copied().unwrap_or("X");
    fields.get(19).and_then(|t| t.parse().ok()) == Some(start_ticks)
        && !matches!(state, "Z" | "X" | "x")
}

/// The fields of /proc/PID/stat after `(command)`, which may itself hold spaces.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

/// Resident memory of `pid` in bytes (VmRSS).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fabric counts what its port received (the guest's frames) as rx; a service's
    /// stats are the guest's point of view, as `docker stats` users read them.
    #[test]
    fn traffic_is_counted_as_the_guest_sees_it() {
        let mut port = PortStats::default();
        port.rx.frames = 10;
        port.rx.bytes = 10_000;
        port.tx.frames = 3;
        port.tx.bytes = 300;
        let s = of_service("web", None, Some(port));
        assert_eq!((s.tx_frames, s.tx_bytes), (10, 10_000), "sent by the guest");
        assert_eq!((s.rx_frames, s.rx_bytes), (3, 300), "received by the guest");
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 1 << 20);
        assert!(cpu_ms(me).is_some());
        let t = start_ticks(me).unwrap();
        assert_eq!(start_ticks(me), Some(t));
        assert!(is_alive(me, t));
        assert!(!is_alive(me, t + 1));
        let s = of_service("x", Some(me), None);
        assert_eq!(s.pid, Some(me));
        assert!(s.rss_bytes > 0);
    }

    #[test]
    fn command_with_spaces_and_parens() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 1 0 999 1 2";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[11], "7");
        assert_eq!(f[19], "999");
    }
}
