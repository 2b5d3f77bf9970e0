//! The host's memory as the kernel accounts it, for the memory ledger
//! (`model::ledger`): /proc/meminfo, every tmpfs mount's used bytes
//! (statfs), SysV shared memory (/proc/sysvipc/shm) and the slab caches
//! (/proc/slabinfo). Every read is bounded; mount points and cache names
//! are capped (they are any bytes a mounter or module chose).
use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use super::procfs::read_capped;

/// Most bytes read of each /proc file.
const FILE_CAP: usize = 4 << 20;
/// Most tmpfs mounts looked at (statfs each); past it they are counted.
pub const MAX_MOUNTS: usize = 256;
/// Longest mount point or cache name kept.
const NAME_CAP: usize = 200;

/// One reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// /proc/meminfo, in bytes, by key.
    pub meminfo: BTreeMap<String, u64>,
    /// Used bytes of each tmpfs mount (mount point), at most MAX_MOUNTS.
    pub tmpfs: Vec<(String, u64)>,
    pub tmpfs_not_read: usize,
    /// SysV segments: (count, bytes resident, count with no process
    /// attached, their bytes).
    pub sysv: (u64, u64, u64, u64),
    /// Bytes per slab cache (num_objs x objsize).
    pub slab: Vec<(String, u64)>,
    /// Deleted files held open in the tmpfs mounts, when this reading
    /// walked the descriptors (pipeline/ledger.rs decides when).
    pub held: Option<super::held_deleted::Scan>,
}

fn cap(s: &str) -> String {
    s.chars().take(NAME_CAP).collect()
}

/// /proc/meminfo lines ("Key:   123 kB") in bytes.
pub fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let mut f = v.split_whitespace();
            let n: u64 = f.next()?.parse().ok()?;
            let mult = if f.next() == Some("kB") { 1024 } else { 1 };
            Some((k.trim().to_string(), n.saturating_mul(mult)))
        })
        .collect()
}

/// /proc/slabinfo (version 2.1) to bytes per cache.
pub fn parse_slabinfo(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter(|l| !l.starts_with("slabinfo") && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let _active: u64 = f.next()?.parse().ok()?;
            let num: u64 = f.next()?.parse().ok()?;
            let size: u64 = f.next()?.parse().ok()?;
            Some((cap(name), num.saturating_mul(size)))
        })
        .collect()
}

/// /proc/sysvipc/shm: (segments, rss bytes, unattached segments, their bytes).
pub fn parse_sysv_shm(text: &str) -> (u64, u64, u64, u64) {
    let mut lines = text.lines();
    let Some(head) = lines.next() else {
        return (0, 0, 0, 0);
    };
    let cols: Vec<&str> = head.split_whitespace().collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(nattch), Some(rss), Some(size)) = (col("nattch"), col("rss"), col("size")) else {
        return (0, 0, 0, 0);
    };
    let mut out = (0, 0, 0, 0);
    for l in lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        let Some(bytes) = num(rss).or_else(|| num(size)) else {
            continue;
        };
        out.0 += 1;
        out.1 += bytes;
        if num(nattch) == Some(0) {
            out.2 += 1;
            out.3 += bytes;
        }
    }
    out
}

/// tmpfs mount points from /proc/mounts (octal escapes decoded).
pub fn parse_tmpfs_mounts(text: &str) -> Vec<String> {
    let unescape = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "tmpfs").then(|| unescape(mnt))
        })
        .collect()
}

/// Used bytes of the file system at `path`.
fn statfs_used(path: &str) -> Option<u64> {
    let c = std::ffi::CString::new(path).ok()?;
    // SAFETY: statfs writes into `st`, a plain struct we own; `c` is a
    // valid NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_blocks.saturating_sub(st.f_bfree)).saturating_mul(st.f_bsize as u64))
}

