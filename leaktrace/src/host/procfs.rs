//! Reading /proc. Every file is read as bytes, with a cap, and decoded
//! lossily: any process controls its comm and argv, so nothing here may
//! assume UTF-8 or a sane size. A failed read means "process gone" only for
//! ENOENT and ESRCH; anything else (EMFILE, EACCES, a parse failure) is an
//! error of its own, never taken for an exit. Parsers are pure functions
//! over the bytes, unit-tested on recorded inputs.
use std::{
    fs,
    io::{self, Read},
    os::unix::ffi::OsStrExt,
    path::PathBuf,
};

/// The longest command line kept (bytes of /proc/<pid>/cmdline).
pub const CMDLINE_CAP: usize = crate::limits::CMDLINE_BYTES;
/// The most of /proc/<pid>/cgroup read, and the longest cgroup path kept.
pub const CGROUP_CAP: usize = crate::limits::CGROUP_PATH_BYTES;
/// The longest executable path kept.
pub const EXE_CAP: usize = crate::limits::EXE_PATH_BYTES;

#[derive(Debug)]
pub enum ProcErr {
    /// The process is gone (ENOENT, ESRCH).
    Gone,
    /// Anything else: the process may well be alive.
    Failed(String),
}

impl std::fmt::Display for ProcErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcErr::Gone => write!(f, "process gone"),
            ProcErr::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for ProcErr {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => ProcErr::Gone,
            _ => ProcErr::Failed(e.to_string()),
        }
    }
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// Reads at most `cap` bytes; the bool says whether the file had more.
pub fn read_capped(path: &std::path::Path, cap: usize) -> io::Result<(Vec<u8>, bool)> {
    let f = fs::File::open(path)?;
    let mut buf = Vec::with_capacity(cap.min(8192));
    f.take(cap as u64 + 1).read_to_end(&mut buf)?;
    let truncated = buf.len() > cap;
    buf.truncate(cap);
    Ok((buf, truncated))
}

/// The interesting part of /proc/<pid>/stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Raw bytes between the first '(' and the last ')'.
    pub comm: Vec<u8>,
    pub state: u8,
    pub ppid: u32,
    pub minflt: u64,
    pub majflt: u64,
    pub threads: u32,
    /// Start time in clock ticks after boot (field 22).
    pub start_time: u64,
    pub rss_pages: u64,
}

/// Parses /proc/<pid>/stat. The comm is between the first '(' and the
/// *last* ')', since a comm may itself contain ')', spaces or any byte.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let comm = text.get(open + 1..close)?.to_vec();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    let n = |i: usize| -> Option<u64> { f.get(i)?.parse().ok() };
    Some(Stat {
        comm,
        state: *f.first()?.as_bytes().first()?,
        ppid: n(1)? as u32,
        minflt: n(7)?,
        majflt: n(9)?,
        threads: n(17)? as u32,
        start_time: n(19)?,
        rss_pages: n(21)?,
    })
}

pub fn read_stat(pid: u32) -> Result<Stat, ProcErr> {
    let (b, _) = read_capped(&proc_path(pid, "stat"), 4096)?;
    parse_stat(&b).ok_or_else(|| ProcErr::Failed(format!("/proc/{pid}/stat: unparseable")))
}

/// RSS split from /proc/<pid>/status, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusRss {
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    pub swap: u64,
}

pub fn parse_status_rss(text: &[u8]) -> Option<StatusRss> {
    let mut r = StatusRss::default();
    let mut seen = false;
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, val) = (&line[..colon], &line[colon + 1..]);
        let kb = || -> Option<u64> {
            std::str::from_utf8(val)
                .ok()?
                .split_ascii_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
                .map(|v| v * 1024)
        };
        match key {
            b"RssAnon" => {
                r.anon = kb()?;
                seen = true;
            }
            b"RssFile" => r.file = kb()?,
            b"RssShmem" => r.shmem = kb()?,
            b"VmSwap" => r.swap = kb()?,
            _ => {}
        }
    }
    seen.then_some(r)
}

pub fn read_status_rss(pid: u32) -> Result<StatusRss, ProcErr> {
    // The Name: line comes first and is at most 64 bytes escaped; the Rss
    // lines are within the first 2 KiB on every kernel.
    let (b, _) = read_capped(&proc_path(pid, "status"), 8192)?;
    parse_status_rss(&b).ok_or_else(|| ProcErr::Failed(format!("/proc/{pid}/status: no RSS lines")))
}

