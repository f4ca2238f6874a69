//! The monitor's command line, compatible with upstream `solo5-hvt` (docs/hvt-abi.md, Monitor
//! command line).
//!
//! Parsing only checks what was typed (no syscalls); opening files and interfaces happens when
//! the VM is built, against the unikernel's manifest.

use std::path::PathBuf;

use crate::devices::block::DEFAULT_SECTOR_SIZE;
use crate::devices::console::Limit;
use crate::devices::net::parse_mac;
use crate::sandbox::Identity;

pub const USAGE: &str = "\
usage: sturdy-hvt [OPTIONS] [--] KERNEL [ARGS...]

Runs the Solo5 hvt unikernel KERNEL on KVM; ARGS are passed to it as its command line.
A drop-in replacement for solo5-hvt: same options, same exit statuses.

Options:
  --mem=N                      guest memory in MiB (default 512; rounded down to 2 MiB, max 4096)
  --block:NAME=PATH            attach the file PATH as the unikernel's block device NAME
  --block-sector-size:NAME=N   sector size of block device NAME (default 512; a power of two >= 512)
  --net:NAME=IFACE             attach the existing, up TAP interface IFACE as network device NAME
  --net:NAME=@FD               attach the inherited file descriptor FD (e.g. a SOCK_SEQPACKET
                               socket: one message per Ethernet frame; MTU 1500). A sturdy
                               fabric port offers shared-memory rings as its first message;
                               they carry the frames when the guest is on sturdy's NIC rings
  --net-mac:NAME=MAC           MAC address of network device NAME (default: random, locally administered)
  --uid=UID                    after opening the devices, run as user UID (and group GID) with no
  --gid=GID                    supplementary groups and no capabilities (needs root; GID defaults
                               to UID). Without them the monitor keeps its user
  --control=@FD                keep the inherited socket FD as the control socket of whoever
                               started the monitor (sturdy's daemon; nothing is exchanged on it yet)
  --console-rate=N             bytes a second the guest's console may write (default 256K; K, M and G
                               are KiB, MiB and GiB; 0: no limit). What it writes beyond is dropped,
                               and stderr says how much: 'sturdy-hvt: console: ... 3.2 MiB dropped'
  --console-burst=N            bytes the console may write at once above the rate (default 1M);
                               after a drop, output resumes once a quarter second's rate has
                               refilled (or the whole burst, if less)
  --version                    print the version and exit
  -h, --help                   print this help and exit

Every device the unikernel declares in its manifest must be attached.

Exit status: the guest's exit status; 255 if the guest aborted or took a CPU exception;
1 if the monitor stopped it (bad file or option, invalid hypercall, memory fault).

Examples:
  sturdy-hvt hello.hvt Hello
  sturdy-hvt --mem=64 --block:storage=disk.img kv.hvt
  ip tuntap add tap0 mode tap && ip link set tap0 up
  sturdy-hvt --net:service=tap0 --net-mac:service=02:00:0a:00:00:02 net.hvt --ipv4=10.0.0.2";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Config),
    Help,
    Version,
}

