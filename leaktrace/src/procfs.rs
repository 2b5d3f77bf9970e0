//! Reading and parsing /proc. Parsers are pure functions over the file text
//! so they can be unit-tested on recorded inputs.
use std::{fs, path::PathBuf};

/// What leaktrace shows about a process besides its counters. Read once per
/// process (keyed by pid and start time, so a reused pid is a new process).
#[derive(Debug, Clone, Default)]
pub struct ProcInfo {
    pub ppid: u32,
    pub comm: String,
    pub cmdline: String,
    pub exe: String,
    pub cgroup: String,
    /// 1 or 2; 0 if unknown.
    pub cgroup_version: u8,
    /// Start time in clock ticks after boot (field 22 of /proc/<pid>/stat).
    pub start_time: u64,
}

/// The interesting part of /proc/<pid>/stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub start_time: u64,
}

/// Parses /proc/<pid>/stat. The comm is between the first '(' and the
/// *last* ')', since a comm may itself contain ')' or spaces.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let start_time = rest.get(19)?.parse().ok()?;
    Some(Stat {
        comm,
        state,
        ppid,
        start_time,
    })
}

/// RSS split from /proc/<pid>/status, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusRss {
    pub anon: u64,
    pub file: u64,
    pub shmem: u64,
    pub swap: u64,
}

pub fn parse_status_rss(text: &str) -> Option<StatusRss> {
    let mut r = StatusRss::default();
    let mut seen = false;
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let kb = || -> Option<u64> {
            val.split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
                .map(|v| v * 1024)
        };
        match key {
            "RssAnon" => {
                r.anon = kb()?;
                seen = true;
            }
            "RssFile" => r.file = kb()?,
            "RssShmem" => r.shmem = kb()?,
            "VmSwap" => r.swap = kb()?,
            _ => {}
        }
    }
    seen.then_some(r)
}

/// The memory cgroup of a process from /proc/<pid>/cgroup: the v1 hierarchy
/// that carries the memory controller if there is one, otherwise the v2
/// ("0::") path. Returns (path, version).
pub fn parse_cgroup(text: &str) -> Option<(String, u8)> {
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.split(',').any(|c| c == "memory") {
            return Some((path.to_string(), 1));
        }
        if id == "0" && ctrls.is_empty() {
            v2 = Some((path.to_string(), 2));
        }
    }
    v2
}

/// NUL-separated argv -> one line, arguments separated by spaces.
pub fn parse_cmdline(raw: &[u8]) -> String {
    let trimmed = raw.strip_suffix(&[0]).unwrap_or(raw);
    String::from_utf8_lossy(trimmed).replace('\0', " ")
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

pub fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(proc_path(pid, "stat")).ok()?)
}

pub fn read_status_rss(pid: u32) -> Option<StatusRss> {
    parse_status_rss(&fs::read_to_string(proc_path(pid, "status")).ok()?)
}

/// Reads everything leaktrace shows about a process. None if it is gone,
/// a zombie, or a kernel thread (no cmdline and no exe).
pub fn read_info(pid: u32) -> Option<ProcInfo> {
    let stat = read_stat(pid)?;
    if stat.state == 'Z' || stat.state == 'X' {
        return None;
    }
    let cmdline = parse_cmdline(&fs::read(proc_path(pid, "cmdline")).ok()?);
    let exe = fs::read_link(proc_path(pid, "exe"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if exe.is_empty() && cmdline.is_empty() {
        return None;
    }
    let (cgroup, cgroup_version) = fs::read_to_string(proc_path(pid, "cgroup"))
        .ok()
        .and_then(|t| parse_cgroup(&t))
        .unwrap_or_default();
    Some(ProcInfo {
        ppid: stat.ppid,
        comm: stat.comm,
        cmdline,
        exe,
        cgroup,
        cgroup_version,
        start_time: stat.start_time,
    })
}

/// All numeric entries of /proc.
pub fn pids() -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_tricky_comm() {
        let s = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 200 18446744073709551615";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.comm, "my (weird) proc");
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.start_time, 98765);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn status_rss() {
        let s = "Name:\tcat\nVmRSS:\t    1024 kB\nRssAnon:\t     100 kB\nRssFile:\t     900 kB\nRssShmem:\t      24 kB\nVmSwap:\t       8 kB\n";
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
        assert!(parse_status_rss("Name:\tkthreadd\nState:\tS\n").is_none());
    }

    #[test]
    fn cgroup_v1_memory_wins_over_v2() {
        let s = "12:pids:/user.slice\n4:memory:/leaktrace-test\n1:name=systemd:/init.scope\n0::/init.scope\n";
        assert_eq!(parse_cgroup(s), Some(("/leaktrace-test".into(), 1)));
        let v2 = "0::/system.slice/nginx.service\n";
        assert_eq!(parse_cgroup(v2), Some(("/system.slice/nginx.service".into(), 2)));
        assert_eq!(parse_cgroup("3:cpu,cpuacct:/x\n"), None);
        assert_eq!(parse_cgroup("5:cpu,memory:/a:b\n"), Some(("/a:b".into(), 1)));
    }

    #[test]
    fn cmdline() {
        assert_eq!(
            parse_cmdline(b"python3\0collector.py\0--x\0"),
            "python3 collector.py --x"
        );
        assert_eq!(parse_cmdline(b""), "");
    }
}
