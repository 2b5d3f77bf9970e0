//! Parser for the kernel's OOM report: the lines from "<comm> invoked
//! oom-killer:" to "... Killed process ...". Pure functions over text, tested
//! on reports from several kernel versions (tests/fixtures/oom/).
//!
//! The parser reads the task-dump header to learn the columns, because they
//! changed across versions (rss_anon/rss_file/rss_shmem were added later),
//! and it tolerates the dmesg "[ 1234.567890] " prefix, which the console
//! tracepoint does not carry.
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Invoked {
    pub comm: String,
    pub gfp_mask: String,
    pub order: Option<i32>,
    pub oom_score_adj: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Constraint {
    /// "memcg", "global", "cpuset" or "mempolicy" (the kernel's
    /// CONSTRAINT_MEMCG, _NONE, _CPUSET, _MEMORY_POLICY).
    pub kind: String,
    pub raw: String,
    pub cpuset: Option<String>,
    pub oom_memcg: Option<String>,
    pub task_memcg: Option<String>,
    pub task: Option<String>,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
}

/// One row of the task dump (vm.oom_dump_tasks=1). Memory values are in
/// pages as printed, except pgtables (bytes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Candidate {
    pub pid: u32,
    pub uid: Option<u32>,
    pub tgid: Option<u32>,
    pub total_vm: Option<u64>,
    pub rss: Option<u64>,
    pub rss_anon: Option<u64>,
    pub rss_file: Option<u64>,
    pub rss_shmem: Option<u64>,
    pub pgtables_bytes: Option<u64>,
    pub swapents: Option<u64>,
    pub oom_score_adj: Option<i32>,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Killed {
    pub pid: u32,
    pub comm: String,
    /// "Memory cgroup out of memory", "Out of memory", ...
    pub message: String,
    pub total_vm_kb: Option<u64>,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
    pub uid: Option<u32>,
    pub pgtables_kb: Option<u64>,
    pub oom_score_adj: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Reaped {
    pub pid: u32,
    pub comm: String,
    pub anon_rss_kb: Option<u64>,
    pub file_rss_kb: Option<u64>,
    pub shmem_rss_kb: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub invoked: Option<Invoked>,
    pub memcg_usage_kb: Option<u64>,
    pub memcg_limit_kb: Option<u64>,
    pub constraint: Option<Constraint>,
    pub candidates: Vec<Candidate>,
    pub killed: Option<Killed>,
    /// The memory blocks (memcg stats, Mem-Info, slab table), for
    /// oom_memory.rs.
    #[serde(skip)]
    #[schemars(skip)]
    pub memory: super::oom_memory::MemoryBlocks,
}

/// Removes a dmesg "[   12.345678] " prefix, a syslog "<4>" level and the
/// trailing newline.
pub fn strip(line: &str) -> &str {
    let mut l = line.trim_end_matches(['\n', '\r']);
    if let Some(rest) = l.strip_prefix('<') {
        if let Some(end) = rest.find('>') {
            if rest[..end].chars().all(|c| c.is_ascii_digit()) {
                l = &rest[end + 1..];
            }
        }
    }
    let t = l.trim_start();
    if let Some(rest) = t.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let inner = rest[..end].trim();
            // A timestamp has a '.'; a task-dump row "[  1234]" does not.
            if inner.contains('.') && inner.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return rest[end + 1..].strip_prefix(' ').unwrap_or(&rest[end + 1..]);
            }
        }
    }
    l
}

fn kv<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    // Matches "key=value" or "key:value" up to the next ',' or space.
    let mut start = 0;
    while let Some(i) = s[start..].find(key) {
        let at = start + i;
        let boundary = at == 0 || matches!(s.as_bytes()[at - 1], b' ' | b',' | b'(');
        let after = &s[at + key.len()..];
        if boundary && (after.starts_with('=') || after.starts_with(':')) {
            let v = &after[1..];
            let end = v.find([',', ' ']).unwrap_or(v.len());
            return Some(&v[..end]);
        }
        start = at + key.len();
    }
    None
}