/// A validated request to run a unikernel.
#[derive(Debug, PartialEq, Eq)]
pub struct Config {
    pub kernel: PathBuf,
    /// The guest command line: ARGS joined with single spaces (docs/hvt-abi.md, Boot information).
    pub guest_cmdline: String,
    /// Guest memory in bytes, a multiple of 2 MiB.
    pub mem_size: u64,
    pub blocks: Vec<BlockArg>,
    pub nets: Vec<NetArg>,
    /// Who to run as once the devices are open (`--uid`, `--gid`); `None`: stay.
    pub identity: Option<Identity>,
    /// The control socket inherited from whoever started the monitor (`--control=@FD`).
    pub control: Option<i32>,
    /// How fast the guest's console may write (`None`: no limit).
    pub console: Option<Limit>,
    /// Warnings to print (e.g. memory rounded down).
    pub warnings: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct BlockArg {
    pub name: String,
    pub path: String,
    pub sector_size: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum NetTarget {
    Tap(String),
    Fd(i32),
}

#[derive(Debug, PartialEq, Eq)]
pub struct NetArg {
    pub name: String,
    pub target: NetTarget,
    pub mac: Option<[u8; 6]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    #[error("Invalid option: {0}")]
    InvalidOption(String),
    #[error("Missing KERNEL operand")]
    MissingKernel,
    #[error("Malformed argument to --mem: {0}")]
    BadMem(String),
    #[error("guest memory size {0} MiB exceeds the max size 4294967296 bytes")]
    MemTooLarge(u64),
    #[error("{option}: {reason}")]
    BadDevice { option: String, reason: String },
    #[error("{option}: expected a number of bytes, optionally followed by K, M or G (KiB, MiB, GiB){at_least}")]
    BadSize {
        option: String,
        at_least: &'static str,
    },
    #[error("Guest command line too long (max=8191 characters)")]
    CmdlineTooLong,
}

/// Parses `args` (without the program name).
pub fn parse<I, S>(args: I) -> Result<Command, CmdlineError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut mem_mib = sturdy_abi::DEFAULT_MEM_MIB;
    let mut blocks: Vec<BlockArg> = Vec::new();
    let mut nets: Vec<NetArg> = Vec::new();
    let mut sector_sizes: Vec<(String, u64, String)> = Vec::new();
    let mut macs: Vec<(String, [u8; 6], String)> = Vec::new();
    let mut kernel = None;
    let (mut uid, mut gid) = (None, None);
    let mut control = None;
    let mut console = Limit::default();

    while let Some(arg) = args.next() {
        if arg == "--" {
            kernel = args.next();
            break;
        }
        if !arg.starts_with('-') {
            kernel = Some(arg);
            break;
        }
        let bad = |reason: &str| CmdlineError::BadDevice {
            option: arg.clone(),
            reason: reason.into(),
        };
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        } else if arg == "--version" {
            return Ok(Command::Version);
        } else if let Some(v) = arg.strip_prefix("--mem=") {
            mem_mib = v.parse().map_err(|_| CmdlineError::BadMem(v.into()))?;
            if mem_mib == 0 {
                return Err(CmdlineError::BadMem(v.into()));
            }
        } else if let Some(v) = arg.strip_prefix("--uid=") {
            uid = Some(unprivileged_id(v).map_err(|e| bad(&e))?);
        } else if let Some(v) = arg.strip_prefix("--gid=") {
            gid = Some(unprivileged_id(v).map_err(|e| bad(&e))?);
        } else if let Some(v) = arg.strip_prefix("--control=") {
            control = Some(
                v.strip_prefix('@')
                    .and_then(|fd| fd.parse().ok())
                    .filter(|fd: &i32| *fd >= 0)
                    .ok_or_else(|| {
                        bad("expected --control=@FD with FD a file descriptor number")
                    })?,
            );
        } else if let Some(v) = arg.strip_prefix("--console-rate=") {
            console.rate = size(v).ok_or_else(|| CmdlineError::BadSize {
                option: arg.clone(),
                at_least: "",
            })?;
        } else if let Some(v) = arg.strip_prefix("--console-burst=") {
            console.burst = size(v)
                .filter(|n| *n > 0)
                .ok_or_else(|| CmdlineError::BadSize {
                    option: arg.clone(),
                    at_least: ", at least 1",
                })?;
        } else if let Some(spec) = arg.strip_prefix("--block-sector-size:") {
            let (name, v) =
                name_value(spec).ok_or_else(|| bad("expected --block-sector-size:NAME=N"))?;
            let n: u64 = v
                .parse()
                .map_err(|_| bad("the sector size must be a number"))?;
            if n < 512 || !n.is_power_of_two() {
                return Err(bad("the sector size must be a power of two >= 512"));
            }
            sector_sizes.push((name.into(), n, arg.clone()));
        } else if let Some(spec) = arg.strip_prefix("--block:") {
            let (name, path) = name_value(spec).ok_or_else(|| bad("expected --block:NAME=PATH"))?;
            if blocks.iter().any(|b| b.name == name) {
                return Err(bad("block device given twice"));
            }
            blocks.push(BlockArg {
                name: name.into(),
                path: path.into(),
                sector_size: DEFAULT_SECTOR_SIZE,
            });
        } else if let Some(spec) = arg.strip_prefix("--net-mac:") {
            let (name, v) = name_value(spec).ok_or_else(|| bad("expected --net-mac:NAME=MAC"))?;
            let mac =
                parse_mac(v).ok_or_else(|| bad("expected a MAC address like 02:00:0a:00:00:02"))?;
            if mac[0] & 1 != 0 {
                return Err(bad("a multicast MAC address cannot be a NIC's address"));
            }
            macs.push((name.into(), mac, arg.clone()));
        } else if let Some(spec) = arg.strip_prefix("--net:") {
            let (name, v) = name_value(spec)
                .ok_or_else(|| bad("expected --net:NAME=IFACE or --net:NAME=@FD"))?;
            if nets.iter().any(|n| n.name == name) {
                return Err(bad("network device given twice"));
            }
            let target = match v.strip_prefix('@') {
                Some(fd) => NetTarget::Fd(
                    fd.parse()
                        .ok()
                        .filter(|fd: &i32| *fd >= 0)
                        .ok_or_else(|| bad("expected @FD with FD a file descriptor number"))?,
                ),
                None => NetTarget::Tap(v.into()),
            };
            nets.push(NetArg {
                name: name.into(),
                target,
                mac: None,
            });
        } else {
            return Err(CmdlineError::InvalidOption(arg));
        }
    }

