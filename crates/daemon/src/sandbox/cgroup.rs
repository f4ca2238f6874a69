//! A cgroup per monitor: its CPU quota and memory limit, and whether the kernel killed it for
//! memory. `sturdy-PID/APP/SERVICE-INSTANCE` (PID the daemon's) under the daemon's own cgroup:
//! in the `cpu` and `memory` hierarchies of cgroup v1, or in the one cgroup v2 hierarchy (where
//! a cgroup with children may hold no process: a daemon alone in its cgroup, as the systemd unit
//! with `Delegate=yes` runs it, moves itself into a `supervisor` child first). The daemon puts
//! each monitor in its cgroup before exec (`os::inherit`): the guest never runs unlimited.
//!
//! cgroup v2 is tested against a fake tree of files only; this host mounts v1 controllers.

use std::ffi::CString;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The CFS period the quota is a share of, in microseconds (the kernel's default).
pub const PERIOD_US: u64 = 100_000;

/// Which cgroup hierarchies hold the monitors, at the daemon's own cgroup in each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1.
    V1 {
        /// The daemon's cgroup in the `cpu` hierarchy.
        cpu: PathBuf,
        /// The daemon's cgroup in the `memory` hierarchy.
        memory: PathBuf,
    },
    /// cgroup v2.
    V2 {
        /// The daemon's cgroup.
        own: PathBuf,
    },
}

/// What a monitor may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// CPU time, in thousandths of a core.
    pub cpus_milli: u32,
    /// Memory, in bytes.
    pub memory: u64,
}

/// The monitors' cgroups of this daemon.
#[derive(Debug)]
pub struct Cgroups {
    layout: Layout,
    /// `sturdy-PID`.
    base: String,
}

/// One monitor's cgroup (a directory per hierarchy); removed by [`Cgroup::remove`] once the
/// monitor is reaped.
#[derive(Debug)]
pub struct Cgroup {
    /// The directories: v1 cpu and memory, or the one v2 directory.
    dirs: Vec<PathBuf>,
    memory_dir: PathBuf,
    version: u8,
    limits: Limits,
}

fn io<'p>(what: &str, path: &'p Path) -> impl FnOnce(std::io::Error) -> String + 'p {
    let what = what.to_string();
    move |e| format!("cgroup: cannot {what} {}: {e}", path.display())
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(io(&format!("write {value:?} to"), path))
}

impl Layout {
    /// The hierarchies of this process, from `/proc/self/mountinfo` and `/proc/self/cgroup`:
    /// v1 when both the `cpu` and the `memory` controllers are mounted as v1, else v2 when
    /// the v2 hierarchy offers both.
    pub fn of_this_process() -> Result<Layout, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let cgroup = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        Layout::from_proc(&mountinfo, &cgroup, Path::new("/"))
    }

    /// [`of_this_process`](Self::of_this_process) from the two files' text, with mount points
    /// taken under `root` (a fake tree in tests).
    pub fn from_proc(mountinfo: &str, cgroup: &str, root: &Path) -> Result<Layout, String> {
        // (mount point, mount root, fstype, super options)
        let mounts: Vec<(&str, &str, &str, Vec<&str>)> = mountinfo
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let f: Vec<&str> = left.split(' ').collect();
                let r: Vec<&str> = right.split(' ').collect();
                Some((
                    *f.get(4)?,
                    *f.get(3)?,
                    *r.first()?,
                    r.get(2)?.split(',').collect(),
                ))
            })
            .collect();
        // Lines "ID:controllers:path".
        let own = |controller: Option<&str>| {
            cgroup.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
                let hit = match controller {
                    Some(c) => names.split(',').any(|n| n == c),
                    None => names.is_empty(),
                };
                hit.then_some(path)
            })
        };
        let under = |mount: &str, mount_root: &str, path: &str| {
            let rel = path.strip_prefix(mount_root).unwrap_or(path);
            root.join(mount.trim_start_matches('/'))
                .join(rel.trim_start_matches('/'))
        };
        let v1 = |c: &str| {
            let (mount, mroot, _, _) = mounts
                .iter()
                .find(|(_, _, fs, opts)| *fs == "cgroup" && opts.contains(&c))?;
            Some(under(mount, mroot, own(Some(c))?))
        };
        if let (Some(cpu), Some(memory)) = (v1("cpu"), v1("memory")) {
            return Ok(Layout::V1 { cpu, memory });
        }
        if let Some((mount, mroot, _, _)) = mounts.iter().find(|(_, _, fs, _)| *fs == "cgroup2") {
            if let Some(path) = own(None) {
                let own = under(mount, mroot, path);
                let controllers = std::fs::read_to_string(own.join("cgroup.controllers"))
                    .map_err(io("read", &own.join("cgroup.controllers")))?;
                let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
                if has("cpu") && has("memory") {
                    return Ok(Layout::V2 { own });
                }
                return Err(format!(
                    "cgroup v2 at {} offers no cpu and memory controllers (it has: {}); enable \
                     them for the daemon's cgroup (the systemd unit's Delegate=yes does)",
                    own.display(),
                    controllers.trim()
                ));
            }
        }
        Err(
            "no cgroup hierarchy with the cpu and memory controllers is mounted (cgroup v1 \
             cpu and memory, or cgroup v2 with both)"
                .into(),
        )
    }
}

