//! PUTS (spec 5): guest bytes to the monitor's stdout, unbuffered, straight from guest memory.

use crate::memory::{Access, GuestMemory};
use crate::VmError;

/// Writes `len` guest bytes at `data` to stdout. A closed or full stdout never stops the guest.
pub fn puts(mem: &GuestMemory, data: u64, len: u64) -> Result<(), VmError> {
    let ptr = mem.host_ptr(data, len, Access::Read)?;
    let mut done = 0usize;
    while (done as u64) < len {
        // SAFETY: ptr..ptr+len was checked to lie in guest memory; done < len.
        let p = unsafe { ptr.add(done) };
        // SAFETY: p..p+(len-done) is inside the checked guest range; write only reads it.
        let rc = unsafe { libc::write(libc::STDOUT_FILENO, p.cast(), len as usize - done) };
        if rc > 0 {
            done += rc as usize;
        } else if rc < 0
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            break; // stdout closed or broken: the guest's output is lost, the guest goes on
        }
    }
    Ok(())
}
