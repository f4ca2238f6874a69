//! A unikernel ready to run: built in a fixed order from a validated [`Config`], then run until it
//! halts, faults, or the monitor stops it.

use kvm_bindings::kvm_userspace_memory_region;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use kvm_ioctls::{IoEventAddress, Kvm, NoDatamatch, VcpuExit, VcpuFd, VmFd};
use sturdy_abi::hypercall::HOST_FEATURE_BLOCK_FLUSH;
use sturdy_abi::ring::{DOORBELL_PORT, HOST_FEATURE_STURDY_RING};
use sturdy_abi::sturdy_note::FLAG_DEPRIVILEGED;
use sturdy_abi::{BootInfo, BOOT_INFO_BASE};
use vmm_sys_util::eventfd::EventFd;

use crate::cmdline::{Config, NetTarget};
use crate::cpu::{self, FaultFrame, Mode, FAULT_PORT};
use crate::devices::block::BlockDevice;
use crate::devices::console::Console;
use crate::devices::net::{random_mac, NetDevice};
use crate::devices::ring::{self, RingArea};
use crate::devices::Device;
use crate::fault::GuestFault;
use crate::hypercall::{self, Devices, Next};
use crate::loader::{self, LoadPlan};
use crate::manifest::{DeviceKind, Manifest};
use crate::memory::GuestMemory;
use crate::sandbox::{self, Descriptors, Identity};
use crate::VmError;

/// How a run ended (monitor-detected errors are `Err(VmError)`, exit status 1).
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// HALT with this status (docs/hvt-abi.md, Hypercalls: `exit_status & 0xff`).
    Halt(u8),
    /// A CPU exception in a deprivileged guest: exit status 255.
    Fault(GuestFault),
}

impl Exit {
    /// The monitor's exit status for this end.
    pub fn status(&self) -> u8 {
        match self {
            Exit::Halt(s) => *s,
            Exit::Fault(_) => sturdy_abi::hypercall::EXIT_ABORT,
        }
    }
}

pub struct Vm {
    _vm: VmFd,
    vcpu: VcpuFd,
    mem: Arc<GuestMemory>,
    devices: Devices,
    console: Console,
    mode: Mode,
    ring: Option<Rings>,
    /// Who to become before the guest runs (`--uid`, `--gid`).
    identity: Option<Identity>,
    /// The control socket of whoever started the monitor (`--control`): kept open, and out of
    /// the filter's reach until the monitor has something to say on it.
    _control: Option<OwnedFd>,
}

/// NIC rings offered to a deprivileged guest, and the descriptors that signal across them.
struct Rings {
    area: Arc<RingArea>,
    /// Signalled by the guest's `out` to the doorbell port (KVM ioeventfd), read by the I/O thread.
    doorbell: EventFd,
    /// Signalled by the I/O thread to end the guest's POLL.
    wake: EventFd,
    /// Each ring NIC's fabric port rings, if its descriptor offered them (in the area's order).
    ports: Vec<Option<ring::FabricRings>>,
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}

