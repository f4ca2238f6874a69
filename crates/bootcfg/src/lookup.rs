//! Finding a capability or a provided endpoint by the name an application asks for.
//!
//! A guest asks for `db.kv`, or just `db`: a service name finds the one endpoint of that service
//! with the wanted protocol, so `uses: [db]` (every endpoint of db) and `uses: ["db.kv"]` serve
//! the same code. The errors are what a developer needs to read when a deployment is wrong.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::{BootConfig, Capability, Endpoint, Proto};

/// Why a name does not find a capability or endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// No capability has that name, nor is it the service of one.
    NotGiven {
        /// The name asked for.
        name: String,
        /// The names of the capabilities the guest has.
        given: Vec<String>,
    },
    /// The name is a service with several endpoints of the wanted protocol.
    Ambiguous {
        /// The name asked for.
        name: String,
        /// The capabilities it could mean.
        candidates: Vec<String>,
    },
    /// The name exists, but with the other protocol.
    WrongProtocol {
        /// The name asked for.
        name: String,
        /// The protocol asked for.
        wanted: Proto,
        /// The protocol the configuration gives it.
        found: Proto,
    },
    /// The guest does not provide an endpoint of that name.
    NotProvided {
        /// The name asked for.
        name: String,
        /// The names of the endpoints the guest provides.
        provided: Vec<String>,
    },
}

impl BootConfig {
    /// The capability `name` with protocol `proto`: the one named exactly `name`, or else, if
    /// `name` is a service, its only endpoint with that protocol (`db` finds `db.kv`).
    pub fn capability(&self, name: &str, proto: Proto) -> Result<&Capability, LookupError> {
        if let Some(cap) = self.capabilities().find(|c| c.name == name) {
            return check_proto(name, proto, cap.proto).map(|()| cap);
        }
        let of_service: Vec<&Capability> = self
            .capabilities()
            .filter(|c| {
                c.name
                    .strip_prefix(name)
                    .is_some_and(|r| r.starts_with('.'))
            })
            .collect();
        let matching: Vec<&Capability> = of_service
            .iter()
            .copied()
            .filter(|c| c.proto == proto)
            .collect();
        match (matching.as_slice(), of_service.first()) {
            ([cap], _) => Ok(cap),
            ([], None) => Err(LookupError::NotGiven {
                name: name.into(),
                given: self.capabilities().map(|c| c.name.clone()).collect(),
            }),
            ([], Some(other)) => check_proto(name, proto, other.proto).map(|()| *other),
            (several, _) => Err(LookupError::Ambiguous {
                name: name.into(),
                candidates: several.iter().map(|c| c.name.clone()).collect(),
            }),
        }
    }

    /// The endpoint `name` the guest provides, with protocol `proto`.
    pub fn provided(&self, name: &str, proto: Proto) -> Result<&Endpoint, LookupError> {
        let endpoint = self
            .provides
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| LookupError::NotProvided {
                name: name.into(),
                provided: self.provides.iter().map(|e| e.name.clone()).collect(),
            })?;
        check_proto(name, proto, endpoint.proto).map(|()| endpoint)
    }
}

fn check_proto(name: &str, wanted: Proto, found: Proto) -> Result<(), LookupError> {
    if wanted == found {
        Ok(())
    } else {
        Err(LookupError::WrongProtocol {
            name: name.to_string(),
            wanted,
            found,
        })
    }
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            LookupError::NotGiven { name, given } => {
                write!(
                    f,
                    "capability '{name}' was not given to this unikernel (it has: "
                )?;
                list(f, given)?;
                f.write_str(")")
            }
            LookupError::Ambiguous { name, candidates } => {
                write!(f, "capability '{name}' is ambiguous: it could be ")?;
                list(f, candidates)?;
                f.write_str("; ask for one of them by its full name")
            }
            LookupError::WrongProtocol {
                name,
                wanted,
                found,
            } => write!(f, "'{name}' is a {found} endpoint, not {wanted}"),
            LookupError::NotProvided { name, provided } => {
                write!(
                    f,
                    "endpoint '{name}' is not provided by this unikernel (it provides: "
                )?;
                list(f, provided)?;
                f.write_str(")")
            }
        }
    }
}

