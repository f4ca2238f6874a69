//! The small languages inside values: sizes (`64M`), durations (`2s`), endpoint specs
//! (`6379/tcp`), published ports (`127.0.0.1:8080:80`), egress targets
//! (`203.0.113.7:443/tcp`) and names. Each parser returns what it read or says what is valid.

use std::net::Ipv4Addr;
use std::time::Duration;

use sturdy_bootcfg::Proto;

/// A size such as `64M`, `1G`, `512K`, `4096` is refused (a unit is required): binary units,
/// `K`/`KB`/`KiB` = 1024 bytes and so on, letters in either case.
pub fn size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.chars().take_while(|c| c.is_ascii_digit()).count();
    let (num, unit) = s.split_at(digits);
    let hint = "expected a size such as 64M, 512K or 1G (units B, K, M, G; binary)";
    if num.is_empty() {
        return Err(format!("'{s}' is not a size: {hint}"));
    }
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" => return Err(format!("'{s}' has no unit: {hint}")),
        "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("'{s}' has an unknown unit '{other}': {hint}")),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is too large: {hint}"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// A duration such as `2s`, `500ms`, `1m`, `1m30s`, `1h` (units `ms`, `s`, `m`, `h`; a unit is
/// required).
pub fn duration(s: &str) -> Result<Duration, String> {
    let hint = "expected a duration such as 2s, 500ms, 1m or 1m30s (units ms, s, m, h)";
    let s = s.trim();
    if s.is_empty() {
        return Err(format!("an empty duration: {hint}"));
    }
    let mut rest = s;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!("'{s}' is not a duration: {hint}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{s}' is too long"))?;
        rest = &rest[digits..];
        let letters = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..letters];
        rest = &rest[letters..];
        let part = match unit {
            "" => return Err(format!("'{s}' has no unit: {hint}")),
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            other => return Err(format!("'{s}' has an unknown unit '{other}': {hint}")),
        };
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// A [`duration`] longer than zero.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        Err(format!("'{s}' must be longer than zero"))
    } else {
        Ok(d)
    }
}

/// Formats a duration the way [`duration`] reads it back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 || ms == 0 {
        format!("{ms}ms")
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// A port number, 1 to 65535.
pub fn port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 && !s.starts_with('0') && !s.starts_with('+') => Ok(p),
        _ => Err(format!("'{s}' is not a port number (1 to 65535)")),
    }
}

/// A protocol: `tcp` or `udp`.
pub fn proto(s: &str) -> Result<Proto, String> {
    match s {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => Err(format!("'{s}' is not a protocol (tcp or udp)")),
    }
}

/// An endpoint spec: `6379/tcp`, `53/udp` or `6379` (tcp).
pub fn endpoint(s: &str) -> Result<(u16, Proto), String> {
    let (p, pr) = match s.split_once('/') {
        Some((p, pr)) => (p, proto(pr)?),
        None => (s, Proto::Tcp),
    };
    let p = port(p).map_err(|e| format!("{e}; expected PORT/PROTO such as 6379/tcp"))?;
    Ok((p, pr))
}

/// A published port: `HOST_PORT:GUEST_PORT` or `HOST_IP:HOST_PORT:GUEST_PORT`, optionally
/// followed by `/tcp`.
pub fn published(s: &str) -> Result<(Ipv4Addr, u16, u16), String> {
    let hint = "expected \"HOST_PORT:GUEST_PORT\" such as \"8080:80\", or \"127.0.0.1:8080:80\"";
    let body = match s.split_once('/') {
        Some((body, "tcp")) => body,
        Some((_, other)) => {
            return Err(format!(
                "'{s}': only tcp ports can be published, not '{other}'"
            ))
        }
        None => s,
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (ip, host, guest) = match parts.as_slice() {
        [host, guest] => (Ipv4Addr::UNSPECIFIED, *host, *guest),
        [ip, host, guest] => {
            let ip = ipv4(ip).map_err(|e| format!("'{s}': {e}"))?;
            (ip, *host, *guest)
        }
        [_] => {
            return Err(format!(
                "'{s}' names one port; {hint} (sturdy never picks a host port for you)"
            ))
        }
        _ => return Err(format!("'{s}' is not a published port: {hint}")),
    };
    let host = port(host).map_err(|e| format!("host port {e}; {hint}"))?;
    let guest = port(guest).map_err(|e| format!("guest port {e}; {hint}"))?;
    Ok((ip, host, guest))
}

/// An IPv4 address in dotted decimal.
pub fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse::<Ipv4Addr>()
        .map_err(|_| format!("'{s}' is not an IPv4 address"))
}