/// The memory cgroup of a process from /proc/<pid>/cgroup: the v1 hierarchy
/// that carries the memory controller if there is one, otherwise the v2
/// ("0::") path. Returns (path, version). The path is any bytes a cgroup
/// name may hold, decoded lossily and capped.
#[cfg(test)]
pub fn parse_cgroup(text: &[u8]) -> Option<(String, u8)> {
    parse_cgroup_raw(text).map(|(raw, v)| (String::from_utf8_lossy(&raw).into_owned(), v))
}

/// As `parse_cgroup`, the path's bytes as they are.
pub fn parse_cgroup_raw(text: &[u8]) -> Option<(Vec<u8>, u8)> {
    let mut v2 = None;
    for line in text.split(|&b| b == b'\n') {
        let mut parts = line.splitn(3, |&b| b == b':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if path.len() > CGROUP_CAP {
            crate::limits::CGROUP_PATH.hit();
        }
        let path = &path[..path.len().min(CGROUP_CAP)];
        if ctrls.split(|&b| b == b',').any(|c| c == b"memory") {
            return Some((path.to_vec(), 1));
        }
        if id == b"0" && ctrls.is_empty() {
            v2 = Some((path.to_vec(), 2));
        }
    }
    v2
}

/// NUL-separated argv -> one line, arguments separated by spaces. Trailing
/// NULs and spaces go (programs that rewrite argv pad it, e.g. stress-ng).
pub fn parse_cmdline(raw: &[u8]) -> String {
    let end = raw
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |i| i + 1);
    let s: Vec<u8> = raw[..end]
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&s).into_owned()
}

/// What leaktrace shows about a process besides its counters. Read once
/// per process, and again only when the kernel says it exec'd or moved to
/// another memory cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub cmdline: String,
    /// The command line was longer than CMDLINE_CAP and was cut.
    pub cmdline_truncated: bool,
    pub exe: String,
    pub cgroup: String,
    /// The cgroup path's bytes (a cgroup name need not be UTF-8).
    pub cgroup_raw: Vec<u8>,
    /// 1 or 2; 0 if unknown.
    pub cgroup_version: u8,
    /// Its pid in its own PID namespace, when that is not the host's
    /// (the last NSpid of /proc/<pid>/status).
    pub ns_pid: Option<u32>,
}

/// Reads cmdline, exe and cgroup. Gone only if the process is gone; a
/// kernel thread or a zombie gives empty fields, not an error.
pub fn read_meta(pid: u32) -> Result<Meta, ProcErr> {
    let (raw, cmdline_truncated) = read_capped(&proc_path(pid, "cmdline"), CMDLINE_CAP)?;
    if cmdline_truncated {
        crate::limits::CMDLINE.hit();
    }
    let exe = match fs::read_link(proc_path(pid, "exe")) {
        Ok(p) => {
            let b = p.as_os_str().as_bytes();
            if b.len() > EXE_CAP {
                crate::limits::EXE_PATH.hit();
            }
            String::from_utf8_lossy(&b[..b.len().min(EXE_CAP)]).into_owned()
        }
        Err(e) => match ProcErr::from(e) {
            ProcErr::Gone if !proc_path(pid, "stat").exists() => return Err(ProcErr::Gone),
            // No exe: a kernel thread, or an exiting process.
            _ => String::new(),
        },
    };
    let (cg, _) = read_capped(&proc_path(pid, "cgroup"), CGROUP_CAP * 4)?;
    let (cgroup_raw, cgroup_version) = parse_cgroup_raw(&cg).unwrap_or_default();
    let cgroup = String::from_utf8_lossy(&cgroup_raw).into_owned();
    let ns_pid = read_capped(&proc_path(pid, "status"), 4096)
        .ok()
        .and_then(|(st, _)| parse_ns_pid(&st));
    Ok(Meta {
        cmdline: parse_cmdline(&raw),
        cmdline_truncated,
        exe,
        cgroup,
        cgroup_raw,
        cgroup_version,
        ns_pid,
    })
}

/// "NSpid:\t4242\t7": the innermost pid, when there is more than one.
fn parse_ns_pid(status: &[u8]) -> Option<u32> {
    let line = status.split(|&b| b == b'\n').find_map(|l| l.strip_prefix(b"NSpid:"))?;
    let ids: Vec<&[u8]> = line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).collect();
    if ids.len() < 2 {
        return None;
    }
    std::str::from_utf8(ids[ids.len() - 1]).ok()?.parse().ok()
}

