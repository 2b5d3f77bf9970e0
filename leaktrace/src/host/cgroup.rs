//! Memory cgroups: which hierarchy carries the memory controller (v1 or
//! v2), a cgroup's limit, usage and OOM kill count, and the path of a
//! memcg the kernel names by its kernfs id (the directory's inode number).
use std::{
    collections::HashMap,
    fs,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::procfs::{read_capped, CGROUP_CAP};

/// Limits at or above this are "no limit" (v1 writes PAGE_COUNTER_MAX).
const UNLIMITED: u64 = 1 << 60;
/// Most directories one walk of a hierarchy visits.
const MAX_WALK: usize = 50_000;
/// Most ids remembered.
const MAX_IDS: usize = 100_000;
/// A walk for an unknown id happens at most this often (a walk of a
/// thousand memcgs takes about a millisecond; a memcg created for a job
/// that OOMs at once must be named).
const WALK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub root: PathBuf,
    pub version: u8,
}

/// The memory hierarchy in use: v1's memory controller if it is mounted,
/// else a cgroup2 mount that has the memory controller.
pub fn memory_hierarchy() -> Option<Hierarchy> {
    let v1 = PathBuf::from("/sys/fs/cgroup/memory");
    if v1.join("memory.limit_in_bytes").exists() {
        return Some(Hierarchy { root: v1, version: 1 });
    }
    v2_root().map(|root| Hierarchy { root, version: 2 })
}

pub fn v2_root() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2
            && f[2] == "cgroup2"
            && fs::read_to_string(Path::new(f[1]).join("cgroup.controllers"))
                .ok()?
                .split_whitespace()
                .any(|c| c == "memory"))
        .then(|| PathBuf::from(f[1]))
    })
}

fn read_u64(p: &Path) -> Option<u64> {
    let (b, _) = read_capped(p, 64).ok()?;
    std::str::from_utf8(&b).ok()?.trim().parse().ok()
}

/// The `oom_kill` count of a memcg: v1 `memory.oom_control`, v2
/// `memory.events` (kills in this cgroup and below).
#[allow(dead_code)] // for the incident verdicts (memcg kill count)
pub fn parse_oom_kill(text: &[u8]) -> Option<u64> {
    text.split(|&b| b == b'\n').find_map(|l| {
        let l = std::str::from_utf8(l).ok()?;
        l.strip_prefix("oom_kill ")?.trim().parse().ok()
    })
}

pub struct Cgroups {
    pub hierarchy: Option<Hierarchy>,
    limits: HashMap<String, (Instant, Option<u64>)>,
    /// id -> when looked up, and the effective limit with the directory
    /// of the memcg that sets it (the cgroup itself or an ancestor).
    limits_by_id: HashMap<u64, (Instant, Option<(u64, PathBuf)>)>,
    /// kernfs id -> the path as shown (decoded lossily) and the directory
    /// as it is on disk (any bytes: a cgroup name need not be UTF-8).
    ids: HashMap<u64, (String, PathBuf)>,
    /// Shown path -> directory on disk, for the paths seen.
    raw: HashMap<String, PathBuf>,
    last_walk: Option<Instant>,
    /// Walks that stopped at MAX_WALK directories.
    pub walks_capped: u64,
}

impl Cgroups {
    pub fn detect() -> Self {
        Self {
            hierarchy: memory_hierarchy(),
            limits: HashMap::new(),
            limits_by_id: HashMap::new(),
            ids: HashMap::new(),
            raw: HashMap::new(),
            last_walk: None,
            walks_capped: 0,
        }
    }

    pub fn version(&self) -> u8 {
        self.hierarchy.as_ref().map_or(0, |h| h.version)
    }