fn num_kb(v: Option<&str>) -> Option<u64> {
    v.and_then(|v| v.trim_end_matches("kB").parse().ok())
}

pub fn parse_invoked(line: &str) -> Option<Invoked> {
    let l = strip(line);
    let i = l.find(" invoked oom-killer:")?;
    let rest = &l[i + " invoked oom-killer:".len()..];
    Some(Invoked {
        comm: l[..i].to_string(),
        gfp_mask: kv(rest, "gfp_mask").unwrap_or_default().to_string(),
        order: kv(rest, "order").and_then(|v| v.parse().ok()),
        oom_score_adj: kv(rest, "oom_score_adj").and_then(|v| v.parse().ok()),
    })
}

pub fn constraint_kind(raw: &str) -> &'static str {
    match raw {
        "CONSTRAINT_MEMCG" => "memcg",
        "CONSTRAINT_CPUSET" => "cpuset",
        "CONSTRAINT_MEMORY_POLICY" => "mempolicy",
        _ => "global",
    }
}

/// "oom-kill:constraint=...,nodemask=...,cpuset=...,mems_allowed=...,
/// oom_memcg=...,task_memcg=...,task=...,pid=...,uid=..."
/// Values after task= are taken from the right, since a comm may contain
/// commas.
pub fn parse_constraint(line: &str) -> Option<Constraint> {
    let l = strip(line);
    let rest = l.strip_prefix("oom-kill:")?;
    let mut c = Constraint::default();
    let (head, tail) = match rest.find(",task=") {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    for part in head.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        match k {
            "constraint" => {
                c.raw = v.to_string();
                c.kind = constraint_kind(v).to_string();
            }
            "cpuset" => c.cpuset = Some(v.to_string()),
            "oom_memcg" => c.oom_memcg = Some(v.to_string()),
            "task_memcg" => c.task_memcg = Some(v.to_string()),
            _ => {}
        }
    }
    if let Some(t) = tail {
        // task=<comm>,pid=<n>,uid=<n>
        let t = t.strip_prefix("task=").unwrap_or(t);
        let (t, uid) = match t.rfind(",uid=") {
            Some(i) => (&t[..i], t[i + 5..].trim().parse().ok()),
            None => (t, None),
        };
        let (t, pid) = match t.rfind(",pid=") {
            Some(i) => (&t[..i], t[i + 5..].trim().parse().ok()),
            None => (t, None),
        };
        c.task = Some(t.to_string());
        c.pid = pid;
        c.uid = uid;
    }
    (!c.raw.is_empty()).then_some(c)
}

/// "<message>: Killed process 123 (comm) total-vm:..kB, anon-rss:..kB, ..."
pub fn parse_killed(line: &str) -> Option<Killed> {
    let l = strip(line);
    let i = l.find("Killed process ")?;
    let message = l[..i].trim_end_matches([':', ' ']).to_string();
    let rest = &l[i + "Killed process ".len()..];
    let sp = rest.find(' ')?;
    let pid = rest[..sp].parse().ok()?;
    let after = &rest[sp + 1..];
    let (comm, fields) = match (after.strip_prefix('('), after.rfind(") ")) {
        (Some(_), Some(close)) => (after[1..close].to_string(), &after[close + 2..]),
        _ => (after.trim_matches(['(', ')']).to_string(), ""),
    };
    Some(Killed {
        pid,
        comm,
        message,
        total_vm_kb: num_kb(kv(fields, "total-vm")),
        anon_rss_kb: num_kb(kv(fields, "anon-rss")),
        file_rss_kb: num_kb(kv(fields, "file-rss")),
        shmem_rss_kb: num_kb(kv(fields, "shmem-rss")),
        uid: kv(fields, "UID").and_then(|v| v.parse().ok()),
        pgtables_kb: num_kb(kv(fields, "pgtables")),
        oom_score_adj: kv(fields, "oom_score_adj").and_then(|v| v.parse().ok()),
    })
}

