//! Writing a boot configuration as arguments (the grammar is in the crate documentation).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::{BootConfig, Capability, Endpoint, Nic, PREFIX, VERSION};

/// The arguments for `config`, joined with single spaces: NICs, then `use`, `egress` and
/// `provide` items, each in its list's order. An empty configuration is the empty string.
///
/// [`parse`](crate::parse) reads the result back to an equal configuration exactly when
/// [`BootConfig::validate`] accepts `config`.
pub fn render(config: &BootConfig) -> String {
    tokens(config).join(" ")
}

/// One argument per item, in [`render`]'s order.
pub(crate) fn tokens(config: &BootConfig) -> Vec<String> {
    let nics = config.nics.iter().map(nic);
    let uses = config.uses.iter().map(|c| capability("use", c));
    let egress = config.egress.iter().map(|c| capability("egress", c));
    let provides = config.provides.iter().map(endpoint);
    nics.chain(uses).chain(egress).chain(provides).collect()
}

pub(crate) fn nic(nic: &Nic) -> String {
    let mut token = format!(
        "{PREFIX}v{VERSION}.net={}:{}/{}",
        nic.name, nic.addr, nic.prefix_len
    );
    if let Some(gw) = nic.gateway {
        token += &format!(":gw={gw}");
    }
    token
}

pub(crate) fn capability(key: &str, cap: &Capability) -> String {
    format!(
        "{PREFIX}v{VERSION}.{key}={}:{}:{}/{}",
        cap.name, cap.addr, cap.port, cap.proto
    )
}

pub(crate) fn endpoint(endpoint: &Endpoint) -> String {
    format!(
        "{PREFIX}v{VERSION}.provide={}:{}/{}",
        endpoint.name, endpoint.port, endpoint.proto
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Proto;

    #[test]
    fn renders_every_item_in_order() {
        let config = BootConfig {
            nics: vec![
                Nic {
                    name: "service".into(),
                    addr: [10, 0, 0, 2].into(),
                    prefix_len: 24,
                    gateway: Some([10, 0, 0, 1].into()),
                },
                Nic {
                    name: "admin".into(),
                    addr: [192, 168, 7, 2].into(),
                    prefix_len: 30,
                    gateway: None,
                },
            ],
            uses: vec![Capability {
                name: "db.kv".into(),
                addr: [10, 0, 0, 3].into(),
                port: 6379,
                proto: Proto::Tcp,
            }],
            egress: vec![Capability {
                name: "egress.0".into(),
                addr: [203, 0, 113, 7].into(),
                port: 443,
                proto: Proto::Tcp,
            }],
            provides: vec![Endpoint {
                name: "dns".into(),
                port: 53,
                proto: Proto::Udp,
            }],
        };
        assert_eq!(
            render(&config),
            "--sturdy.v1.net=service:10.0.0.2/24:gw=10.0.0.1 \
             --sturdy.v1.net=admin:192.168.7.2/30 \
             --sturdy.v1.use=db.kv:10.0.0.3:6379/tcp \
             --sturdy.v1.egress=egress.0:203.0.113.7:443/tcp \
             --sturdy.v1.provide=dns:53/udp"
        );
        assert_eq!(render(&BootConfig::default()), "");
    }
}