impl core::error::Error for LookupError {}

/// `a, b, c`, or `none`.
fn list(f: &mut fmt::Formatter, names: &[String]) -> fmt::Result {
    if names.is_empty() {
        return f.write_str("none");
    }
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Nic;

    fn cap(name: &str, port: u16, proto: Proto) -> Capability {
        Capability {
            name: name.into(),
            addr: [10, 0, 0, 3].into(),
            port,
            proto,
        }
    }

    fn config() -> BootConfig {
        BootConfig {
            nics: vec![Nic {
                name: "service".into(),
                addr: [10, 0, 0, 2].into(),
                prefix_len: 24,
                gateway: Some([10, 0, 0, 1].into()),
            }],
            uses: vec![
                cap("db.kv", 6379, Proto::Tcp),
                cap("db.stats", 8125, Proto::Udp),
                cap("cache.a", 1, Proto::Tcp),
                cap("cache.b", 2, Proto::Tcp),
                cap("peer", 7, Proto::Tcp),
            ],
            egress: vec![cap("egress.0", 443, Proto::Tcp)],
            provides: vec![Endpoint {
                name: "http".into(),
                port: 80,
                proto: Proto::Tcp,
            }],
        }
    }

    #[test]
    fn exact_names_and_services_resolve() {
        let c = config();
        assert_eq!(c.capability("db.kv", Proto::Tcp).unwrap().port, 6379);
        assert_eq!(c.capability("db", Proto::Tcp).unwrap().port, 6379);
        assert_eq!(c.capability("db", Proto::Udp).unwrap().port, 8125);
        assert_eq!(c.capability("egress.0", Proto::Tcp).unwrap().port, 443);
        assert_eq!(c.provided("http", Proto::Tcp).unwrap().port, 80);
    }

    #[test]
    fn a_missing_capability_is_named_with_what_the_guest_has() {
        let e = config().capability("dbx", Proto::Tcp).unwrap_err();
        assert_eq!(
            e.to_string(),
            "capability 'dbx' was not given to this unikernel \
             (it has: db.kv, db.stats, cache.a, cache.b, peer, egress.0)"
        );
        let e = BootConfig::default()
            .capability("db", Proto::Tcp)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "capability 'db' was not given to this unikernel (it has: none)"
        );
    }

    #[test]
    fn a_prefix_is_not_a_service() {
        // "d" is not the service of "db.kv".
        assert!(matches!(
            config().capability("d", Proto::Tcp),
            Err(LookupError::NotGiven { .. })
        ));
    }

    #[test]
    fn a_service_with_several_endpoints_is_ambiguous() {
        let e = config().capability("cache", Proto::Tcp).unwrap_err();
        assert_eq!(
            e.to_string(),
            "capability 'cache' is ambiguous: it could be cache.a, cache.b; \
             ask for one of them by its full name"
        );
    }

    #[test]
    fn the_wrong_protocol_says_which_it_is() {
        let e = config().capability("peer", Proto::Udp).unwrap_err();
        assert_eq!(e.to_string(), "'peer' is a tcp endpoint, not udp");
        let e = config().capability("cache", Proto::Udp).unwrap_err();
        assert_eq!(e.to_string(), "'cache' is a tcp endpoint, not udp");
        let e = config().provided("http", Proto::Udp).unwrap_err();
        assert_eq!(e.to_string(), "'http' is a tcp endpoint, not udp");
    }

    #[test]
    fn an_endpoint_not_provided_is_named() {
        let e = config().provided("kv", Proto::Tcp).unwrap_err();
        assert_eq!(
            e.to_string(),
            "endpoint 'kv' is not provided by this unikernel (it provides: http)"
        );
    }
}