#[cfg(test)]
#[test]
fn ns_pid_is_the_innermost_of_several() {
    assert_eq!(parse_ns_pid(b"Name:\tx\nNSpid:\t4242\t17\t7\nVmRSS: 1 kB\n"), Some(7));
    assert_eq!(parse_ns_pid(b"NSpid:\t4242\n"), None);
    assert_eq!(parse_ns_pid(b"NSpid:\t4242\tzz\n"), None);
    assert_eq!(parse_ns_pid(b""), None);
}

/// What /proc/<pid>/smaps_rollup says about a process's memory, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rollup {
    /// Proportional set size: each resident page divided by the number of
    /// processes that map it.
    pub pss: u64,
    /// Unique set size: Private_Clean + Private_Dirty, the pages only this
    /// process maps (what its death would free). A copy-on-write copy
    /// moves a page from shared to private: USS grows, RSS does not.
    pub uss: u64,
}

/// The value in bytes of the `key` line ("Pss:") of smaps_rollup text.
fn rollup_field(text: &[u8], key: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|l| {
        let v = l.strip_prefix(key)?;
        let kb: u64 = std::str::from_utf8(v)
            .ok()?
            .split_ascii_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kb.saturating_mul(1024))
    })
}

/// Pss and Private_Clean + Private_Dirty of /proc/<pid>/smaps_rollup.
pub fn parse_rollup(text: &[u8]) -> Option<Rollup> {
    let pss = rollup_field(text, b"Pss:")?;
    let clean = rollup_field(text, b"Private_Clean:")?;
    let dirty = rollup_field(text, b"Private_Dirty:")?;
    Some(Rollup {
        pss,
        uss: clean.saturating_add(dirty),
    })
}

/// One bounded read of /proc/<pid>/smaps_rollup (the kernel walks every
/// mapping under the mmap lock: docs/performance.md says what it costs).
pub fn read_rollup(pid: u32) -> Result<Rollup, ProcErr> {
    let (b, _) = read_capped(&proc_path(pid, "smaps_rollup"), 8192)?;
    parse_rollup(&b)
        .ok_or_else(|| ProcErr::Failed(format!("/proc/{pid}/smaps_rollup: no Pss or Private lines")))
}