impl Cgroups {
    /// The cgroups of the daemon with process id `pid` in `layout`. Removes what daemons no
    /// longer alive left there (empty cgroups: their monitors died with them), and on v2
    /// makes the daemon's cgroup able to have children with the cpu and memory controllers.
    pub fn new(layout: Layout, pid: u32) -> Result<Cgroups, String> {
        let cgroups = Cgroups {
            layout,
            base: format!("sturdy-{pid}"),
        };
        for dir in cgroups.parents() {
            sweep(&dir, pid);
        }
        if let Layout::V2 { own } = &cgroups.layout {
            enable_controllers(own, true)?;
        }
        Ok(cgroups)
    }

    /// Removes what is left of this daemon's cgroups (`sturdy-PID` and below; a cgroup that
    /// still holds a process stays).
    pub fn remove(&self) {
        for dir in self.parents() {
            remove_tree(&dir.join(&self.base));
        }
    }

    /// The directories the monitors' cgroups are made in (the daemon's own cgroups).
    fn parents(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V1 { cpu, memory } => vec![cpu.clone(), memory.clone()],
            Layout::V2 { own } => vec![own.clone()],
        }
    }

    /// Creates the cgroup of `service`'s `instance` of application `app`, with `limits`.
    pub fn create(
        &self,
        app: &str,
        service: &str,
        instance: u64,
        limits: Limits,
    ) -> Result<Cgroup, String> {
        let rel = Path::new(&self.base)
            .join(app)
            .join(format!("{service}-{instance}"));
        let quota = u64::from(limits.cpus_milli) * PERIOD_US / 1000;
        match &self.layout {
            Layout::V1 { cpu, memory } => {
                let (cpu_dir, memory_dir) = (cpu.join(&rel), memory.join(&rel));
                let cg = Cgroup {
                    dirs: vec![cpu_dir.clone(), memory_dir.clone()],
                    memory_dir: memory_dir.clone(),
                    version: 1,
                    limits,
                };
                for d in &cg.dirs {
                    fresh_dir(d)?;
                }
                write(&cpu_dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&cpu_dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                let bytes = limits.memory.to_string();
                write(&memory_dir.join("memory.limit_in_bytes"), &bytes)?;
                // Memory and swap together: no more than the limit in swap either.
                optional(&memory_dir.join("memory.memsw.limit_in_bytes"), &bytes)?;
                Ok(cg)
            }
            Layout::V2 { own } => {
                let dir = own.join(&rel);
                let cg = Cgroup {
                    dirs: vec![dir.clone()],
                    memory_dir: dir.clone(),
                    version: 2,
                    limits,
                };
                // Every cgroup between the daemon's and the monitor's passes the controllers on.
                let mut at = own.clone();
                for part in rel.parent().into_iter().flat_map(|p| p.iter()) {
                    at.push(part);
                    std::fs::create_dir_all(&at).map_err(io("create", &at))?;
                    enable_controllers(&at, false)?;
                }
                fresh_dir(&dir)?;
                write(&dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
                write(&dir.join("memory.max"), &limits.memory.to_string())?;
                optional(&dir.join("memory.swap.max"), "0")?;
                Ok(cg)
            }
        }
    }
}

/// Makes `dir`, after removing an empty one left there (by a daemon that died, whose pid came
/// round again).
fn fresh_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir_all(dir.parent().unwrap_or(dir)) {
        Ok(()) => {}
        Err(e) => return Err(io("create", dir)(e)),
    }
    if dir.exists() {
        let _ = std::fs::remove_dir(dir);
    }
    std::fs::create_dir(dir).map_err(io("create", dir))
}