impl Vm {
    /// Loads the kernel, attaches devices and sets up memory and the vCPU.
    pub fn build(config: &Config) -> Result<Vm, VmError> {
        let image = loader::read_image(&config.kernel).map_err(|source| VmError::OpenKernel {
            path: config.kernel.display().to_string(),
            source,
        })?;
        let LoadPlan {
            entry,
            kernel_end,
            segments,
            mut manifest,
            sturdy,
        } = loader::parse(&image, config.mem_size)?;
        let mode = match sturdy {
            Some(info) if info.flags & FLAG_DEPRIVILEGED != 0 => Mode::Deprivileged,
            _ => Mode::Upstream,
        };

        let mut devices = attach_devices(config, &mut manifest)?;
        let control = config.control.map(take_control_socket).transpose()?;

        let kvm = Kvm::new().map_err(|source| VmError::Kvm {
            what: "cannot open /dev/kvm (is KVM available and are you allowed to use it?)",
            source,
        })?;
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        let mut mem = GuestMemory::new(config.mem_size)?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: config.mem_size,
            userspace_addr: mem.host_base(),
        };
        // SAFETY: the region describes `mem`, a live mapping of exactly mem_size bytes, which
        // outlives the VM: both are owned by the returned Vm and `mem` is never unmapped first
        // (fields drop in declaration order: _vm before mem).
        unsafe { vm.set_user_memory_region(region) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;

        // Kernel image (docs/hvt-abi.md, Loading, rules 6 and 7): copy, then protect non-writable
        // segments.
        for s in &segments {
            let bytes = &image[s.file_offset as usize..(s.file_offset + s.filesz) as usize];
            mem.setup_write(s.vaddr, bytes)?;
        }
        let mut layout = cpu::setup_memory(&mut mem, mode, &segments, kernel_end)?;
        for s in segments.iter().filter(|s| !s.write) {
            mem.protect_read_only(s.start, s.end)?;
            mem.deny_writes(s.start..s.end);
        }
        let mut boot_info = BootInfo {
            kernel_end,
            ..Default::default()
        };
        let ring = match mode {
            Mode::Deprivileged => setup_rings(
                &vm,
                &mem,
                &mut devices,
                kernel_end,
                &mut layout,
                &mut boot_info,
            )?,
            Mode::Upstream => None,
        };

        // sturdy's BLOCK_FLUSH, for its own guests (upstream ones keep Solo5's hypercalls only:
        // docs/hvt-abi.md, Hypercalls).
        if mode == Mode::Deprivileged && devices.any_block() {
            boot_info.host_features |= HOST_FEATURE_BLOCK_FLUSH;
        }

        let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let tsc_khz = vcpu.get_tsc_khz().map_err(kvm_err("KVM_GET_TSC_KHZ"))?;
        boot_info.mem_size = layout.usable_end;
        boot_info.cpu_cycle_freq = u64::from(tsc_khz) * 1000;
        write_boot_info(&mem, &manifest, &config.guest_cmdline, boot_info)?;
        cpu::setup_vcpu(&kvm, &vcpu, mode, entry, &layout)?;
        // `kvm` (the /dev/kvm descriptor) is dropped here: the run needs only the VM and vCPU.
        Ok(Vm {
            _vm: vm,
            vcpu,
            mem: Arc::new(mem),
            devices,
            console: Console::new(config.console),
            mode,
            ring,
            identity: config.identity,
            _control: control,
        })
    }

    /// The descriptors of the vCPU and the devices, by use (the rings' are added by `run`).
    fn descriptors(&self) -> Descriptors {
        let mut fds = Descriptors {
            vcpu: self.vcpu.as_raw_fd(),
            ..Default::default()
        };
        for d in self.devices.0.iter().flatten() {
            match d {
                Device::Block(b) => fds.blocks.push(b.raw_fd()),
                Device::Net(n) => {
                    fds.streams.push(n.raw_fd());
                    fds.sockets.push(n.raw_fd());
                }
            }
        }
        fds
    }

    /// Drops privileges and runs the guest until it halts, faults, or is stopped.
    pub fn run(mut self) -> Result<Exit, VmError> {
        // Before any thread starts: capabilities are per thread (see `sandbox`).
        sandbox::drop_privileges(self.identity).map_err(VmError::Sandbox)?;
        let mut fds = self.descriptors();
        let poll_ring = match self.ring.take() {
            Some(r) => {
                let wake = r
                    .wake
                    .try_clone()
                    .map_err(|e| VmError::Sandbox(format!("eventfd: {e}")))?;
                fds.streams
                    .extend([r.doorbell.as_raw_fd(), r.wake.as_raw_fd(), wake.as_raw_fd()]);
                for p in r.ports.iter().flatten() {
                    fds.streams.push(p.socket.as_raw_fd());
                    fds.sockets.push(p.socket.as_raw_fd());
                }
                let epoll = ring::spawn_io_thread(
                    self.mem.clone(),
                    r.area.clone(),
                    r.ports,
                    r.doorbell,
                    wake,
                )
                .map_err(|e| VmError::Sandbox(format!("cannot start the NIC I/O thread: {e}")))?;
                fds.epoll = Some(epoll);
                Some(hypercall::PollRing {
                    area: r.area,
                    wake: r.wake,
                })
            }
            None => None,
        };
        // BLOCK_FLUSH is offered to sturdy's own (deprivileged) guests: fdatasync on their
        // volumes' files only.
        let flush = self.mode == Mode::Deprivileged && self.devices.any_block();
        if flush {
            fds.flushes = fds.blocks.clone();
        }
        sandbox::enter(&fds).map_err(VmError::Sandbox)?;
        let exit = self.run_loop(poll_ring.as_ref(), flush);
        // The last word on what the console dropped, however the run ended.
        self.console.report();
        exit
    }

