//! The rules a whole configuration must follow, beyond each argument's own grammar.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::parse::item;
use crate::render::{self, tokens};
use crate::{BootConfig, Error, Reason};

/// Each item on its own: its rendered argument must be one [`parse`](crate::parse) accepts.
pub(crate) fn items(config: &BootConfig) -> Result<(), Error> {
    for token in tokens(config) {
        item(&token)?;
    }
    Ok(())
}

/// The items together: unique names, one endpoint per port, every capability reachable, a NIC
/// for provided endpoints.
pub(crate) fn together(config: &BootConfig) -> Result<(), Error> {
    unique("NIC", config.nics.iter().map(|n| (&n.name, render::nic(n))))?;
    let uses = config.uses.iter().map(|c| (c, "use"));
    let egress = config.egress.iter().map(|c| (c, "egress"));
    let caps: Vec<_> = uses.chain(egress).collect();
    unique(
        "capability",
        caps.iter()
            .map(|(c, key)| (&c.name, render::capability(key, c))),
    )?;
    unique(
        "endpoint",
        config
            .provides
            .iter()
            .map(|e| (&e.name, render::endpoint(e))),
    )?;

    for (i, e) in config.provides.iter().enumerate() {
        let earlier = config.provides[..i]
            .iter()
            .find(|o| o.port == e.port && o.proto == e.proto);
        if let Some(other) = earlier {
            let reason = Reason::PortTaken {
                port: e.port,
                proto: e.proto,
                by: other.name.clone(),
            };
            return Err(Error::new(render::endpoint(e), reason));
        }
        if config.nics.is_empty() {
            return Err(Error::new(render::endpoint(e), Reason::NoNic));
        }
    }
    for (cap, key) in caps {
        if config.route(cap.addr).is_none() {
            let reason = Reason::Unreachable(cap.addr);
            return Err(Error::new(render::capability(key, cap), reason));
        }
    }
    Ok(())
}

/// Fails on the second item of a name, naming it by its argument.
fn unique<'a>(
    what: &'static str,
    items: impl Iterator<Item = (&'a String, String)>,
) -> Result<(), Error> {
    let mut seen: Vec<&str> = Vec::new();
    for (name, token) in items {
        if seen.contains(&name.as_str()) {
            let reason = Reason::Duplicate {
                what,
                name: name.to_string(),
            };
            return Err(Error::new(token, reason));
        }
        seen.push(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{parse, Capability, Nic, Proto, Reason};

    fn reason(args: &[&str]) -> (String, Reason) {
        let e = parse(args.iter().copied()).unwrap_err();
        (e.token().to_string(), e.reason().clone())
    }

    const NET: &str = "--sturdy.v1.net=service:10.0.0.2/24";

    #[test]
    fn names_are_unique() {
        assert_eq!(
            reason(&[NET, "--sturdy.v1.net=service:10.1.0.2/24"]),
            (
                "--sturdy.v1.net=service:10.1.0.2/24".into(),
                Reason::Duplicate {
                    what: "NIC",
                    name: "service".into()
                }
            )
        );
        // A use and an egress share one namespace: the application asks by name.
        assert_eq!(
            reason(&[
                NET,
                "--sturdy.v1.use=db:10.0.0.3:1/tcp",
                "--sturdy.v1.egress=db:10.0.0.9:2/tcp",
            ]),
            (
                "--sturdy.v1.egress=db:10.0.0.9:2/tcp".into(),
                Reason::Duplicate {
                    what: "capability",
                    name: "db".into()
                }
            )
        );
        assert!(matches!(
            reason(&[
                NET,
                "--sturdy.v1.provide=kv:1/tcp",
                "--sturdy.v1.provide=kv:2/udp"
            ])
            .1,
            Reason::Duplicate {
                what: "endpoint",
                ..
            }
        ));
    }

    #[test]
    fn one_endpoint_per_port_and_protocol() {
        assert_eq!(
            reason(&[
                NET,
                "--sturdy.v1.provide=a:53/udp",
                "--sturdy.v1.provide=b:53/udp"
            ]),
            (
                "--sturdy.v1.provide=b:53/udp".into(),
                Reason::PortTaken {
                    port: 53,
                    proto: Proto::Udp,
                    by: "a".into()
                }
            )
        );
        parse([
            NET,
            "--sturdy.v1.provide=a:53/udp",
            "--sturdy.v1.provide=b:53/tcp",
        ])
        .unwrap();
    }

    #[test]
    fn capabilities_must_be_reachable() {
        assert_eq!(
            reason(&[NET, "--sturdy.v1.egress=egress.0:203.0.113.7:443/tcp"]),
            (
                "--sturdy.v1.egress=egress.0:203.0.113.7:443/tcp".into(),
                Reason::Unreachable([203, 0, 113, 7].into())
            )
        );
        assert_eq!(
            reason(&["--sturdy.v1.use=db:10.0.0.3:1/tcp"]).1,
            Reason::Unreachable([10, 0, 0, 3].into())
        );
        // Through a gateway, wherever the NIC argument is.
        let (c, _) = parse([
            "--sturdy.v1.egress=egress.0:203.0.113.7:443/tcp",
            "--sturdy.v1.net=service:10.0.0.2/24:gw=10.0.0.1",
        ])
        .unwrap();
        assert_eq!(c.route([203, 0, 113, 7].into()), Some(0));
    }

    #[test]
    fn provided_endpoints_need_a_nic() {
        assert_eq!(
            reason(&["--sturdy.v1.provide=kv:6379/tcp"]).1,
            Reason::NoNic
        );
    }

    #[test]
    fn routes_prefer_the_subnet_then_the_first_gateway() {
        let (c, _) = parse([
            "--sturdy.v1.net=a:10.0.0.2/24",
            "--sturdy.v1.net=b:10.1.0.2/16:gw=10.1.0.1",
            "--sturdy.v1.net=c:10.2.0.2/16:gw=10.2.0.1",
        ])
        .unwrap();
        assert_eq!(c.route([10, 0, 0, 77].into()), Some(0));
        assert_eq!(c.route([10, 2, 9, 9].into()), Some(2));
        assert_eq!(c.route([8, 8, 8, 8].into()), Some(1));
    }

    #[test]
    fn validate_names_the_rendered_argument() {
        let mut config = parse([NET]).unwrap().0;
        config.uses.push(Capability {
            name: "db:kv".into(),
            addr: [10, 0, 0, 3].into(),
            port: 1,
            proto: Proto::Tcp,
        });
        let e = config.validate().unwrap_err();
        assert_eq!(e.token(), "--sturdy.v1.use=db:kv:10.0.0.3:1/tcp");
        config.uses.clear();
        config.nics.push(Nic {
            name: "other".into(),
            addr: [10, 9, 0, 2].into(),
            prefix_len: 32,
            gateway: Some([10, 9, 0, 1].into()),
        });
        let e = config.validate().unwrap_err();
        assert!(matches!(e.reason(), Reason::BadGateway { .. }), "{e}");
    }
}