/// Writes `value` to `path` if the kernel offers the file (swap limits exist only with swap
/// accounting).
fn optional(path: &Path, value: &str) -> Result<(), String> {
    match std::fs::write(path, value) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        r => r.map_err(io(&format!("write {value:?} to"), path)),
    }
}

/// Enables the cpu and memory controllers for `dir`'s children (v2). For the daemon's own
/// cgroup (`own`), a refusal because processes are in it (EBUSY: a cgroup with children's
/// controllers holds no process) is met by moving this process into a `supervisor` child.
fn enable_controllers(dir: &Path, own: bool) -> Result<(), String> {
    let control = dir.join("cgroup.subtree_control");
    match std::fs::write(&control, "+cpu +memory") {
        Ok(()) => Ok(()),
        Err(e) if own && e.raw_os_error() == Some(libc::EBUSY) => {
            let leaf = dir.join("supervisor");
            std::fs::create_dir_all(&leaf).map_err(io("create", &leaf))?;
            write(&leaf.join("cgroup.procs"), &std::process::id().to_string())?;
            std::fs::write(&control, "+cpu +memory").map_err(|e| {
                format!(
                    "cgroup: cannot enable the cpu and memory controllers in {}: {e} (other \
                     processes share the daemon's cgroup: run it in a cgroup of its own, as \
                     the systemd unit does)",
                    dir.display()
                )
            })
        }
        Err(e) => Err(io("write \"+cpu +memory\" to", &control)(e)),
    }
}

/// Removes the `sturdy-PID` trees under `dir` of daemons no longer alive (only what is empty:
/// rmdir of a cgroup with processes fails).
fn sweep(dir: &Path, me: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("sturdy-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_tree(&e.path());
        }
    }
}

