//! The sturdy monitor: loads a Solo5 hvt unikernel, sets up guest memory and the vCPU on KVM,
//! and serves the guest's hypercalls (`docs/hvt-abi.md`).
//!
//! Start-up order, fixed and readable (as in Solo5's `hvt_main.c`), in [`vm::Vm::build`]:
//! command line -> ELF and manifest -> guest memory -> kernel image -> devices -> boot info ->
//! page tables and CPU -> then [`vm::Vm::run`] drops privileges (seccomp) and enters the run loop.

pub mod cmdline;
pub mod cpu;
pub mod devices;
pub mod fault;
pub mod hypercall;
pub mod loader;
pub mod manifest;
pub mod memory;
pub mod sandbox;
pub mod vm;

pub use vm::{Exit, Vm};

/// The Solo5 hvt ABI version this monitor speaks.
pub const ABI_VERSION: u32 = sturdy_abi::HVT_ABI_VERSION;

/// Everything that makes the monitor stop a guest, or refuse to start one, with exit status 1.
/// The messages follow the spec's wording where it has one.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0}")]
    Cmdline(#[from] cmdline::CmdlineError),
    #[error("{path}: {source}")]
    OpenKernel {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Load(#[from] loader::LoadError),
    #[error("{0}")]
    Device(#[from] devices::DeviceError),
    #[error("{0}")]
    Attach(String),
    #[error("{0}")]
    Memory(#[from] memory::MemoryError),
    #[error("{0}")]
    Cpu(#[from] cpu::CpuError),
    #[error("KVM: {what}: {source}")]
    Kvm {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("{0}")]
    GuestAccess(#[from] memory::GuestAccessError),
    #[error("Invalid guest port access: port={port:#x}")]
    InvalidPort { port: u16 },
    #[error("Invalid guest hypercall: num={nr}")]
    InvalidHypercall { nr: u16 },
    #[error("block device {name}: host {op} at offset {offset} failed: {source}")]
    BlockIo {
        name: String,
        op: &'static str,
        offset: u64,
        source: std::io::Error,
    },
    #[error("{0}")]
    GuestStopped(String),
    #[error("cannot drop privileges: {0}")]
    Sandbox(String),
}
