//! Process groups: a fork pool is one thing to the user (seed 003's 64
//! `python3 collector.py` workers, a gunicorn master and its workers).
//!
//! # The rule (also in docs/trend.md)
//! A child belongs to its parent's group when it runs the parent's image:
//! it was forked without exec (the kernel's `self_exec_id` and comm are
//! the parent's), or it runs the same executable and was forked by it (a
//! spawned or forkserver worker). Following parents while that holds ends
//! at the group's leader. So a pool parent that forked 8 workers is one
//! group of **9 members**, led by the parent. Siblings that a shell
//! started (two `python3` under one `bash`) are *not* a group: the shell
//! runs another image. Only groups with at least two members are
//! reported; every member is still listed as a process.
use crate::fmt::FastMap as HashMap;

#[derive(Debug, Clone)]
pub struct Member<'a> {
    pub pid: u32,
    pub ppid: u32,
    /// When it started (CLOCK_MONOTONIC ns): with the pid, the identity of
    /// a group's leader across samples.
    pub start_ns: u64,
    pub exe: &'a str,
    pub comm: &'a str,
    /// task->self_exec_id: a child forked without exec has its parent's.
    pub exec_id: u64,
    pub rss_bytes: u64,
    pub growth_bytes_per_sec: f64,
}

/// At most this many pids are listed per group (`members` counts them all).
pub const MAX_PIDS_LISTED: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub leader_pid: u32,
    pub leader_start_ns: u64,
    pub exe: String,
    pub members: usize,
    /// The first MAX_PIDS_LISTED members by pid.
    pub pids: Vec<u32>,
    /// Every member.
    pub all: Vec<u32>,
    pub rss_bytes: u64,
    pub growth_bytes_per_sec: f64,
    /// `pids` no longer lists the lowest members (members came or went
    /// since): `list_pids` makes it again.
    pub pids_stale: bool,
}

impl Group {
    /// `pids` again: the first MAX_PIDS_LISTED members by pid.
    pub fn list_pids(&mut self) {
        let mut v = self.all.clone();
        if v.len() > MAX_PIDS_LISTED {
            v.select_nth_unstable(MAX_PIDS_LISTED);
            v.truncate(MAX_PIDS_LISTED);
        }
        v.sort_unstable();
        self.pids = v;
        self.pids_stale = false;
    }
}

/// Does `child` run `parent`'s image?
pub fn same_image(child: &Member, parent: &Member) -> bool {
    if parent.pid == child.pid {
        return false;
    }
    let forked_only = child.exec_id == parent.exec_id && child.comm == parent.comm && !child.comm.is_empty();
    let same_exe = !child.exe.is_empty() && child.exe == parent.exe;
    forked_only || same_exe
}