/// All numeric entries of /proc.
pub fn pids() -> io::Result<Vec<u32>> {
    Ok(fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// Is the process with this pid now the one that started at `start_ns`
/// (CLOCK_MONOTONIC ns, the kernel's task->start_time)? /proc gives the
/// start in clock ticks of CLOCK_BOOTTIME, which runs ahead of MONOTONIC by
/// the time spent suspended; that offset is taken now. A pid reused by a
/// process started a tick or more later is told apart.
pub fn started_at(pid: u32, start_ns: u64) -> bool {
    let Ok(st) = read_stat(pid) else { return false };
    let clock = |id| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill.
        unsafe { libc::clock_gettime(id, &mut ts) };
        ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
    };
    let offset = clock(libc::CLOCK_BOOTTIME) - clock(libc::CLOCK_MONOTONIC);
    let tck = clk_tck() as i128;
    let expected = (start_ns as i128 + offset) * tck / 1_000_000_000;
    (st.start_time as i128 - expected).abs() <= 1
}

/// Clock ticks per second (for /proc start times).
pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_and_uss_from_smaps_rollup() {
        let t = b"55d0a0000000-7ffd0b5f2000 ---p 00000000 00:00 0                          [rollup]\nRss:              123456 kB\nPss:               61728 kB\nPss_Dirty:         60000 kB\nShared_Clean:      1000 kB\nShared_Dirty:     60000 kB\nPrivate_Clean:      456 kB\nPrivate_Dirty:    62000 kB\n";
        assert_eq!(
            parse_rollup(t),
            Some(Rollup {
                pss: 61728 * 1024,
                uss: (456 + 62000) * 1024
            })
        );
        // Pss_Dirty is not Pss, and a rollup without the private lines is
        // not read as USS 0.
        assert_eq!(
            parse_rollup(b"Pss_Dirty: 1 kB\nPrivate_Clean: 1 kB\nPrivate_Dirty: 1 kB\n"),
            None
        );
        assert_eq!(parse_rollup(b"Rss: 1 kB\nPss: 1 kB\n"), None);
        let me = read_rollup(std::process::id()).unwrap();
        assert!(me.pss > 0 && me.uss > 0 && me.uss <= me.pss);
    }

    #[test]
    fn started_at_tells_a_reused_pid_apart() {
        let me = std::process::id();
        let ticks = read_stat(me).unwrap().start_time as i128;
        let clock = |id| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a valid timespec to fill.
            unsafe { libc::clock_gettime(id, &mut ts) };
            ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
        };
        let offset = clock(libc::CLOCK_BOOTTIME) - clock(libc::CLOCK_MONOTONIC);
        let start_ns = (ticks * 1_000_000_000 / clk_tck() as i128 - offset) as u64;
        assert!(started_at(me, start_ns));
        assert!(
            !started_at(me, start_ns + 50_000_000),
            "50 ms later is another process"
        );
        assert!(!started_at(u32::MAX - 1, start_ns), "no such pid");
    }

    const STAT: &[u8] = b"1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 100 0 7 0 1 2 0 0 20 0 3 0 98765 1000 200 18446744073709551615";

    #[test]
    fn stat_with_tricky_comm() {
        let st = parse_stat(STAT).unwrap();
        assert_eq!(st.comm, b"my (weird) proc");
        assert_eq!(st.state, b'S');
        assert_eq!(st.ppid, 1);
        assert_eq!((st.minflt, st.majflt), (100, 7));
        assert_eq!(st.threads, 3);
        assert_eq!(st.start_time, 98765);
        assert_eq!(st.rss_pages, 200);
        assert!(parse_stat(b"garbage").is_none());
    }

    #[test]
    fn stat_with_a_comm_that_is_not_utf8() {
        // prctl(PR_SET_NAME) accepts any bytes: ESC, BEL, invalid UTF-8.
        let mut s = b"77 (\x1b]0;\xff\x07) R 1 77 77 0 -1 0 5 0 0 0 0 0 0 0 20 0 1 0 42 100 9 0".to_vec();
        let st = parse_stat(&s).expect("a process with a hostile comm is still parsed");
        assert_eq!(st.comm, b"\x1b]0;\xff\x07");
        assert_eq!(st.start_time, 42);
        s.truncate(20);
        assert!(parse_stat(&s).is_none());
    }

    #[test]
    fn status_rss() {
        let s = b"Name:\tcat\nVmRSS:\t    1024 kB\nRssAnon:\t     100 kB\nRssFile:\t     900 kB\nRssShmem:\t      24 kB\nVmSwap:\t       8 kB\n";
        let r = parse_status_rss(s).unwrap();
        assert_eq!(
            r,
            StatusRss {
                anon: 100 * 1024,
                file: 900 * 1024,
                shmem: 24 * 1024,
                swap: 8 * 1024
            }
        );
        // Kernel threads have no Rss lines.
        assert!(parse_status_rss(b"Name:\tkthreadd\nState:\tS\n").is_none());
        // A hostile name with invalid UTF-8 does not hide the rest.
        assert!(parse_status_rss(b"Name:\t\xff\xfe\nRssAnon:\t4 kB\n").is_some());
    }

    #[test]
    fn cgroup_v1_memory_wins_over_v2() {
        let s =
            b"12:pids:/user.slice\n4:memory:/leaktrace-test\n1:name=systemd:/init.scope\n0::/init.scope\n";
        assert_eq!(parse_cgroup(s), Some(("/leaktrace-test".into(), 1)));
        let v2 = b"0::/system.slice/nginx.service\n";
        assert_eq!(parse_cgroup(v2), Some(("/system.slice/nginx.service".into(), 2)));
        assert_eq!(parse_cgroup(b"3:cpu,cpuacct:/x\n"), None);
        assert_eq!(parse_cgroup(b"5:cpu,memory:/a:b\n"), Some(("/a:b".into(), 1)));
        // A cgroup name that is not UTF-8 still gives a path.
        assert_eq!(parse_cgroup(b"0::/bad\xffname\n").unwrap().0, "/bad\u{fffd}name");
    }

    #[test]
    fn cmdline() {
        assert_eq!(
            parse_cmdline(b"python3\0collector.py\0--x\0"),
            "python3 collector.py --x"
        );
        assert_eq!(parse_cmdline(b""), "");
        // stress-ng rewrites argv[0] and pads it with spaces.
        assert_eq!(
            parse_cmdline(b"stress-ng-bigheap [run]          \0\0\0"),
            "stress-ng-bigheap [run]"
        );
        assert_eq!(parse_cmdline(b"a\xff\0"), "a\u{fffd}");
    }
}
