//! sturdy's fabric: the virtual network of one application, where the composition is the
//! network (`docs/fabric.md`, `docs/architecture.md`).
//!
//! One port per guest NIC; the port a frame arrives on is its sender's identity. Default deny:
//! a frame is forwarded only along a capability of the plan (consumer -> provider endpoint) or
//! as a reply on a connection the consumer opened. Source MAC and IPv4 must be the port's own.
//! ARP is answered by the fabric itself, only for peers the asker may reach, so undeclared
//! services are invisible; there is no broadcast, no multicast, no flooding. Every drop is
//! counted by reason, per port and per capability, and logged (rate limited); any port or
//! capability can be captured to a pcap file.
//!
//! Layers, as in smoltcp:
//! - [`wire`]: zero-copy views of frames, checked for untrusted bytes; no policy.
//! - [`plan`]: the input (services, addresses, capabilities), its deterministic address
//!   assignment, and each guest's boot configuration rendered from it.
//! - [`policy`]: the plan compiled into lookup tables; connection tracking; drop reasons.
//! - [`switch`]: [`Fabric`], the data path, without I/O: frames, time and an output function
//!   are passed in, so tests and benchmarks drive it directly.
//! - [`port`]: the I/O: SOCK_SEQPACKET ports (one end for the fabric, one for
//!   `sturdy-hvt --net:NAME=@FD`) with the shared-memory frame rings they offer the monitor
//!   (`sturdy_port_ring`), and the thread that runs a [`Fabric`] over them, and over the
//!   gateway, which it serves itself.
//! - [`gateway`]: the gateway inside the fabric: published host ports forwarded to guests
//!   (ingress), TCP and UDP egress capabilities forwarded to the outside, and the supervisor's
//!   TCP health probes, through a TCP/IP stack on its port; it follows a plan applied at run
//!   time.
//! - [`pcap`]: capture files (classic libpcap format) that tshark and Wireshark read.
//!
//! ```
//! use std::time::Instant;
//! use sturdy_fabric::{Config, Endpoint, Fabric, Plan, Proto, Verdict};
//!
//! let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
//! plan.add_service("web", vec![]).unwrap();
//! let kv = Endpoint { name: "kv".into(), port: 6379, proto: Proto::Tcp };
//! plan.add_service("db", vec![kv]).unwrap();
//! plan.grant("web", "db.kv").unwrap();
//! // What web is told at boot, from the same plan the fabric enforces.
//! let args = sturdy_bootcfg::render(&plan.bootcfg_for("web").unwrap());
//! assert_eq!(args, "--sturdy.v1.net=service:10.77.0.2/24 --sturdy.v1.use=db.kv:10.77.0.3:6379/tcp");
//!
//! let web = plan.service("web").unwrap().port;
//! let mut fabric = Fabric::new(plan, Config::default()).unwrap();
//! let mut ipv6 = [0u8; 60];
//! ipv6[6..12].copy_from_slice(&[2, 0, 10, 77, 0, 2]); // web's own MAC
//! ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
//! let verdict = fabric.process(web, &mut ipv6, Instant::now(), &mut |_, _| unreachable!());
//! assert_eq!(verdict, Verdict::Dropped(sturdy_fabric::DropReason::Ipv6));
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod gateway;
pub mod pcap;
pub mod plan;
pub mod policy;
pub mod port;
pub mod switch;
pub mod wire;

pub use gateway::{GatewayHandle, GatewayReport, GatewayStats, Readiness};
pub use plan::{
    Capability, Egress, Endpoint, Gateway, IngressLimits, Plan, PlanError, PortId, Probed, Proto,
    Published, Service, Subnet,
};
pub use policy::conntrack::Timeouts;
pub use policy::{DropReason, Drops, Field};
pub use switch::{
    ApplyReport, CapStats, CaptureId, CaptureTarget, Config, Fabric, FrameSink, PortStats, Stats,
    Traffic, Verdict,
};
pub use wire::Mac;
