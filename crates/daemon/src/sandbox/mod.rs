//! What confines each monitor beyond its own sandbox (`vmm::sandbox`): a user id of its own
//! ([`uids`]) and a cgroup with its CPU quota and memory limit ([`cgroup`]). The daemon sets
//! both up before it spawns a monitor; the monitor drops to the user once its devices are open
//! (`sturdy-hvt --uid`), and is put in the cgroup before exec (`os::inherit`).

use std::sync::OnceLock;

pub mod cgroup;
pub mod uids;

use cgroup::{Cgroup, Cgroups, Layout, Limits};
use uids::{Lease, UidPool};

/// The monitor's own memory beyond its guest's, at most, in MiB: twice what was measured
/// (benches/sandbox.sh, benches/results/2026-12-06-sandbox.txt: the cgroup's peak usage beyond
/// the guest memory its guest touched, kernel memory included, was 1.4 MiB with a 16 MiB
/// guest, 1.8 with 64, 3.7 with 256, 6.4 with 512, 11.4 with 1024: about 1 MiB plus 1/100 of
/// the guest memory, the page tables for it growing with it), so that a guest using all of
/// its memory never meets the limit.
pub fn overhead_mib(mem_mib: u64) -> u64 {
    4 + mem_mib / 48
}

/// A monitor's memory limit in bytes: its guest memory and [`overhead_mib`].
pub fn memory_limit(mem_mib: u64) -> u64 {
    (mem_mib + overhead_mib(mem_mib)) << 20
}

static SANDBOX: OnceLock<Result<Sandbox, String>> = OnceLock::new();

/// The daemon's monitor user ids and cgroups.
#[derive(Debug)]
pub struct Sandbox {
    uids: UidPool,
    cgroups: Cgroups,
}

/// What one monitor holds: its user id and its cgroup, given back by [`Confined::release`].
#[derive(Debug)]
pub struct Confined {
    /// Its user id (held until released).
    pub lease: Lease,
    /// Its cgroup.
    pub cgroup: Cgroup,
}

impl Sandbox {
    /// This process's sandbox, set up on first use: the user id range (`STURDY_MONITOR_UIDS`)
    /// and the cgroup hierarchies it runs in. An error says why monitors cannot be confined
    /// (they are then not started).
    pub fn shared() -> Result<&'static Sandbox, String> {
        SANDBOX
            .get_or_init(|| {
                Ok(Sandbox {
                    uids: UidPool::from_env()?,
                    cgroups: Cgroups::new(Layout::of_this_process()?, std::process::id())?,
                })
            })
            .as_ref()
            .map_err(|e| format!("cannot confine monitors: {e}"))
    }

    /// Once every monitor is stopped: removes this daemon's cgroups (`sturdy-PID`), if it
    /// made any.
    pub fn remove_cgroups() {
        if let Some(Ok(sandbox)) = SANDBOX.get() {
            sandbox.cgroups.remove();
        }
    }

    /// A user id and a cgroup for `service`'s `instance` of `app`.
    pub fn confine(
        &self,
        app: &str,
        service: &str,
        instance: u64,
        limits: Limits,
    ) -> Result<Confined, String> {
        let lease = self.uids.lease()?;
        let cgroup = self.cgroups.create(app, service, instance, limits)?;
        Ok(Confined { lease, cgroup })
    }
}

impl Confined {
    /// Once its monitor is reaped: whether the kernel killed it for memory (the limit in MiB
    /// if so), then its cgroup removed and its user id freed.
    pub fn release(self) -> Option<u64> {
        let oom = self
            .cgroup
            .oom_kills()
            .filter(|&n| n > 0)
            .map(|_| self.cgroup.memory_limit() >> 20);
        self.cgroup.remove();
        oom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_the_guest_and_twice_the_measured_overhead() {
        // Measured overhead (MiB) at each guest size (MiB): the limit leaves twice as much.
        for (mem, measured) in [(16, 1.4), (64, 1.8), (256, 3.7), (512, 6.4), (1024, 11.4)] {
            let room = (memory_limit(mem) >> 20) - mem;
            assert!(
                room as f64 >= 2.0 * measured,
                "{mem} MiB: {room} MiB of room"
            );
        }
        assert_eq!(memory_limit(64) >> 20, 69);
    }
}