/// "oom_reaper: reaped process 123 (comm), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"
pub fn parse_reaped(line: &str) -> Option<Reaped> {
    let l = strip(line);
    let rest = l.strip_prefix("oom_reaper: reaped process ")?;
    let sp = rest.find(' ')?;
    let pid = rest[..sp].parse().ok()?;
    let after = &rest[sp + 1..];
    let close = after.rfind("), now")?;
    let fields = &after[close..];
    Some(Reaped {
        pid,
        comm: after.get(1..close).unwrap_or_default().to_string(),
        anon_rss_kb: num_kb(kv(fields, "anon-rss")),
        file_rss_kb: num_kb(kv(fields, "file-rss")),
        shmem_rss_kb: num_kb(kv(fields, "shmem-rss")),
    })
}

/// "memory: usage 65536kB, limit 65536kB, failcnt 272"
fn parse_memcg_usage(l: &str) -> Option<(u64, u64)> {
    let rest = l.strip_prefix("memory: usage ")?;
    let (usage, rest) = rest.split_once("kB, limit ")?;
    let (limit, _) = rest.split_once("kB")?;
    Some((usage.trim().parse().ok()?, limit.trim().parse().ok()?))
}

/// Task-dump header: "[  pid  ]   uid  tgid total_vm      rss ... name".
fn parse_task_header(l: &str) -> Option<Vec<String>> {
    let rest = l.strip_prefix('[')?;
    let (inner, cols) = rest.split_once(']')?;
    if inner.trim() != "pid" {
        return None;
    }
    Some(cols.split_whitespace().map(str::to_string).collect())
}

fn parse_task_row(l: &str, cols: &[String]) -> Option<Candidate> {
    let rest = l.strip_prefix('[')?;
    let (pid, rest) = rest.split_once(']')?;
    let pid: u32 = pid.trim().parse().ok()?;
    // All columns but the last (name) are numbers; the name is the rest of
    // the line and may contain spaces.
    let numeric = cols.len().checked_sub(1)?;
    let mut it = rest.trim_start();
    let mut c = Candidate {
        pid,
        ..Default::default()
    };
    for col in &cols[..numeric] {
        let end = it.find(char::is_whitespace).unwrap_or(it.len());
        let tok = &it[..end];
        it = it[end..].trim_start();
        let v: Option<i64> = tok.parse().ok();
        let u = v.map(|v| v.max(0) as u64);
        match col.as_str() {
            "uid" => c.uid = u.map(|v| v as u32),
            "tgid" => c.tgid = u.map(|v| v as u32),
            "total_vm" => c.total_vm = u,
            "rss" => c.rss = u,
            "rss_anon" => c.rss_anon = u,
            "rss_file" => c.rss_file = u,
            "rss_shmem" => c.rss_shmem = u,
            "pgtables_bytes" => c.pgtables_bytes = u,
            "swapents" => c.swapents = u,
            "oom_score_adj" => c.oom_score_adj = v.map(|v| v as i32),
            _ => {}
        }
        v?;
    }
    c.name = it.trim_end().to_string();
    Some(c)
}