/// rmdir of `dir`'s subdirectories, deepest first, then of `dir` (cgroup directories hold only
/// the kernel's files, which rmdir takes with them).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Cgroup {
    /// The `cgroup.procs` files a process is put in this cgroup through, for `os::inherit`.
    pub fn procs_files(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .map(|d| {
                CString::new(d.join("cgroup.procs").as_os_str().as_bytes())
                    .expect("cgroup paths hold no NUL (names are checked labels)")
            })
            .collect()
    }

    /// Its directories (v1: cpu then memory; v2: one).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The limits it was made with.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many times the kernel's OOM killer killed a process of it (v1 `memory.oom_control`,
    /// v2 `memory.events`, their `oom_kill` line); `None` if it cannot be read.
    pub fn oom_kills(&self) -> Option<u64> {
        let file = if self.version == 1 {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        let text = std::fs::read_to_string(self.memory_dir.join(file)).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
    }

    /// Its memory limit in bytes as the kernel has it now (v1 `memory.limit_in_bytes`, v2
    /// `memory.max`): the one it was made with unless someone changed it since.
    pub fn memory_limit(&self) -> u64 {
        let file = if self.version == 1 {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        std::fs::read_to_string(self.memory_dir.join(file))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(self.limits.memory)
    }

    /// Removes it, and the application's cgroup if no other service's is left in it. Call once
    /// its monitor is reaped (a cgroup with a process cannot be removed).
    pub fn remove(&self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
            if let Some(app) = d.parent() {
                let _ = std::fs::remove_dir(app);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sturdy-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// This host's mounts (cgroup v1 controllers, an empty cgroup2), shortened.
    const MOUNTINFO_V1: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 30 0:35 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const CGROUP_V1: &str = "\
4:memory:/process_api/abc
2:cpuacct:/
1:cpu:/
0::/
";
    const MOUNTINFO_V2: &str = "\
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const CGROUP_V2: &str = "0::/system.slice/sturdy.service\n";

    #[test]
    fn v1_is_found_in_the_cpu_and_memory_hierarchies() {
        let root = Path::new("/fake");
        let layout = Layout::from_proc(MOUNTINFO_V1, CGROUP_V1, root).unwrap();
        assert_eq!(
            layout,
            Layout::V1 {
                cpu: root.join("sys/fs/cgroup/cpu"),
                memory: root.join("sys/fs/cgroup/memory/process_api/abc"),
            }
        );
    }

    #[test]
    fn v2_needs_its_controllers() {
        let root = tree("v2-find");
        let own = root.join("sys/fs/cgroup/system.slice/sturdy.service");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("cgroup.controllers"), "cpuset io pids\n").unwrap();
        let e = Layout::from_proc(MOUNTINFO_V2, CGROUP_V2, &root).unwrap_err();
        assert!(
            e.contains("offers no cpu and memory controllers (it has: cpuset io pids)"),
            "{e}"
        );
        std::fs::write(
            own.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let layout = Layout::from_proc(MOUNTINFO_V2, CGROUP_V2, &root).unwrap();
        assert_eq!(layout, Layout::V2 { own });
        let e = Layout::from_proc("", "0::/\n", &root).unwrap_err();
        assert!(e.starts_with("no cgroup hierarchy"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Against a fake cgroup v2 tree (plain files): untested on a real one.
    #[test]
    fn a_v2_cgroup_gets_the_quota_and_limit_and_its_parents_the_controllers() {
        let own = tree("v2");
        let cgroups = Cgroups::new(Layout::V2 { own: own.clone() }, 4242).unwrap();
        let limits = Limits {
            cpus_milli: 500,
            memory: 70 << 20,
        };
        let cg = cgroups.create("guestbook", "web", 3, limits).unwrap();
        let dir = own.join("sturdy-4242/guestbook/web-3");
        assert_eq!(cg.dirs(), std::slice::from_ref(&dir));
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
        assert_eq!(read(&dir.join("memory.max")), (70u64 << 20).to_string());
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
        for d in [
            own.clone(),
            own.join("sturdy-4242"),
            own.join("sturdy-4242/guestbook"),
        ] {
            assert_eq!(
                read(&d.join("cgroup.subtree_control")),
                "+cpu +memory",
                "{}",
                d.display()
            );
        }
        assert_eq!(
            cg.procs_files(),
            [CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap()]
        );
        assert_eq!(cg.oom_kills(), None);
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills(), Some(1));
        std::fs::remove_dir_all(&own).unwrap();
    }

    #[test]
    fn a_v1_cgroup_gets_the_quota_and_limit_in_each_hierarchy() {
        let root = tree("v1");
        let (cpu, memory) = (root.join("cpu"), root.join("memory"));
        let cgroups = Cgroups::new(
            Layout::V1 {
                cpu: cpu.clone(),
                memory: memory.clone(),
            },
            7,
        )
        .unwrap();
        let limits = Limits {
            cpus_milli: 1250,
            memory: 9 << 20,
        };
        let cg = cgroups.create("app", "db", 1, limits).unwrap();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(
            read(cpu.join("sturdy-7/app/db-1/cpu.cfs_quota_us")),
            "125000"
        );
        assert_eq!(
            read(cpu.join("sturdy-7/app/db-1/cpu.cfs_period_us")),
            "100000"
        );
        assert_eq!(
            read(memory.join("sturdy-7/app/db-1/memory.limit_in_bytes")),
            (9u64 << 20).to_string()
        );
        assert_eq!(cg.limits(), limits);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn trees_of_daemons_gone_are_swept() {
        let root = tree("sweep");
        let dead = root.join("sturdy-4000000000/app/web-1");
        let mine = root.join(format!("sturdy-{}/app", std::process::id()));
        let other = root.join("not-ours");
        for d in [&dead, &mine, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        sweep(&root, std::process::id());
        assert!(!root.join("sturdy-4000000000").exists());
        assert!(mine.exists() && other.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
