//! Deleted files still held open in a tmpfs (or a memfd): their pages stay
//! in shmem until the last descriptor closes, and no `ls` shows them. Found
//! by walking /proc/<pid>/fd: a link whose target ends in " (deleted)" and
//! lies in a tmpfs mount (or is a "/memfd:" file), sized by the open
//! file's allocated blocks. The walk is bounded (MAX_FDS links a scan) and
//! run only when shmem is large (pipeline/ledger.rs decides).
use std::{collections::HashMap, fs, os::unix::fs::MetadataExt};

use super::procfs::read_capped;

/// Most fd links read in one scan; past it the scan stops and says so.
pub const MAX_FDS: usize = 50_000;
/// Files kept (the largest).
pub const TOP: usize = 10;
const PATH_CAP: usize = 200;

/// A deleted file that a process still holds open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldFile {
    pub pid: u32,
    pub comm: String,
    /// The file's path before it was deleted (capped, any bytes).
    pub path: String,
    /// The tmpfs mount it is in, or "memfd".
    pub mount: String,
    /// Allocated bytes (st_blocks x 512): what it holds in memory.
    pub bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The largest, biggest first; one entry per file (the first holder).
    pub files: Vec<HeldFile>,
    pub fds_read: usize,
    /// The walk stopped at MAX_FDS.
    pub truncated: bool,
}

/// The mount of `target` ("/mnt/x/blob (deleted)"): the longest tmpfs
/// mount point it is under, "memfd" for a memfd, else None.
pub fn mount_of<'a>(target: &str, mounts: &'a [String]) -> Option<&'a str> {
    let path = target.strip_suffix(" (deleted)")?;
    if path.starts_with("/memfd:") {
        return Some("memfd");
    }
    mounts
        .iter()
        .filter(|m| {
            let m = m.trim_end_matches('/');
            path.strip_prefix(m).is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|m| m.len())
        .map(String::as_str)
}

/// Walks every process's descriptors (bounded) for deleted files in these
/// tmpfs mounts.
pub fn scan(mounts: &[String]) -> Scan {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Scan::default();
    };
    let pids = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()));
    scan_pids(pids, mounts)
}

/// `scan` over these processes only.
fn scan_pids(pids: impl Iterator<Item = u32>, mounts: &[String]) -> Scan {
    let mut out = Scan::default();
    // (dev, ino) -> file: a file open in several processes counts once.
    let mut seen: HashMap<(u64, u64), HeldFile> = HashMap::new();
    'procs: for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if out.fds_read >= MAX_FDS {
                out.truncated = true;
                break 'procs;
            }
            out.fds_read += 1;
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let Some(mount) = mount_of(&target, mounts) else {
                continue;
            };
            // Follows the link to the open file itself.
            let Ok(md) = fs::metadata(fd.path()) else {
                continue;
            };
            seen.entry((md.dev(), md.ino())).or_insert_with(|| HeldFile {
                pid,
                comm: comm_of(pid),
                path: target.trim_end_matches(" (deleted)").chars().take(PATH_CAP).collect(),
                mount: mount.chars().take(PATH_CAP).collect(),
                bytes: md.blocks().saturating_mul(512),
            });
        }
    }
    let mut files: Vec<HeldFile> = seen.into_values().filter(|f| f.bytes > 0).collect();
    files.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.pid.cmp(&b.pid)));
    files.truncate(TOP);
    out.files = files;
    out
}

fn comm_of(pid: u32) -> String {
    read_capped(std::path::Path::new(&format!("/proc/{pid}/comm")), 64)
        .map(|(b, _)| String::from_utf8_lossy(&b).trim_end().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_file_is_placed_in_its_mount() {
        let m = vec!["/dev/shm".to_string(), "/mnt".to_string(), "/mnt/x".to_string()];
        assert_eq!(mount_of("/mnt/x/blob (deleted)", &m), Some("/mnt/x"));
        assert_eq!(mount_of("/mnt/y (deleted)", &m), Some("/mnt"));
        assert_eq!(mount_of("/mntx/y (deleted)", &m), None, "not a prefix of a path component");
        assert_eq!(mount_of("/dev/shm/a", &m), None, "not deleted");
        assert_eq!(mount_of("/memfd:cache (deleted)", &m), Some("memfd"));
        assert_eq!(mount_of("/var/log/x (deleted)", &m), None);
    }

    #[test]
    fn this_process_holding_a_deleted_memfd_is_found() {
        let name = std::ffi::CString::new("lt-held-test").unwrap();
        // SAFETY: memfd_create with a valid C string; the fd is ours.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fd is a valid memfd; 1 MiB of allocation.
        assert_eq!(unsafe { libc::fallocate(fd, 0, 0, 1 << 20) }, 0);
        // Only this process: on a host with more than MAX_FDS descriptors
        // open (10,000 idle processes of a scale benchmark) a whole-host
        // scan stops before it reaches this one, by design.
        let s = scan_pids(std::iter::once(std::process::id()), &[]);
        // SAFETY: closing our own fd.
        unsafe { libc::close(fd) };
        let me = std::process::id();
        let f = s.files.iter().find(|f| f.pid == me && f.path.contains("lt-held-test"));
        let f = f.unwrap_or_else(|| panic!("not found in {s:?}"));
        assert_eq!((f.mount.as_str(), f.bytes), ("memfd", 1 << 20));
    }
}