/// Parses a whole report (any subset of its lines, in order).
pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Report {
    let mut r = Report::default();
    let mut cols: Option<Vec<String>> = None;
    let mut memory = super::oom_memory::BlockReader::default();
    // A multi-line printk record (memory.stat before 6.5, Mem-Info) comes
    // as one text with newlines inside.
    for raw in lines.into_iter().flat_map(|l| l.split('\n')) {
        let l = strip(raw);
        if memory.feed(l) {
            continue;
        }
        if r.invoked.is_none() {
            if let Some(i) = parse_invoked(l) {
                r.invoked = Some(i);
                continue;
            }
        }
        if r.memcg_usage_kb.is_none() {
            if let Some((u, lim)) = parse_memcg_usage(l) {
                r.memcg_usage_kb = Some(u);
                r.memcg_limit_kb = Some(lim);
                continue;
            }
        }
        if let Some(h) = parse_task_header(l) {
            cols = Some(h);
            continue;
        }
        if let Some(c) = cols.as_deref() {
            if let Some(row) = parse_task_row(l, c) {
                r.candidates.push(row);
                continue;
            }
        }
        if let Some(c) = parse_constraint(l) {
            r.constraint = Some(c);
            continue;
        }
        if let Some(k) = parse_killed(l) {
            r.killed = Some(k);
        }
    }
    r.memory = memory.blocks;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = format!("{}/tests/fixtures/oom/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn captured_6_18_memcg_v1() {
        let r = parse(lines(&fixture("oom-6.18-memcg-v1-captured.txt")));
        let inv = r.invoked.as_ref().unwrap();
        assert_eq!(inv.comm, "lt-helper");
        assert_eq!(inv.gfp_mask, "0x100cca(GFP_HIGHUSER_MOVABLE)");
        assert_eq!(inv.order, Some(0));
        assert_eq!(r.memcg_usage_kb, Some(65536));
        assert_eq!(r.memcg_limit_kb, Some(65536));
        let c = r.constraint.as_ref().unwrap();
        assert_eq!(c.kind, "memcg");
        assert_eq!(c.oom_memcg.as_deref(), Some("/lt-probe"));
        assert_eq!(c.task.as_deref(), Some("lt-helper"));
        assert_eq!(c.pid, Some(19488));
        assert_eq!(r.candidates.len(), 1);
        let t = &r.candidates[0];
        assert_eq!(
            (t.pid, t.rss, t.rss_anon, t.rss_file, t.pgtables_bytes),
            (19488, Some(16724), Some(16320), Some(404), Some(176128))
        );
        assert_eq!(t.name, "lt-helper");
        let k = r.killed.as_ref().unwrap();
        assert_eq!(k.message, "Memory cgroup out of memory");
        assert_eq!(
            (k.pid, k.anon_rss_kb, k.file_rss_kb, k.uid, k.oom_score_adj),
            (19488, Some(65280), Some(1616), Some(0), Some(0))
        );
    }

    /// Reports from older kernels (see tests/fixtures/oom/FORMATS.md for
    /// where each comes from and what is reconstructed).
    #[test]
    fn reports_from_several_kernel_versions() {
        // (file, invoker, constraint, oom_memcg prefix, task rows, victim pid, victim comm, has rss_anon column)
        let cases = [
            ("oom-4.19-global.txt", "java", None, None, 13, 2817, "java", false),
            (
                "oom-5.4-memcg.txt",
                "uwsgi",
                Some("memcg"),
                Some("/kubepods/burstable/pod"),
                6,
                63214,
                "uwsgi",
                false,
            ),
            (
                "oom-5.15-global.txt",
                "sui-node-runtim",
                Some("global"),
                None,
                14,
                11139,
                "sui-node",
                false,
            ),
            (
                "oom-6.1-memcg-v2.txt",
                "gunicorn",
                Some("memcg"),
                Some("/system.slice/docker-"),
                5,
                48207,
                "gunicorn",
                false,
            ),
            (
                "oom-6.8-memcg.txt",
                "python3",
                Some("memcg"),
                Some("/user.slice/user-1000.slice/"),
                1,
                483880,
                "python3",
                true,
            ),
            (
                "oom-6.18-memcg-v1-captured.txt",
                "lt-helper",
                Some("memcg"),
                Some("/lt-probe"),
                1,
                19488,
                "lt-helper",
                true,
            ),
        ];
        for (file, invoker, kind, memcg, rows, pid, comm, has_anon) in cases {
            let text = fixture(file);
            let r = parse(lines(&text));
            assert_eq!(
                r.invoked.as_ref().map(|i| i.comm.as_str()),
                Some(invoker),
                "{file}"
            );
            assert_eq!(r.constraint.as_ref().map(|c| c.kind.as_str()), kind, "{file}");
            if let Some(m) = memcg {
                let got = r
                    .constraint
                    .as_ref()
                    .and_then(|c| c.oom_memcg.clone())
                    .unwrap_or_default();
                assert!(got.starts_with(m), "{file}: oom_memcg {got}");
                assert!(r.memcg_limit_kb.is_some(), "{file}: memcg limit");
            }
            assert_eq!(r.candidates.len(), rows, "{file}: task rows");
            let k = r
                .killed
                .as_ref()
                .unwrap_or_else(|| panic!("{file}: no Killed line"));
            assert_eq!((k.pid, k.comm.as_str()), (pid, comm), "{file}");
            let row = r
                .candidates
                .iter()
                .find(|c| c.pid == pid)
                .unwrap_or_else(|| panic!("{file}: victim not in task dump"));
            assert_eq!(row.rss_anon.is_some(), has_anon, "{file}: rss_anon column");
            if let (Some(anon), Some(kb)) = (row.rss_anon, k.anon_rss_kb) {
                assert_eq!(anon * 4, kb, "{file}: task dump and Killed line agree");
            }
            assert!(
                r.candidates.iter().all(|c| !c.name.is_empty() && c.rss.is_some()),
                "{file}: {:?}",
                r.candidates
            );
        }
    }

    #[test]
    fn tricky_names_and_prefixes() {
        assert_eq!(strip("[ 1745.757014] hello"), "hello");
        assert_eq!(strip("<4>[    1.000000] x y"), "x y");
        assert_eq!(strip("plain line\n"), "plain line");
        assert_eq!(
            strip("[  19488]     0 19488"),
            "[  19488]     0 19488",
            "task rows keep their pid"
        );
        let inv = parse_invoked("Web Content invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=167").unwrap();
        assert_eq!(inv.comm, "Web Content");
        assert_eq!(inv.oom_score_adj, Some(167));
        let k = parse_killed("Out of memory: Killed process 42 (my (odd) app) total-vm:10kB, anon-rss:5kB, file-rss:1kB, shmem-rss:0kB, UID:1000 pgtables:4kB oom_score_adj:900").unwrap();
        assert_eq!(k.comm, "my (odd) app");
        assert_eq!(k.oom_score_adj, Some(900));
        assert_eq!(k.uid, Some(1000));
        let c = parse_constraint("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/user.slice,task=a,b,pid=7,uid=0").unwrap();
        assert_eq!(c.kind, "global");
        assert_eq!(c.task.as_deref(), Some("a,b"));
        assert_eq!(c.pid, Some(7));
        let rp = parse_reaped(
            "oom_reaper: reaped process 19488 (lt-helper), now anon-rss:0kB, file-rss:12kB, shmem-rss:0kB",
        )
        .unwrap();
        assert_eq!(
            (rp.pid, rp.anon_rss_kb, rp.file_rss_kb),
            (19488, Some(0), Some(12))
        );
        assert!(parse_killed("nothing here").is_none());
        assert!(parse_constraint("oom-kill:").is_none());
    }

    #[test]
    fn task_rows_follow_the_header_columns() {
        let old = "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name";
        let row =
            "[   1234]  1000  1234   123456    65432   524288        0           900 python3 collector.py";
        let r = parse([old, row]);
        let c = &r.candidates[0];
        assert_eq!(
            (c.pid, c.uid, c.rss, c.rss_anon, c.oom_score_adj),
            (1234, Some(1000), Some(65432), None, Some(900))
        );
        assert_eq!(c.name, "python3 collector.py");
    }
}
