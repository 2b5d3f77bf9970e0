//! Process groups: a fork pool is one thing to the user (seed 003's 64
//! `python3 collector.py` workers).
//!
//! # The rule (also in docs/trend.md)
//! Two processes are in the same group when they share a parent and an
//! executable. In addition, a child whose parent runs the same executable
//! joins its parent's group. So a pool parent that forked 8 workers is one
//! group of **9 members** (the parent plus its 8 children), led by the
//! parent. Siblings under a different parent (e.g. 8 `sleep`s started by a
//! shell) form a group led by the lowest pid. Only groups with at least two
//! members are reported; every member is still listed as a process.
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Member<'a> {
    pub pid: u32,
    pub ppid: u32,
    pub exe: &'a str,
    pub rss_bytes: u64,
    pub growth_bytes_per_sec: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub leader_pid: u32,
    pub exe: String,
    pub pids: Vec<u32>,
    pub rss_bytes: u64,
    pub growth_bytes_per_sec: f64,
}

pub fn group(procs: &[Member<'_>]) -> Vec<Group> {
    let by_pid: HashMap<u32, &Member> = procs.iter().map(|m| (m.pid, m)).collect();
    // Key of a process: (ppid, exe) of the top-most ancestor in an unbroken
    // chain of same-executable parents.
    let key_of = |m: &Member| -> (u32, String) {
        let mut cur = m;
        for _ in 0..64 {
            match by_pid.get(&cur.ppid) {
                Some(parent) if parent.exe == cur.exe && !cur.exe.is_empty() && parent.pid != cur.pid => {
                    cur = parent
                }
                _ => break,
            }
        }
        (cur.ppid, cur.exe.to_string())
    };
    let mut groups: HashMap<(u32, String), Vec<&Member>> = HashMap::new();
    for m in procs {
        if m.exe.is_empty() {
            continue;
        }
        groups.entry(key_of(m)).or_default().push(m);
    }
    let mut out: Vec<Group> = groups
        .into_iter()
        .filter(|(_, v)| v.len() >= 2)
        .map(|((ppid, exe), mut v)| {
            v.sort_by_key(|m| m.pid);
            // The leader is the member whose parent is outside the group
            // (the pool parent) if there is exactly one such; else lowest pid.
            let tops: Vec<&&Member> = v.iter().filter(|m| m.ppid == ppid).collect();
            let leader_pid = if tops.len() == 1 { tops[0].pid } else { v[0].pid };
            Group {
                leader_pid,
                exe,
                pids: v.iter().map(|m| m.pid).collect(),
                rss_bytes: v.iter().map(|m| m.rss_bytes).sum(),
                growth_bytes_per_sec: v.iter().map(|m| m.growth_bytes_per_sec).sum(),
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

    fn m(pid: u32, ppid: u32, exe: &str, rss: u64) -> Member<'_> {
        Member {
            pid,
            ppid,
            exe,
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
        assert_eq!(g[0].rss_bytes, 50 + 8 * 64);
    }

    #[test]
    fn siblings_with_other_exe_parent() {
        let v = vec![
            m(100, 1, "/bin/bash", 5),
            m(101, 100, "/bin/sleep", 1),
            m(102, 100, "/bin/sleep", 1),
            m(103, 100, "/bin/cat", 1),
        ];
        let g = group(&v);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].pids, vec![101, 102]);
        assert_eq!(g[0].leader_pid, 101);
    }

    #[test]
    fn nested_same_exe_chain_and_singletons() {
        // python -> python -> python: one chain, one group.
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
        // No exe (e.g. unreadable): never grouped.
        assert!(group(&[m(1, 0, "", 1), m(2, 0, "", 1)]).is_empty());
    }
}