    /// Runs the vCPU until the guest halts, faults, or is stopped; `flush`: the guest may
    /// use BLOCK_FLUSH.
    fn run_loop(
        &mut self,
        poll_ring: Option<&hypercall::PollRing>,
        flush: bool,
    ) -> Result<Exit, VmError> {
        loop {
            // Copy what the exit says out of kvm_run before touching the vCPU again.
            let exit = match self.vcpu.run() {
                Ok(VcpuExit::IoOut(port, data)) => {
                    // Only a single 4-byte `out` can be a hypercall (docs/hvt-abi.md, Hypercalls).
                    Event::Out(port, <[u8; 4]>::try_from(data).ok())
                }
                Ok(VcpuExit::IoIn(port, _)) => Event::Stop(VmError::InvalidPort { port }),
                Ok(VcpuExit::MmioWrite(gpa, _)) | Ok(VcpuExit::MmioRead(gpa, _)) => Event::Mmio(gpa),
                Ok(VcpuExit::Hlt) => Event::Stopped("the guest halted the CPU (hlt)"),
                Ok(VcpuExit::Shutdown) => Event::Stopped("triple fault (KVM shutdown)"),
                Ok(VcpuExit::InternalError) => Event::Stopped(
                    "KVM internal error (on PVM hosts: a CPL 0 guest used SSE/x87 instructions, which cannot be emulated)",
                ),
                Ok(VcpuExit::FailEntry(reason, _)) => Event::Stop(VmError::GuestStopped(format!(
                    "KVM could not enter the guest (hardware entry failure reason {reason:#x})"
                ))),
                Ok(other) => Event::Stop(VmError::GuestStopped(format!("unexpected KVM exit: {other:?}"))),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) if e.errno() == libc::EFAULT => {
                    Event::Stopped("host/guest translation fault (a guest write to read-only memory)")
                }
                Err(source) => Event::Stop(VmError::Kvm { what: "KVM_RUN", source }),
            };
            match exit {
                Event::Out(port, value) => {
                    if let (Mode::Deprivileged, FAULT_PORT, Some(v)) = (self.mode, port, value) {
                        return self.fault(u64::from(u32::from_le_bytes(v)));
                    }
                    let data: &[u8] = value.as_ref().map_or(&[], |v| v);
                    match hypercall::dispatch(
                        &self.mem,
                        &self.devices,
                        &mut self.console,
                        poll_ring,
                        flush,
                        port,
                        data,
                    )? {
                        Next::Continue => {}
                        Next::Halt(status) => return Ok(Exit::Halt(status)),
                    }
                }
                Event::Mmio(gpa) if gpa < self.mem.size() => {
                    return Err(self.stopped(&format!(
                        "host/guest translation fault: guest write to read-only memory at gpa={gpa:#x}"
                    )));
                }
                Event::Mmio(gpa) => {
                    return Err(
                        self.stopped(&format!("guest access to unbacked memory at gpa={gpa:#x}"))
                    );
                }
                Event::Stopped(what) => return Err(self.stopped(what)),
                Event::Stop(e) => return Err(e),
            }
        }
    }

    /// A fault stub reported a CPU exception; the frame is on the monitor's fault stack.
    fn fault(&self, frame_gpa: u64) -> Result<Exit, VmError> {
        let frame = FaultFrame::read(&self.mem, frame_gpa).ok_or_else(|| {
            VmError::GuestStopped(format!("malformed fault report (frame at {frame_gpa:#x})"))
        })?;
        let cr2 = self.vcpu.get_sregs().map(|s| s.cr2).unwrap_or(0);
        Ok(Exit::Fault(GuestFault { frame, cr2 }))
    }

    /// An error naming where the guest was when it stopped.
    fn stopped(&self, what: &str) -> VmError {
        let mut msg = what.to_string();
        if let Ok(regs) = self.vcpu.get_regs() {
            msg += &format!(" at rip={:#x}, rsp={:#x}", regs.rip, regs.rsp);
        }
        if let Ok(sregs) = self.vcpu.get_sregs() {
            msg += &format!(", cr2={:#x}", sregs.cr2);
        }
        if let Ok(ev) = self.vcpu.get_vcpu_events() {
            if ev.exception.injected != 0 || ev.exception.pending != 0 {
                let (mnemonic, _) = crate::fault::vector_name(u64::from(ev.exception.nr));
                msg += &format!(
                    ", pending exception {mnemonic} (error code {:#x})",
                    ev.exception.error_code
                );
            }
        }
        VmError::GuestStopped(msg)
    }
}

