//! The sturdy monitor: loads a Solo5 hvt unikernel, sets up guest memory and the vCPU on KVM,
//! and serves the guest's hypercalls (see `shared/spec/solo5-hvt-abi.md`).
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod loader;
pub mod manifest;
