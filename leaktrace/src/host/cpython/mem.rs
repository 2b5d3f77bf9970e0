//! Bounded reads of another process's memory (`process_vm_readv`): no
//! ptrace, no pause of the process.

/// Reads `len` bytes at `addr` of `pid` (at most 64 KiB); None when any of
/// it is unreadable.
pub fn read(pid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
    if len == 0 || len > 64 * 1024 || addr == 0 {
        return None;
    }
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` describes `buf`, valid for `len` bytes; the kernel
    // checks the remote range and fails the call instead of faulting us.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    (n == len as isize).then_some(buf)
}

pub fn u64_at(pid: u32, addr: u64) -> Option<u64> {
    read(pid, addr, 8).map(|b| u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])))
}

/// A little-endian field of `buf`, 0 when out of range.
pub fn le_u64(buf: &[u8], off: usize) -> u64 {
    buf.get(off..off + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

pub fn le_u32(buf: &[u8], off: usize) -> u32 {
    buf.get(off..off + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}