    fn dir(&self, path: &str) -> Option<PathBuf> {
        if let Some(d) = self.raw.get(path) {
            return Some(d.clone());
        }
        let h = self.hierarchy.as_ref()?;
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            return None;
        }
        Some(h.root.join(rel))
    }

    /// The effective limit: the smallest limit on the path from the cgroup
    /// up to the root. Cached for 10 s.
    pub fn limit(&mut self, path: &str) -> Option<u64> {
        let now = Instant::now();
        if let Some((t, v)) = self.limits.get(path) {
            if now.duration_since(*t) < Duration::from_secs(10) {
                return *v;
            }
        }
        let best = self.limit_at(self.dir(path)?).map(|b| b.0);
        if self.limits.len() >= 4096 {
            // Cgroup churn must not grow this without bound.
            self.limits.clear();
        }
        self.limits.insert(path.to_string(), (now, best));
        best
    }

    /// The effective limit of the memcg with this kernfs id, found on disk
    /// by the id (so a name that is not UTF-8 is no obstacle). Cached 10 s.
    pub fn limit_by_id(&mut self, id: u64) -> Option<u64> {
        self.binding_by_id(id).map(|b| b.0)
    }

    /// The effective limit of the memcg with this id and the directory of
    /// the memcg that sets it. Cached 10 s.
    fn binding_by_id(&mut self, id: u64) -> Option<(u64, PathBuf)> {
        let now = Instant::now();
        if let Some((t, v)) = self.limits_by_id.get(&id) {
            if now.duration_since(*t) < Duration::from_secs(10) {
                return v.clone();
            }
        }
        self.path_of(id)?;
        let dir = self.ids.get(&id)?.1.clone();
        let best = self.limit_at(dir);
        if self.limits_by_id.len() >= 4096 {
            self.limits_by_id.clear();
        }
        self.limits_by_id.insert(id, (now, best.clone()));
        best
    }

    /// For a memcg id: the memcg that sets its limit (shown path), that
    /// limit, and that memcg's usage now (v1 usage_in_bytes, v2
    /// memory.current). The usage that meets the limit is the ancestor's
    /// when the limit is the ancestor's.
    pub fn binding_usage(&mut self, id: u64) -> Option<(String, u64, u64)> {
        let (limit, dir) = self.binding_by_id(id)?;
        let h = self.hierarchy.as_ref()?;
        let file = if h.version == 1 {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        let usage = read_u64(&dir.join(file))?;
        let rel = dir.strip_prefix(&h.root).ok()?.as_os_str().as_bytes();
        let b = &rel[..rel.len().min(CGROUP_CAP)];
        Some((format!("/{}", String::from_utf8_lossy(b)), limit, usage))
    }

    /// The smallest limit from `p` up to the root, and where it is set.
    fn limit_at(&self, mut p: PathBuf) -> Option<(u64, PathBuf)> {
        let h = self.hierarchy.as_ref()?;
        let file = if h.version == 1 {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        let mut best: Option<(u64, PathBuf)> = None;
        loop {
            if let Some(v) = read_u64(&p.join(file)).filter(|v| *v < UNLIMITED) {
                if best.as_ref().is_none_or(|b| v < b.0) {
                    best = Some((v, p.clone()));
                }
            }
            if p == h.root || !p.pop() || !p.starts_with(&h.root) {
                break;
            }
        }
        best
    }

    /// Memory charged to the cgroup now (v1 usage_in_bytes, v2 current).
    #[allow(dead_code)] // for the incident verdicts (memcg growth, kill count)
    pub fn usage(&self, path: &str) -> Option<u64> {
        let file = if self.version() == 1 {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        read_u64(&self.dir(path)?.join(file))
    }

    /// The kernel's own count of OOM kills in this cgroup.
    #[allow(dead_code)] // for the incident verdicts (memcg growth, kill count)
    pub fn oom_kills(&self, path: &str) -> Option<u64> {
        let file = if self.version() == 1 {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        let (b, _) = read_capped(&self.dir(path)?.join(file), 4096).ok()?;
        parse_oom_kill(&b)
    }

    /// Remembers a path seen in /proc/<pid>/cgroup: `path` as shown,
    /// `raw` its bytes.
    pub fn learn(&mut self, path: &str, raw: &[u8]) {
        let Some(h) = &self.hierarchy else { return };
        let rel = raw.strip_prefix(b"/").unwrap_or(raw);
        if rel.split(|&b| b == b'/').any(|c| c == b"..") {
            return;
        }
        let d = h.root.join(std::ffi::OsStr::from_bytes(rel));
        if let Ok(m) = fs::metadata(&d) {
            if self.ids.len() >= MAX_IDS || self.raw.len() >= MAX_IDS {
                self.ids.clear();
                self.raw.clear();
            }
            self.raw.insert(path.to_string(), d.clone());
            self.ids.insert(m.ino(), (path.to_string(), d));
        }
    }

    /// The path of the memcg with this kernfs id; an unknown id triggers a
    /// walk of the hierarchy, at most every WALK_EVERY.
    pub fn path_of(&mut self, id: u64) -> Option<String> {
        if id == 0 {
            return None;
        }
        if let Some(p) = self.ids.get(&id) {
            return Some(p.0.clone());
        }
        if self.last_walk.is_some_and(|t| t.elapsed() < WALK_EVERY) {
            return None;
        }
        self.last_walk = Some(Instant::now());
        self.walk();
        self.ids.get(&id).map(|p| p.0.clone())
    }

    fn walk(&mut self) {
        let Some(h) = self.hierarchy.clone() else { return };
        if self.ids.len() >= MAX_IDS || self.raw.len() >= MAX_IDS {
            self.ids.clear();
            self.raw.clear();
        }
        let mut stack = vec![(h.root.clone(), String::new())];
        let mut seen = 0;
        while let Some((dir, rel)) = stack.pop() {
            seen += 1;
            if seen > MAX_WALK {
                self.walks_capped += 1;
                break;
            }
            if let Ok(m) = fs::symlink_metadata(&dir) {
                let path = if rel.is_empty() {
                    "/".to_string()
                } else {
                    rel.clone()
                };
                self.raw.insert(path.clone(), dir.clone());
                self.ids.insert(m.ino(), (path, dir.clone()));
            }
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = e.file_name();
                    let b = name.as_bytes();
                    let child = format!("{rel}/{}", String::from_utf8_lossy(&b[..b.len().min(255)]));
                    if child.len() <= CGROUP_CAP {
                        stack.push((e.path(), child));
                    }
                }
            }
        }
    }
}

/// Is cgroup `cg` the cgroup `scope` or below it? (None or "/": everything.)
pub fn in_scope(scope: Option<&str>, cg: &str) -> bool {
    match scope {
        None | Some("/") => true,
        Some(s) => cg == s || cg.strip_prefix(s).is_some_and(|r| r.starts_with('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counts() {
        let v1 = b"oom_kill_disable 0\nunder_oom 0\noom_kill 7\n";
        assert_eq!(parse_oom_kill(v1), Some(7));
        let v2 = b"low 0\nhigh 0\nmax 12\noom 3\noom_kill 3\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(3));
        assert_eq!(parse_oom_kill(b"oom_kill_disable 0\n"), None);
    }

    #[test]
    fn scopes() {
        assert!(in_scope(None, "/a"));
        assert!(in_scope(Some("/a"), "/a/b"));
        assert!(!in_scope(Some("/a"), "/ab"));
    }

    /// The running machine: the root cgroup's id resolves to "/".
    #[test]
    fn resolves_the_root_by_id() {
        let mut c = Cgroups::detect();
        let Some(h) = c.hierarchy.clone() else {
            eprintln!("skipping: no memory cgroup hierarchy");
            return;
        };
        let ino = fs::metadata(&h.root).unwrap().ino();
        assert_eq!(c.path_of(ino).as_deref(), Some("/"));
        assert!(c.dir("/../etc").is_none(), "no escaping the hierarchy");
    }
}