    let kernel = kernel.ok_or(CmdlineError::MissingKernel)?;
    if let Some(fd) = control {
        if let Some(n) = nets.iter().find(|n| n.target == NetTarget::Fd(fd)) {
            return Err(CmdlineError::BadDevice {
                option: format!("--control=@{fd}"),
                reason: format!("descriptor {fd} is network device {}'s too", n.name),
            });
        }
    }
    let identity = match (uid, gid) {
        (Some(uid), gid) => Some(Identity {
            uid,
            gid: gid.unwrap_or(uid),
        }),
        (None, Some(_)) => {
            return Err(CmdlineError::BadDevice {
                option: "--gid".into(),
                reason: "given without --uid".into(),
            })
        }
        (None, None) => None,
    };
    let guest_cmdline = args.collect::<Vec<_>>().join(" ");
    if guest_cmdline.len() >= sturdy_abi::CMDLINE_SIZE {
        return Err(CmdlineError::CmdlineTooLong);
    }

    for (name, size, option) in sector_sizes {
        let b =
            blocks
                .iter_mut()
                .find(|b| b.name == name)
                .ok_or_else(|| CmdlineError::BadDevice {
                    option: option.clone(),
                    reason: format!("no --block:{name}=PATH given"),
                })?;
        b.sector_size = size;
    }
    for (name, mac, option) in macs {
        let n =
            nets.iter_mut()
                .find(|n| n.name == name)
                .ok_or_else(|| CmdlineError::BadDevice {
                    option: option.clone(),
                    reason: format!("no --net:{name}=... given"),
                })?;
        n.mac = Some(mac);
    }

    let mut warnings = Vec::new();
    let requested = mem_mib
        .checked_mul(1 << 20)
        .ok_or(CmdlineError::MemTooLarge(mem_mib))?;
    if requested > sturdy_abi::MAX_MEM_SIZE {
        return Err(CmdlineError::MemTooLarge(mem_mib));
    }
    let mem_size = requested & !((2 << 20) - 1);
    if mem_size == 0 {
        return Err(CmdlineError::BadMem(format!(
            "{mem_mib} (guest memory must be at least 2 MiB)"
        )));
    }
    if mem_size != requested {
        warnings.push(format!("adjusting memory to {mem_size} bytes"));
    }

