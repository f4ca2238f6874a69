//! Devices a guest declares in its manifest and the monitor attaches: block devices backed by a
//! file and NICs backed by a TAP interface or an inherited file descriptor. Each module owns its
//! device's setup and hypercalls; the console and clocks need no device.

pub mod block;
pub mod clock;
pub mod console;
pub mod net;
pub mod ring;

/// A device attached to a manifest entry, indexed by its handle.
pub enum Device {
    Block(block::BlockDevice),
    Net(net::NetDevice),
}

/// Setting up a device from the command line failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("--block:{name}={path}: cannot open the backing file: {source}")]
    BlockOpen {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("--block:{name}={path}: the backing file is {size} bytes, not a non-zero multiple of the {sector}-byte sector size")]
    BlockMisaligned {
        name: String,
        path: String,
        size: u64,
        sector: u64,
    },
    #[error("--net:{name}={iface}: {reason}")]
    Tap {
        name: String,
        iface: String,
        reason: String,
    },
    #[error("--net:{name}=@{fd}: file descriptor {fd} is not open in this process")]
    BadFd { name: String, fd: i32 },
    #[error("--net:{name}=@{fd}: the shared-memory rings offered on the descriptor: {reason}")]
    PortRings {
        name: String,
        fd: i32,
        reason: String,
    },
}