fn read_text(p: &str) -> String {
    read_capped(Path::new(p), FILE_CAP)
        .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// /proc/slabinfo is read again when the slab total in /proc/meminfo
/// moved by this much since it was last read (or by a hundredth of it, if
/// that is more)...
const SLAB_MOVED: u64 = 4 << 20;
const SLAB_MOVED_FRACTION: u64 = 100;
/// ...or when it was last read this long ago.
const SLAB_EVERY: Duration = Duration::from_secs(60);

/// Reads the host again and again. /proc/slabinfo, the costly file (each
/// read walks every cache under the slab lock, about 1.5 ms on the
/// development VM, against about 0.3 ms for the others together), is read
/// only when the slab total moved (see SLAB_MOVED) or SLAB_EVERY passed;
/// otherwise the reading carries the caches of the last read.
#[derive(Default)]
pub struct Reader {
    /// The slab total when slabinfo was last read, when, and what it said.
    slab: Option<(u64, Instant, Vec<(String, u64)>)>,
}

impl Reader {
    pub fn read(&mut self) -> Reading {
        let meminfo = parse_meminfo(&read_text("/proc/meminfo"));
        let total = meminfo.get("Slab").copied().unwrap_or(0);
        let stale = match &self.slab {
            None => true,
            Some((then, at, _)) => {
                total.abs_diff(*then) >= SLAB_MOVED.max(then / SLAB_MOVED_FRACTION) || at.elapsed() >= SLAB_EVERY
            }
        };
        if stale {
            self.slab = Some((total, Instant::now(), parse_slabinfo(&read_text("/proc/slabinfo"))));
        }
        let slab = self.slab.as_ref().map(|s| s.2.clone()).unwrap_or_default();
        read_rest(meminfo, slab)
    }
}

/// Reads everything once (a few ms; run off the sampling thread).
pub fn read() -> Reading {
    read_rest(
        parse_meminfo(&read_text("/proc/meminfo")),
        parse_slabinfo(&read_text("/proc/slabinfo")),
    )
}

/// The tmpfs mounts and SysV shm, next to a meminfo and slab reading.
fn read_rest(meminfo: BTreeMap<String, u64>, slab: Vec<(String, u64)>) -> Reading {
    let mounts = parse_tmpfs_mounts(&read_text("/proc/mounts"));
    let not_read = mounts.len().saturating_sub(MAX_MOUNTS);
    let tmpfs = mounts
        .iter()
        .take(MAX_MOUNTS)
        .filter_map(|m| Some((cap(m), statfs_used(m)?)))
        .collect();
    Reading {
        meminfo,
        tmpfs,
        tmpfs_not_read: not_read,
        sysv: parse_sysv_shm(&read_text("/proc/sysvipc/shm")),
        slab,
        held: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_files() {
        let m = parse_meminfo("MemTotal:       24576000 kB\nShmem:  2048 kB\nHugePages_Total:       0\n");
        assert_eq!(m["MemTotal"], 24576000 * 1024);
        assert_eq!(m["Shmem"], 2048 * 1024);
        assert_eq!(m["HugePages_Total"], 0);
        let s = parse_slabinfo(
            "slabinfo - version: 2.1\n# name <active_objs> ...\ndentry  1000 1200 192 21 1 : tunables 0 0 0 : slabdata 57 57 0\nbad line\n",
        );
        assert_eq!(s, vec![("dentry".to_string(), 1200 * 192)]);
        let shm = "key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime rss swap\n\
                   0 1 600 1048576 10 10 0 0 0 0 0 0 0 0 1048576 0\n\
                   0 2 600 4096 10 10 2 0 0 0 0 0 0 0 4096 0\n";
        assert_eq!(parse_sysv_shm(shm), (2, 1048576 + 4096, 1, 1048576));
        let mounts = "tmpfs /dev/shm tmpfs rw 0 0\nproc /proc proc rw 0 0\ntmpfs /tmp/a\\040b tmpfs rw 0 0\n";
        assert_eq!(
            parse_tmpfs_mounts(mounts),
            vec!["/dev/shm".to_string(), "/tmp/a b".to_string()]
        );
    }

    #[test]
    fn reads_this_host() {
        let r = read();
        assert!(r.meminfo.get("MemTotal").copied().unwrap_or(0) > 0);
    }

    #[test]
    fn the_reader_keeps_the_caches_while_the_slab_total_holds_still() {
        let mut rd = Reader::default();
        let first = rd.read();
        assert!(!first.slab.is_empty(), "slabinfo read on the first reading");
        let Some((total, _, _)) = rd.slab.clone() else { panic!("no slab state") };
        // A reading with the same total carries the same caches, from the
        // first read (marked here so a re-read would show).
        rd.slab.as_mut().unwrap().2 = vec![("marker".into(), 1)];
        rd.slab.as_mut().unwrap().0 = total;
        let again = rd.read();
        let moved = again.meminfo.get("Slab").copied().unwrap_or(0).abs_diff(total);
        if moved < SLAB_MOVED {
            assert_eq!(again.slab, vec![("marker".to_string(), 1)]);
        }
        // A total far from the last one reads slabinfo again.
        rd.slab.as_mut().unwrap().0 = total + (1 << 40);
        assert_ne!(rd.read().slab, vec![("marker".to_string(), 1)]);
        // So does an old reading.
        rd.slab.as_mut().unwrap().1 = Instant::now() - SLAB_EVERY;
        rd.slab.as_mut().unwrap().2 = vec![("marker".into(), 1)];
        assert_ne!(rd.read().slab, vec![("marker".to_string(), 1)]);
    }
}