enum Event {
    /// An `out` to `port`: its value if it was a single 4-byte write.
    Out(u16, Option<[u8; 4]>),
    Mmio(u64),
    Stopped(&'static str),
    Stop(VmError),
}

/// Offers NIC rings (sturdy_abi::ring) to a deprivileged guest with NICs: carves the area from
/// the top of its usable memory, writes the header, registers the doorbell ioeventfd.
fn setup_rings(
    vm: &VmFd,
    mem: &GuestMemory,
    devices: &mut Devices,
    kernel_end: u64,
    layout: &mut cpu::Layout,
    boot_info: &mut BootInfo,
) -> Result<Option<Rings>, VmError> {
    let nics: Vec<(u64, i32, u32)> = devices
        .0
        .iter()
        .enumerate()
        .filter_map(|(h, d)| match d {
            Some(Device::Net(n)) => Some((h as u64, n.raw_fd(), u32::from(n.mtu) + 14)),
            _ => None,
        })
        .collect();
    if nics.is_empty() {
        return Ok(None);
    }
    let area = RingArea::plan(&nics, layout.usable_end);
    if area.base < cpu::min_usable_end(kernel_end) {
        // What lies above the usable end (the reserved tail) stays; the rings need room
        // between the kernel's minimum and it.
        let need = cpu::min_usable_end(kernel_end) + area.size + (mem.size() - layout.usable_end);
        return Err(cpu::CpuError::TooSmallForRings {
            rings_mib: area.size >> 20,
            max_frame: nics.iter().map(|n| n.2).max().unwrap_or(0),
            need_mib: need.div_ceil(2 << 20) * 2,
        }
        .into());
    }
    area.write_header(mem)?;
    let eventfd =
        || EventFd::new(libc::EFD_NONBLOCK).map_err(|e| VmError::Sandbox(format!("eventfd: {e}")));
    let (doorbell, wake) = (eventfd()?, eventfd()?);
    vm.register_ioevent(
        &doorbell,
        &IoEventAddress::Pio(u64::from(DOORBELL_PORT)),
        NoDatamatch,
    )
    .map_err(kvm_err("KVM_IOEVENTFD"))?;
    layout.usable_end = area.base;
    boot_info.host_features |= HOST_FEATURE_STURDY_RING;
    boot_info.net_ring = area.base;
    let mut ports = Vec::new();
    for d in devices.0.iter_mut() {
        if let Some(Device::Net(n)) = d {
            let taken = n
                .take_rings()
                .map_err(|e| VmError::Sandbox(format!("fabric port rings: {e}")))?;
            ports.push(taken.map(|(rings, socket)| ring::FabricRings { rings, socket }));
        }
    }
    Ok(Some(Rings {
        area: Arc::new(area),
        doorbell,
        wake,
        ports,
    }))
}

/// Opens every device given on the command line, checks it against the manifest (a module
/// refuses a host resource the guest did not declare), and requires every declared device to be
/// attached (docs/hvt-abi.md, Manifest).
fn attach_devices(config: &Config, manifest: &mut Manifest) -> Result<Devices, VmError> {
    let declared = |m: &Manifest| {
        let names: Vec<String> = m.devices().iter().map(|d| d.name.clone()).collect();
        if names.is_empty() {
            "it declares no devices".to_string()
        } else {
            format!("it declares: {}", names.join(", "))
        }
    };
    let mut devices: Vec<Option<Device>> = Vec::new();
    let mut put = |handle: u64, dev: Device| {
        let h = handle as usize;
        if devices.len() <= h {
            devices.resize_with(h + 1, || None);
        }
        devices[h] = Some(dev);
    };
    for b in &config.blocks {
        let handle = match manifest.find(&b.name) {
            Some(d) if matches!(d.kind, DeviceKind::Block) => d.handle,
            _ => {
                return Err(VmError::Attach(format!(
                    "--block:{}: the unikernel has no block device named '{}' ({})",
                    b.name,
                    b.name,
                    declared(manifest)
                )))
            }
        };
        let dev = BlockDevice::open(&b.name, &b.path, b.sector_size)?;
        manifest.attach_block(handle, dev.capacity, dev.block_size as u16);
        put(handle, Device::Block(dev));
    }
    for n in &config.nets {
        let handle = match manifest.find(&n.name) {
            Some(d) if matches!(d.kind, DeviceKind::Net) => d.handle,
            _ => {
                return Err(VmError::Attach(format!(
                    "--net:{}: the unikernel has no network device named '{}' ({})",
                    n.name,
                    n.name,
                    declared(manifest)
                )))
            }
        };
        let mac = n.mac.unwrap_or_else(random_mac);
        let dev = match &n.target {
            NetTarget::Tap(iface) => NetDevice::open_tap(&n.name, iface, mac)?,
            NetTarget::Fd(fd) => NetDevice::from_fd(&n.name, *fd, mac)?,
        };
        manifest.attach_net(handle, mac, dev.mtu);
        put(handle, Device::Net(dev));
    }
    if let Some(d) = manifest.first_unattached() {
        let type_ = match d.kind {
            DeviceKind::Block => "BLOCK_BASIC".to_string(),
            DeviceKind::Net => "NET_BASIC".to_string(),
            DeviceKind::Other(t) => t.to_string(),
        };
        return Err(VmError::Attach(format!(
            "Device '{}' of type {type_} declared but not attached.",
            d.name
        )));
    }
    Ok(Devices(devices))
}

/// Takes over the inherited control socket `fd` (made close-on-exec); an error if it is not an
/// open socket.
fn take_control_socket(fd: i32) -> Result<OwnedFd, VmError> {
    let bad = |why: String| VmError::Attach(format!("--control=@{fd}: {why}"));
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one stat struct into `st`; it fails with EBADF if `fd` is not open.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(bad(format!(
            "file descriptor {fd} is not open in this process ({})",
            std::io::Error::last_os_error()
        )));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(bad(format!("file descriptor {fd} is not a socket")));
    }
    // SAFETY: fd is open (checked above); FD_CLOEXEC changes only its flags.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the command line hands this descriptor to the monitor; nothing else in the
    // process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Boot info at 0x10000, the manifest copy right after it, the command line after that
/// (docs/hvt-abi.md, Boot information).
fn write_boot_info(
    mem: &GuestMemory,
    manifest: &Manifest,
    cmdline: &str,
    mut info: BootInfo,
) -> Result<(), VmError> {
    let mft = manifest.encode();
    let mft_gpa = BOOT_INFO_BASE + BootInfo::SIZE as u64;
    let cmdline_gpa = mft_gpa + mft.len() as u64;
    info.mft = mft_gpa;
    info.cmdline = cmdline_gpa;
    mem.setup_write(BOOT_INFO_BASE, &info.to_bytes())?;
    mem.setup_write(mft_gpa, &mft)?;
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    mem.setup_write(cmdline_gpa, &c)?;
    Ok(())
}