    Ok(Command::Run(Config {
        kernel: kernel.into(),
        guest_cmdline,
        mem_size,
        blocks,
        nets,
        identity,
        control,
        console: (console.rate > 0).then_some(console),
        warnings,
    }))
}

/// A user or group id a monitor may become: not root (0) and not -1 (which set*id(2) reads as
/// "unchanged").
fn unprivileged_id(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(0) => Err("0 is root: give an unprivileged id".into()),
        Ok(u32::MAX) => Err("4294967295 is -1, which means \"unchanged\"".into()),
        Ok(id) => Ok(id),
        Err(_) => Err("expected a number".into()),
    }
}

/// A number of bytes: digits, then nothing or K, M, G (KiB, MiB, GiB; either case, an `iB`
/// allowed after).
fn size(v: &str) -> Option<u64> {
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let n: u64 = v[..digits].parse().ok()?;
    let unit = v[digits..].to_ascii_lowercase();
    let shift = match unit.strip_suffix("ib").unwrap_or(&unit) {
        "" if unit.is_empty() => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// Splits `NAME=VALUE`; NAME non-empty.
fn name_value(s: &str) -> Option<(&str, &str)> {
    let (name, value) = s.split_once('=')?;
    (!name.is_empty() && !value.is_empty()).then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Config {
        match parse(args.iter().copied()).unwrap() {
            Command::Run(c) => c,
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn kernel_is_first_non_option_and_rest_goes_to_guest() {
        let c = run(&["--mem=64", "k.hvt", "--mem=2", "a", "b"]);
        assert_eq!(c.kernel, PathBuf::from("k.hvt"));
        assert_eq!(c.guest_cmdline, "--mem=2 a b");
        assert_eq!(c.mem_size, 64 << 20);
    }

    #[test]
    fn double_dash_ends_options() {
        let c = run(&["--", "-weird", "x"]);
        assert_eq!(c.kernel, PathBuf::from("-weird"));
        assert_eq!(c.guest_cmdline, "x");
    }

    #[test]
    fn memory_rules() {
        assert_eq!(
            parse(["--mem=0", "k"]),
            Err(CmdlineError::BadMem("0".into()))
        );
        assert_eq!(
            parse(["--mem=x", "k"]),
            Err(CmdlineError::BadMem("x".into()))
        );
        assert_eq!(
            parse(["--mem=4097", "k"]),
            Err(CmdlineError::MemTooLarge(4097))
        );
        let c = run(&["--mem=5", "k"]);
        assert_eq!(c.mem_size, 4 << 20);
        assert_eq!(
            c.warnings,
            vec!["adjusting memory to 4194304 bytes".to_string()]
        );
        assert_eq!(run(&["--mem=4096", "k"]).mem_size, 4 << 30);
    }

    #[test]
    fn devices() {
        let c = run(&[
            "--block:storage=/tmp/x",
            "--block-sector-size:storage=4096",
            "--net:service=tap0",
            "--net:other=@3",
            "--net-mac:service=02:00:00:00:00:01",
            "k",
        ]);
        assert_eq!(
            c.blocks,
            vec![BlockArg {
                name: "storage".into(),
                path: "/tmp/x".into(),
                sector_size: 4096
            }]
        );
        assert_eq!(c.nets[0].target, NetTarget::Tap("tap0".into()));
        assert_eq!(c.nets[0].mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(c.nets[1].target, NetTarget::Fd(3));
    }

    #[test]
    fn bad_options_are_named() {
        assert_eq!(
            parse(["--frobnicate", "k"]),
            Err(CmdlineError::InvalidOption("--frobnicate".into()))
        );
        assert_eq!(parse(["--mem=2"]), Err(CmdlineError::MissingKernel));
        let e = parse(["--block-sector-size:s=1000", "--block:s=x", "k"]).unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
        let e = parse(["--block-sector-size:s=4096", "k"]).unwrap_err();
        assert!(e.to_string().contains("no --block:s=PATH given"), "{e}");
        let e = parse(["--net:n=@x", "k"]).unwrap_err();
        assert!(e.to_string().contains("@FD"), "{e}");
        let e = parse(["--net:n=tap0", "--net-mac:n=01:00:00:00:00:00", "k"]).unwrap_err();
        assert!(e.to_string().contains("multicast"), "{e}");
        assert_eq!(parse(["--help"]), Ok(Command::Help));
        assert_eq!(parse(["--version", "k"]), Ok(Command::Version));
    }

    #[test]
    fn identity_and_control_socket() {
        let c = run(&["--uid=70001", "--gid=70002", "--control=@4", "k"]);
        assert_eq!(
            c.identity,
            Some(Identity {
                uid: 70001,
                gid: 70002
            })
        );
        assert_eq!(c.control, Some(4));
        let c = run(&["--uid=70001", "k"]);
        assert_eq!(
            c.identity,
            Some(Identity {
                uid: 70001,
                gid: 70001
            })
        );
        let c = run(&["k"]);
        assert_eq!((c.identity, c.control), (None, None));
        for (arg, why) in [
            ("--uid=0", "root"),
            ("--gid=4294967295", "unchanged"),
            ("--uid=me", "a number"),
            ("--control=4", "@FD"),
            ("--control=@-1", "@FD"),
        ] {
            let e = parse([arg, "--uid=5", "k"]).unwrap_err().to_string();
            assert!(e.starts_with(arg) && e.contains(why), "{arg}: {e}");
        }
        let e = parse(["--net:n=@4", "--control=@4", "k"])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--control=@4: descriptor 4 is network device n's too");
        let e = parse(["--gid=5", "k"]).unwrap_err().to_string();
        assert_eq!(e, "--gid: given without --uid");
    }

    #[test]
    fn console_limit() {
        let default = Some(Limit {
            rate: crate::devices::console::DEFAULT_RATE,
            burst: crate::devices::console::DEFAULT_BURST,
        });
        assert_eq!(run(&["k"]).console, default);
        let c = run(&["--console-rate=64K", "--console-burst=2MiB", "k"]);
        assert_eq!(
            c.console,
            Some(Limit {
                rate: 64 << 10,
                burst: 2 << 20
            })
        );
        assert_eq!(
            run(&["--console-rate=1000", "k"]).console.unwrap().rate,
            1000
        );
        assert_eq!(
            run(&["--console-rate=1g", "k"]).console.unwrap().rate,
            1 << 30
        );
        assert_eq!(run(&["--console-rate=0", "k"]).console, None);
        for bad in [
            "--console-rate=",
            "--console-rate=K",
            "--console-rate=1.5M",
            "--console-rate=-1",
            "--console-rate=1iB",
            "--console-rate=2T",
            "--console-rate=99999999999999999999",
            "--console-rate=17179869184G",
            "--console-burst=0",
        ] {
            let e = parse([bad, "k"]).unwrap_err();
            assert!(e.to_string().starts_with(bad), "{bad}: {e}");
        }
        let e = parse(["--console-burst=0", "k"]).unwrap_err();
        assert!(e.to_string().ends_with("at least 1"), "{e}");
    }

    #[test]
    fn command_line_length_limit() {
        let long = "x".repeat(8191);
        assert!(matches!(parse(["k", long.as_str()]), Ok(Command::Run(_))));
        let long = "x".repeat(8192);
        assert_eq!(
            parse(["k", long.as_str()]),
            Err(CmdlineError::CmdlineTooLong)
        );
    }
}