/// An egress target: `IPV4:PORT/PROTO` or `IPV4:PORT` (tcp).
pub fn egress(s: &str) -> Result<(Ipv4Addr, u16, Proto), String> {
    let hint = "expected IPV4:PORT/PROTO such as 203.0.113.7:443/tcp";
    let (addr, rest) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not an egress target: {hint}"))?;
    let ip = ipv4(addr).map_err(|e| format!("{e}; {hint}"))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(format!(
            "'{ip}' cannot be an egress target (unspecified, broadcast, multicast or loopback)"
        ));
    }
    let (p, pr) = endpoint(rest).map_err(|e| format!("'{s}': {e}"))?;
    Ok((ip, p, pr))
}

/// Guest memory the monitor can give: at least this much (a deprivileged sturdy-rt guest with
/// a NIC needs its kernel, a stack, 2 MiB of the monitor's tables and 2 MiB of NIC rings).
pub const MEM_MIN: u64 = 8 << 20;
/// At most this much guest memory.
pub const MEM_MAX: u64 = 4096 << 20;

/// Checks `bytes` of guest memory: a multiple of 2 MiB (the monitor maps guest memory in
/// 2 MiB pages and would round anything else down), from [`MEM_MIN`] to [`MEM_MAX`]. The
/// error says what is wrong, to follow "'64K' is ...".
pub fn memory(bytes: u64) -> Result<u64, String> {
    if bytes % (2 << 20) != 0 {
        return Err(
            "not a multiple of 2M (the monitor maps guest memory in 2 MiB pages)".to_string(),
        );
    }
    if !(MEM_MIN..=MEM_MAX).contains(&bytes) {
        return Err(format!(
            "out of range: guest memory must be {}M to {}M (a unikernel with a NIC needs {}M: \
             its kernel, a stack, the monitor's page tables and the NIC's rings)",
            MEM_MIN >> 20,
            MEM_MAX >> 20,
            MEM_MIN >> 20
        ));
    }
    Ok(bytes)
}

/// The least CPU a service may be given: the kernel's smallest CFS quota is 1 ms per 100 ms
/// period.
pub const CPUS_MIN_MILLI: u32 = 10;
/// The most: far above what a monitor (one vCPU and one I/O thread) can use.
pub const CPUS_MAX_MILLI: u32 = 256_000;

/// CPU time such as `0.5` (half of one core), `1` or `1.25`, in thousandths of a core: at most
/// three decimals, from 0.01 to 256. The error says what is wrong, to follow "'x' is ...".
pub fn cpus(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let hint = "expected a number of cores such as 0.5, 1 or 2";
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty())
        || !digits(whole)
        || !digits(frac)
        || (t.contains('.') && frac.is_empty())
    {
        return Err(format!("not a number of cores: {hint}"));
    }
    if frac.len() > 3 {
        return Err(format!("too precise: give at most three decimals ({hint})"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| format!("out of range: {hint}"))?
    };
    let frac: u64 = format!("{frac:0<3}").parse().unwrap_or(0);
    let milli = whole.saturating_mul(1000).saturating_add(frac);
    if !(u64::from(CPUS_MIN_MILLI)..=u64::from(CPUS_MAX_MILLI)).contains(&milli) {
        return Err(format!(
            "out of range: a service gets 0.01 to {} cores (the kernel's smallest CPU quota is 1 ms per 100 ms)",
            CPUS_MAX_MILLI / 1000
        ));
    }
    Ok(milli as u32)
}

/// `milli` thousandths of a core as the file writes them: `0.5`, `1`, `1.25`.
pub fn cpus_text(milli: u32) -> String {
    let (whole, frac) = (milli / 1000, milli % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_string()
    }
}