pub fn group<'a, 'b>(procs: &'b [Member<'a>]) -> Vec<Group> {
    let by_pid: HashMap<u32, &'b Member<'a>> = procs.iter().map(|m| (m.pid, m)).collect();
    // The leader of a process: the top of its chain of same-image parents.
    let leader_of = |m: &'b Member<'a>| -> &'b Member<'a> {
        let mut cur = m;
        for _ in 0..64 {
            match by_pid.get(&cur.ppid) {
                Some(parent) if same_image(cur, parent) => cur = parent,
                _ => break,
            }
        }
        cur
    };
    let mut groups: HashMap<u32, (&'b Member<'a>, Vec<&'b Member<'a>>)> = HashMap::default();
    for m in procs {
        let l = leader_of(m);
        groups.entry(l.pid).or_insert_with(|| (l, Vec::new())).1.push(m);
    }
    let mut out: Vec<Group> = groups
        .into_values()
        .filter(|(_, v)| v.len() >= 2)
        .map(|(leader, mut v)| {
            // The lowest pids first; only the listed ones need sorting.
            if v.len() > MAX_PIDS_LISTED {
                v.select_nth_unstable_by_key(MAX_PIDS_LISTED, |m| m.pid);
                v[..MAX_PIDS_LISTED].sort_unstable_by_key(|m| m.pid);
            } else {
                v.sort_unstable_by_key(|m| m.pid);
            }
            Group {
                leader_pid: leader.pid,
                leader_start_ns: leader.start_ns,
                exe: leader.exe.to_string(),
                members: v.len(),
                pids: v.iter().map(|m| m.pid).take(MAX_PIDS_LISTED).collect(),
                all: v.iter().map(|m| m.pid).collect(),
                rss_bytes: v.iter().map(|m| m.rss_bytes).sum(),
                growth_bytes_per_sec: v.iter().map(|m| m.growth_bytes_per_sec).sum(),
                pids_stale: false,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.rss_bytes
            .cmp(&a.rss_bytes)
            .then(a.leader_pid.cmp(&b.leader_pid))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m<'a>(pid: u32, ppid: u32, exe: &'a str, rss: u64) -> Member<'a> {
        Member {
            pid,
            ppid,
            start_ns: pid as u64,
            exe,
            comm: exe.rsplit('/').next().unwrap_or(""),
            // Every process here exec'd its image.
            exec_id: 1 + pid as u64,
            rss_bytes: rss,
            growth_bytes_per_sec: 0.0,
        }
    }

    #[test]
    fn fork_pool_is_one_group_with_parent() {
        let mut v = vec![
            m(1, 0, "/sbin/init", 10),
            m(100, 1, "/bin/bash", 5),
            m(200, 100, "/usr/bin/python3", 50),
        ];
        for i in 0..8 {
            v.push(m(300 + i, 200, "/usr/bin/python3", 64));
        }
        let g = group(&v);
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].leader_pid, 200);
        assert_eq!(g[0].pids.len(), 9);
        assert_eq!(g[0].members, 9);
        assert_eq!(g[0].rss_bytes, 50 + 8 * 64);
    }

    #[test]
    fn siblings_a_shell_started_are_not_a_pool() {
        // The ProcessPoolExecutor case: the pool's main process and an
        // unrelated python3 from the same shell.
        let mut v = vec![
            m(100, 1, "/bin/bash", 5),
            m(101, 100, "/usr/bin/python3", 300),
            m(102, 100, "/usr/bin/python3", 40),
            m(103, 100, "/bin/sleep", 1),
            m(104, 100, "/bin/sleep", 1),
        ];
        for i in 0..4 {
            v.push(m(200 + i, 101, "/usr/bin/python3", 310));
        }
        let g = group(&v);
        assert_eq!(g.len(), 1, "{g:?}");
        assert_eq!(g[0].leader_pid, 101);
        assert_eq!(g[0].pids, vec![101, 200, 201, 202, 203]);
    }

    #[test]
    fn forked_without_exec_joins_even_before_its_exe_is_known() {
        let mut parent = m(10, 1, "/usr/bin/gunicorn", 50);
        parent.comm = "gunicorn";
        let mut w = m(11, 10, "", 60);
        (w.comm, w.exec_id) = ("gunicorn", parent.exec_id);
        // Exec'd something else: not a member.
        let mut other = m(12, 10, "", 5);
        other.comm = "sh";
        let g = group(&[parent.clone(), w, other]);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].pids, vec![10, 11]);
    }

    #[test]
    fn nested_same_exe_chain_and_singletons() {
        // python -> python (forkserver) -> python workers: one group.
        let v = vec![
            m(10, 1, "/py", 1),
            m(11, 10, "/py", 1),
            m(12, 11, "/py", 1),
            m(20, 1, "/other", 1),
        ];
        let g = group(&v);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].pids, vec![10, 11, 12]);
        assert_eq!(g[0].leader_pid, 10);
        // No exe and no shared image: never grouped.
        let (mut a, mut b) = (m(1, 0, "", 1), m(2, 1, "", 1));
        (a.comm, b.comm) = ("", "");
        assert!(group(&[a, b]).is_empty());
    }
}
