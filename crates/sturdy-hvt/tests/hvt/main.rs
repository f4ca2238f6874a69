//! End-to-end tests of `sturdy-hvt`: real KVM, real guests from `guest/`, real TAP devices in
//! network namespaces the tests create, real clients (ping). One test binary, one module per area.
//! Needs root and /dev/kvm; fails loudly without them.

mod harness;

mod boot;
mod console;
mod devices;
mod guestbook;
mod hostile;
mod kv;
mod malformed;
mod network;
mod sdk_net;
mod web;