/// A name of a service, endpoint or volume: 1 to 63 ASCII letters, digits, `-`, `_`, starting
/// with a letter or digit (a boot configuration label, `docs/bootcfg.md`).
pub fn label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{s}' is not a valid name: use 1 to 63 ASCII letters, digits, '-' and '_', starting with a letter or digit"
        ))
    }
}

/// A block device name: 1 to 67 ASCII letters and digits (a Solo5 manifest name).
pub fn device(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.len() <= 67 && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(format!(
            "'{s}' is not a valid block device name: use 1 to 67 ASCII letters and digits (a Solo5 manifest name)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_in_thousandths() {
        assert_eq!(cpus("0.5"), Ok(500));
        assert_eq!(cpus("1"), Ok(1000));
        assert_eq!(cpus(" 2.25 "), Ok(2250));
        assert_eq!(cpus(".75"), Ok(750));
        assert_eq!(cpus("0.01"), Ok(10));
        assert_eq!(cpus("256"), Ok(256_000));
        for bad in [
            "",
            ".",
            "1.",
            "-1",
            "+1",
            "1e3",
            "half",
            "0.5 cores",
            "1.2.3",
        ] {
            let e = cpus(bad).unwrap_err();
            assert!(e.starts_with("not a number of cores"), "{bad:?}: {e}");
        }
        assert!(cpus("0.3333").unwrap_err().starts_with("too precise"));
        for (milli, text) in [(500, "0.5"), (1000, "1"), (1250, "1.25"), (10, "0.01")] {
            assert_eq!(cpus_text(milli), text);
            assert_eq!(cpus(text), Ok(milli));
        }
        for out in ["0", "0.009", "256.001", "99999999999999999999999"] {
            let e = cpus(out).unwrap_err();
            assert!(e.starts_with("out of range"), "{out:?}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("64M"), Ok(64 << 20));
        assert_eq!(size("1G"), Ok(1 << 30));
        assert_eq!(size("512kib"), Ok(512 << 10));
        assert_eq!(size("100B"), Ok(100));
        assert!(size("64").unwrap_err().contains("no unit"));
        assert!(size("64X").unwrap_err().contains("unknown unit 'x'"));
        assert!(size("M").is_err());
        assert!(size("99999999999999999999G").is_err());
        assert!(size("9999999999T").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(duration("2").unwrap_err().contains("no unit"));
        assert!(duration("2d").is_err());
        assert!(duration("").is_err());
        for d in ["2s", "500ms", "1m", "1h", "1500ms", "0ms"] {
            assert_eq!(format_duration(duration(d).unwrap()), d);
        }
    }

    #[test]
    fn ports_and_endpoints() {
        assert_eq!(endpoint("6379/tcp"), Ok((6379, Proto::Tcp)));
        assert_eq!(endpoint("53/udp"), Ok((53, Proto::Udp)));
        assert_eq!(endpoint("80"), Ok((80, Proto::Tcp)));
        assert!(endpoint("0/tcp").is_err());
        assert!(endpoint("80/sctp").is_err());
        assert_eq!(published("8080:80"), Ok((Ipv4Addr::UNSPECIFIED, 8080, 80)));
        assert_eq!(
            published("127.0.0.1:8080:80/tcp"),
            Ok((Ipv4Addr::LOCALHOST, 8080, 80))
        );
        assert!(published("8080").is_err());
        assert!(published("8080:80/udp").is_err());
        assert!(published("70000:80").is_err());
        assert_eq!(
            egress("203.0.113.7:443/tcp"),
            Ok((Ipv4Addr::new(203, 0, 113, 7), 443, Proto::Tcp))
        );
        assert!(egress("203.0.113.7").is_err());
        assert!(egress("0.0.0.0:1/tcp").is_err());
    }

    #[test]
    fn names() {
        assert!(label("db").is_ok());
        assert!(label("my_db-2").is_ok());
        assert!(label("db.kv").is_err());
        assert!(label("-x").is_err());
        assert!(label("").is_err());
        assert!(device("storage").is_ok());
        assert!(device("my-disk").is_err());
    }
}
