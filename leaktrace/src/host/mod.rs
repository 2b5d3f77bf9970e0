//! The host as /proc, /sys and cgroupfs show it: process metadata (read on
//! worker threads), memory cgroups, who a cgroup path belongs to (unit,
//! container, pod), consoles, printk levels and PSI.
pub mod attribution;
pub mod cgroup;
pub mod cpython;
pub mod facts;
pub mod held_deleted;
pub mod ledger;
pub mod meta;
pub mod procfs;

/// This host's name (uname nodename), read as bytes, capped at 255 and
/// decoded lossily: whoever may set it (a UTS namespace's root) gets no
/// more room than that. JSON escapes the rest.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the result is bounded below.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if r != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len() - 1);
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// The kernel's id of this boot (/proc/sys/kernel/random/boot_id): with the
/// host name it tells which boot a line's pids and timestamps belong to.
/// None when unreadable or not a UUID.
pub fn boot_id() -> Option<String> {
    let (b, _) = procfs::read_capped(std::path::Path::new("/proc/sys/kernel/random/boot_id"), 64).ok()?;
    let s = std::str::from_utf8(&b).ok()?.trim();
    let ok = s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    ok.then(|| s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_name_and_boot_id() {
        let h = super::hostname();
        assert!(!h.is_empty() && h.len() < 256, "{h:?}");
        let b = super::boot_id().expect("Linux has a boot_id");
        assert_eq!(b.len(), 36);
        assert_eq!(super::boot_id(), Some(b), "stable within a boot");
    }
}
