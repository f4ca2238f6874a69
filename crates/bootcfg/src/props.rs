//! Property tests: rendering then parsing is the identity for every valid configuration, with
//! application arguments anywhere; `validate` accepts exactly what survives the round trip; the
//! parser never panics.

use core::net::Ipv4Addr;

use proptest::prelude::*;

use crate::{parse, render, BootConfig, Capability, Endpoint, Nic, Proto};

fn label() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,63}"
}

fn cap_name() -> impl Strategy<Value = String> {
    prop_oneof![
        label(),
        (label(), label()).prop_map(|(s, e)| format!("{s}.{e}")),
    ]
}

fn host() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>()
        .prop_map(Ipv4Addr::from)
        .prop_filter("a host address", |a| {
            !(a.is_unspecified() || a.is_broadcast() || a.is_multicast())
        })
}

fn proto() -> impl Strategy<Value = Proto> {
    prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)]
}

fn nic() -> impl Strategy<Value = Nic> {
    (
        "[A-Za-z0-9]{1,67}",
        host(),
        1u8..=32,
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(name, addr, prefix_len, host_bits, with_gw)| {
            let mut nic = Nic {
                name,
                addr,
                prefix_len,
                gateway: None,
            };
            // Any other host address inside the subnet.
            let mask = u32::MAX << (32 - u32::from(prefix_len));
            let gw = Ipv4Addr::from((u32::from(addr) & mask) | (host_bits & !mask));
            let usable = !(gw.is_unspecified() || gw.is_broadcast() || gw.is_multicast());
            if with_gw && usable && gw != addr {
                nic.gateway = Some(gw);
            }
            nic
        })
}

fn capability() -> impl Strategy<Value = Capability> {
    (cap_name(), host(), 1u16.., proto()).prop_map(|(name, addr, port, proto)| Capability {
        name,
        addr,
        port,
        proto,
    })
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (label(), 1u16.., proto()).prop_map(|(name, port, proto)| Endpoint { name, port, proto })
}

/// A configuration that follows every rule: items are generated freely, then those that would
/// break a rule about the whole are dropped.
fn valid_config() -> impl Strategy<Value = BootConfig> {
    (
        prop::collection::vec(nic(), 0..4),
        prop::collection::vec(capability(), 0..6),
        prop::collection::vec(capability(), 0..3),
        prop::collection::vec(endpoint(), 0..4),
    )
        .prop_map(|(mut nics, uses, egress, mut provides)| {
            dedup_by(&mut nics, |n| n.name.clone());
            let mut config = BootConfig {
                nics,
                ..BootConfig::default()
            };
            let mut names = Vec::new();
            for (cap, egress) in uses
                .into_iter()
                .map(|c| (c, false))
                .chain(egress.into_iter().map(|c| (c, true)))
            {
                if names.contains(&cap.name) || config.route(cap.addr).is_none() {
                    continue;
                }
                names.push(cap.name.clone());
                if egress {
                    config.egress.push(cap);
                } else {
                    config.uses.push(cap);
                }
            }
            dedup_by(&mut provides, |e| e.name.clone());
            dedup_by(&mut provides, |e| (e.port, e.proto));
            if !config.nics.is_empty() {
                config.provides = provides;
            }
            config
        })
}

/// Keeps the first item of each key, in order.
fn dedup_by<T, K: PartialEq>(items: &mut Vec<T>, key: impl Fn(&T) -> K) {
    let mut seen = Vec::new();
    items.retain(|item| {
        let k = key(item);
        let new = !seen.contains(&k);
        if new {
            seen.push(k);
        }
        new
    });
}

/// An application argument: no whitespace (the monitor splits on it), not ours.
fn app_arg() -> impl Strategy<Value = String> {
    "[^\\s]{1,24}".prop_filter("not a boot configuration argument", |a| {
        !a.starts_with(crate::PREFIX)
    })
}

proptest! {
    #[test]
    fn render_then_parse_is_the_identity(
        config in valid_config(),
        app in prop::collection::vec((app_arg(), any::<prop::sample::Index>()), 0..6),
    ) {
        prop_assert_eq!(config.validate(), Ok(()));
        let line = render(&config);
        prop_assert!(!line.contains("  ") && !line.starts_with(' ') && !line.ends_with(' '));

        // Application arguments, in their order, interleaved anywhere among ours.
        let mut ours = line.split(' ').filter(|t| !t.is_empty());
        let mut args: Vec<&str> = Vec::new();
        for (arg, skip) in &app {
            let remaining = ours.clone().count();
            args.extend(ours.by_ref().take(skip.index(remaining + 1)));
            args.push(arg);
        }
        args.extend(ours);
        let (parsed, rest) = parse(args).unwrap();
        prop_assert_eq!(parsed, config);
        let expected: Vec<&str> = app.iter().map(|(a, _)| a.as_str()).collect();
        prop_assert_eq!(rest, expected);
    }

    #[test]
    fn validate_accepts_exactly_what_round_trips(
        names in prop::collection::vec("\\PC{0,8}", 4),
        addrs in prop::collection::vec(any::<u32>(), 3),
        prefix_len in 0u8..=40,
        ports in prop::collection::vec(any::<u16>(), 2),
        with_gw in any::<bool>(),
    ) {
        let config = BootConfig {
            nics: vec![Nic {
                name: names[0].clone(),
                addr: addrs[0].into(),
                prefix_len,
                gateway: with_gw.then(|| addrs[1].into()),
            }],
            uses: vec![Capability {
                name: names[1].clone(),
                addr: addrs[2].into(),
                port: ports[0],
                proto: Proto::Tcp,
            }],
            egress: vec![Capability {
                name: names[2].clone(),
                addr: addrs[1].into(),
                port: ports[1],
                proto: Proto::Udp,
            }],
            provides: vec![Endpoint { name: names[3].clone(), port: ports[1], proto: Proto::Udp }],
        };
        let line = render(&config);
        let reparsed = parse(line.split(' ')).map(|(c, rest)| (c, rest.len()));
        match config.validate() {
            Ok(()) => prop_assert_eq!(reparsed, Ok((config, 0))),
            Err(e) => prop_assert!(reparsed.map(|(c, _)| c) != Ok(config), "{}", e),
        }
    }

    #[test]
    fn parse_never_panics_and_what_it_accepts_round_trips(
        args in prop::collection::vec(
            prop_oneof![
                "\\PC{0,30}",
                "--sturdy\\.v1\\.(net|use|egress|provide)=[a-z0-9.:/=]{0,30}",
            ],
            0..6,
        ),
    ) {
        if let Ok((config, _)) = parse(args.iter().map(String::as_str)) {
            prop_assert_eq!(config.validate(), Ok(()));
            let line = render(&config);
            let tokens = line.split(' ').filter(|t| !t.is_empty());
            prop_assert_eq!(parse(tokens).map(|(c, _)| c), Ok(config));
        }
    }
}
