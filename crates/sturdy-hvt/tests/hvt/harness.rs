//! Running the monitor and cleaning up after it: commands for the built binary, temporary files,
//! network namespaces with TAP devices, processes killed by PID.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The monitor binary built by cargo for these tests.
pub fn hvt() -> Command {
    assert!(
        Path::new("/dev/kvm").exists(),
        "these tests need /dev/kvm (KVM); none found"
    );
    Command::new(env!("CARGO_BIN_EXE_sturdy-hvt"))
}

/// Path of the test guest image `name`.
pub fn guest(name: &str) -> PathBuf {
    guests::path(name)
}

/// Runs the monitor with `args` to completion (killed after `timeout`), capturing output.
pub fn run(args: &[&str], timeout: Duration) -> Result_ {
    let child = hvt()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sturdy-hvt");
    wait(child, timeout)
}

/// Runs `guest` with monitor options `opts` and guest arguments `guest_args`.
pub fn run_guest(opts: &[&str], name: &str, guest_args: &[&str]) -> Result_ {
    let image = guest(name);
    let mut args: Vec<&str> = opts.to_vec();
    args.push(image.to_str().unwrap());
    args.extend_from_slice(guest_args);
    run(&args, Duration::from_secs(60))
}

/// Waits for `child`, killing it after `timeout`. Its output is read meanwhile: a child whose
/// output fills its pipe would otherwise wait for a reader forever.
pub fn wait(mut child: Child, timeout: Duration) -> Result_ {
    fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    }
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait().expect("wait");
    let collect = |r: Option<JoinHandle<Vec<u8>>>| {
        r.map(|r| r.join().expect("read the output"))
            .unwrap_or_default()
    };
    Result_::from(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Result_ {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Result_ {
    fn from(o: Output) -> Self {
        Result_ {
            status: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Result_ {
    /// Asserts the exit status, showing all output on failure.
    #[track_caller]
    pub fn expect_status(&self, status: i32) -> &Self {
        assert_eq!(
            self.status,
            Some(status),
            "unexpected exit status; run was:\n{self:#?}"
        );
        self
    }

    #[track_caller]
    pub fn expect_stdout(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}; run was:\n{self:#?}"
        );
        self
    }

    #[track_caller]
    pub fn expect_stderr(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}; run was:\n{self:#?}"
        );
        self
    }

    /// Exit 0 with a SUCCESS line.
    #[track_caller]
    pub fn expect_success(&self) -> &Self {
        self.expect_status(0).expect_stdout("SUCCESS")
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sturdy-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Creates a file of `size` zero bytes and returns its path.
    pub fn file(&self, name: &str, size: u64) -> String {
        let p = self.0.join(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(size).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// Writes `bytes` to a file and returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command, panicking with its output if it fails.
#[track_caller]
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace created for one test, deleted (with its TAPs) on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "sturdy-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        sh("ip", &["netns", "add", &name]);
        let ns = NetNs { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["netns", "exec", &self.name, "ip"];
        a.extend_from_slice(args);
        sh("ip", &a)
    }

    /// Creates TAP `tap` in the namespace with host address `cidr`, up, with `mtu`.
    pub fn tap(&self, tap: &str, cidr: &str, mtu: u32) {
        self.ip(&["tuntap", "add", tap, "mode", "tap"]);
        self.ip(&["link", "set", tap, "mtu", &mtu.to_string()]);
        self.ip(&["addr", "add", cidr, "dev", tap]);
        self.ip(&["link", "set", tap, "up"]);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A monitor running in the background, killed by PID on drop.
pub struct Running {
    pub child: Option<Child>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits until the guest's stdout has printed `needle` (reading line by line).
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        use std::io::{BufRead, BufReader};
        let stdout = self
            .child
            .as_mut()
            .unwrap()
            .stdout
            .take()
            .expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let needle = needle.to_string();
        std::thread::spawn(move || {
            let mut seen = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(&needle) {
                    let _ = tx.send(Ok(seen.clone()));
                }
            }
            let _ = tx.send(Err(seen));
        });
        match rx.recv_timeout(timeout) {
            Ok(Ok(seen)) => seen,
            Ok(Err(seen)) => panic!("guest exited before printing the line; it printed:\n{seen}"),
            Err(_) => panic!("guest did not print the line in {timeout:?}"),
        }
    }

    /// Sends SIGTERM and collects the exit.
    pub fn terminate(mut self) -> Result_ {
        let child = self.child.take().unwrap();
        // SAFETY-free: kill(1) by PID of our own child.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        wait(child, Duration::from_secs(10))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `cmd` in the background with stdout piped.
pub fn spawn(mut cmd: Command) -> Running {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    Running { child: Some(child) }
}

/// A SOCK_SEQPACKET socketpair (one message = one Ethernet frame), close-on-exec.
pub fn seqpacket_pair() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two descriptors into `fds`, a valid [i32; 2].
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

/// Lets `cmd`'s child inherit `fd` (only that child: the flag is cleared after fork).
pub fn inherit_fd(cmd: &mut Command, fd: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Starts the guest `name` inside `ns` with monitor options `opts` and guest arguments `args`.
pub fn start_in(ns: &NetNs, opts: &[&str], name: &str, args: &[&str]) -> Running {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_sturdy-hvt"));
    cmd.args(opts).arg(guest(name)).args(args);
    spawn(cmd)
}

/// Runs `f` on a thread that has entered network namespace `ns`, and returns its result (a
/// panic in `f` fails the test with its message).
pub fn in_netns<T: Send + 'static>(ns: &NetNs, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns with a namespace file we opened; it moves only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A hub for tests: forwards every Ethernet frame that arrives on one of its ports to all the
/// others, like a cable with more than two ends. Ports are SOCK_SEQPACKET fds (ends of
/// socketpairs whose other ends go to `sturdy-hvt --net:NAME=@FD`) and TAP devices.
pub struct Hub {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hub {
    pub fn start(ports: Vec<std::os::fd::OwnedFd>) -> Hub {
        use std::sync::atomic::AtomicBool;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                let mut fds: Vec<libc::pollfd> = ports
                    .iter()
                    .map(|p| libc::pollfd {
                        fd: p.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
                // SAFETY: `fds` is a valid array of pollfd for the call.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
                if n <= 0 {
                    continue;
                }
                for (i, fd) in fds.iter().enumerate() {
                    if fd.revents & libc::POLLIN == 0 {
                        continue;
                    }
                    // SAFETY: reads at most buf.len() bytes into `buf`.
                    let len = unsafe { libc::read(fd.fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if len <= 0 {
                        continue;
                    }
                    for (j, out) in ports.iter().enumerate() {
                        if j != i {
                            // SAFETY: writes `len` initialised bytes of `buf`.
                            unsafe {
                                libc::write(out.as_raw_fd(), buf.as_ptr().cast(), len as usize)
                            };
                        }
                    }
                }
            }
        });
        Hub {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the TAP device `name` of namespace `ns` (already created and up) for a hub port.
pub fn open_tap(ns: &NetNs, name: &str) -> std::os::fd::OwnedFd {
    let name = name.to_string();
    in_netns(ns, move || {
        use std::os::fd::FromRawFd;
        // SAFETY: open(2) of a constant path; checked below.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        assert!(fd >= 0, "/dev/net/tun: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh fd we own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut ifr = [0u8; 40];
        ifr[..name.len()].copy_from_slice(name.as_bytes());
        ifr[16..18].copy_from_slice(&(0x0002i16 | 0x1000).to_ne_bytes()); // IFF_TAP | IFF_NO_PI
                                                                          // SAFETY: TUNSETIFF reads a 40-byte struct ifreq, which `ifr` is.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), 0x4004_54ca, ifr.as_mut_ptr()) };
        assert_eq!(
            rc,
            0,
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        );
        fd
    })
}
