//! The incident in words: the summary sentences and their number formats.
use super::*;

pub(super) fn mib(b: f64) -> String {
    crate::fmt::bytes(b)
}

pub(super) fn summarize(
    constraint: &str,
    memcg: Option<&str>,
    victim: &Option<Victim>,
    growth: &Option<VictimGrowth>,
    grower: &Option<Grower>,
    choice: VictimChoice,
) -> String {
    let scope = match (constraint, memcg) {
        ("memcg", Some(m)) => format!("memcg OOM in {m}"),
        ("unknown", _) => "OOM".to_string(),
        (c, _) => format!("{c} OOM"),
    };
    let Some(v) = victim else {
        return format!("{scope}: the OOM killer found no victim");
    };
    let mut s = format!("{scope}: killed pid {} ({}{})", v.pid, v.comm, identity(v));
    match growth {
        Some(g) => s += &format!(", which {}", growth_words(g)),
        None => s += ", which did not grow notably before the OOM",
    }
    match (choice, grower) {
        (VictimChoice::Wrong, Some(g)) => {
            s += &format!(
                ". The victim was NOT the process that grew: pid {} ({}) grew {} in the {:.0} s before the OOM",
                g.pid,
                g.comm,
                mib(g.growth_bytes as f64),
                g.window_s
            );
        }
        (VictimChoice::Sibling, Some(g)) => {
            s += &format!(
                ". Pid {} ({}) grew more ({} in the {:.0} s before the OOM), but it is a sibling doing the \
                 same work (the same program in the same memcg, growing alike): the choice did not matter",
                g.pid,
                g.comm,
                mib(g.growth_bytes as f64),
                g.window_s
            );
        }
        _ => {}
    }
    s
}

/// A victim's rise in words, with when it happened: "grew from A to B in
/// S" when it ran up to the kill, "allocated N at start-up, T before the
/// kill; flat since" when it rose right after its birth and then held, and
/// "grew from A to B in S, ending T before the kill" otherwise.
pub fn growth_words(g: &VictimGrowth) -> String {
    let rise = g.to_bytes.saturating_sub(g.from_bytes);
    let ago = g.ended_before_kill_s.unwrap_or(0.0);
    // Within MIN_GROWTH of its peak at the kill: it held what it took.
    let since = match g.at_kill_bytes {
        Some(k) if (k.abs_diff(g.to_bytes) as f64) < MIN_GROWTH => "; flat since".to_string(),
        Some(k) => format!("; {} at the kill", mib(k as f64)),
        None => String::new(),
    };
    if ago < 1.0 {
        format!(
            "grew from {} to {} in {}",
            mib(g.from_bytes as f64),
            mib(g.to_bytes as f64),
            secs(g.secs)
        )
    } else if g.from_birth && g.secs <= 5.0 {
        format!("allocated {} at start-up, {} before the kill{since}", mib(rise as f64), secs(ago))
    } else {
        format!(
            "grew from {} to {} in {}, ending {} before the kill{since}",
            mib(g.from_bytes as f64),
            mib(g.to_bytes as f64),
            secs(g.secs),
            secs(ago)
        )
    }
}

/// What the verdict adds about the victim's pool and the memcg as a
/// whole (docs/verdict.md).
pub(super) fn context_sentences(group: Option<&GroupInfo>, memcg: Option<&MemcgGrowth>) -> String {
    let mut s = String::new();
    if let Some(g) = group {
        s += &format!(
            ". It was in the pool of pid {} ({}): {} processes",
            g.leader_pid, g.comm, g.members
        );
        // The pool's size is its Pss; the RSS sum counts each shared page
        // once per member, so it is only ever named as a sum.
        if let Some(p) = g.pss_bytes {
            s += &format!(", {} Pss (shared pages counted once)", mib(p as f64));
        }
        s += &format!(", their RSS summed {}", mib(g.rss_bytes as f64));
    }
    if let Some(m) = memcg {
        if m.to_bytes > m.from_bytes + (1 << 20) {
            s += &format!(
                ". The memcg grew from {} to {} in {} (limit {})",
                mib(m.from_bytes as f64),
                mib(m.to_bytes as f64),
                secs(m.secs),
                mib(m.limit_bytes as f64)
            );
        }
    }
    s
}

/// "0.4 s", "12 s": one decimal below 10 s, so a half-second burst is not "0 s".
pub(super) fn secs(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} s")
    } else {
        format!("{v:.0} s")
    }
}

/// What the task dump's RSS total means next to the memcg limit: RSS
/// counts pages shared copy-on-write (a fork pool) once per process.
pub(super) fn candidates_note(rep: &Report, candidates_rss_bytes: Option<u64>) -> Option<String> {
    match (candidates_rss_bytes, rep.memcg_limit_kb.map(|k| k * 1024)) {
        (Some(sum), Some(limit)) if sum > limit => Some(format!(
            "the {} tasks in the dump add up to {} RSS, more than the {} limit: RSS counts pages shared \
             copy-on-write (a fork pool) once per process; the memcg charges them once",
            rep.candidates.len(),
            mib(sum as f64),
            mib(limit as f64)
        )),
        (Some(sum), Some(limit)) => Some(format!(
            "the {} tasks in the dump add up to {} RSS of the {} limit (the rest is page cache and kernel memory \
             charged to the memcg)",
            rep.candidates.len(),
            mib(sum as f64),
            mib(limit as f64)
        )),
        _ => None,
    }
}

/// When the kernel's report says memory was mostly a part that a kill may
/// not free: "At the kill the memcg's memory was 83% shmem (tmpfs or shared
/// memory): 200 MiB", with the largest slab caches when it is slab.
pub(super) fn memory_sentence(m: Option<&super::oom_memory::OomMemory>) -> String {
    let Some((part, share, bytes)) = m.and_then(|m| m.unfreeable_part().map(|p| (m, p))).map(|(_, p)| p) else {
        return String::new();
    };
    let m = m.expect("checked above");
    let whose = match m.scope {
        super::oom_memory::MemoryScope::Memcg => "the memcg's",
        super::oom_memory::MemoryScope::Host => "the host's",
    };
    let mut s = format!(
        ". At the kill {whose} memory was {:.0}% {part}: {}, which killing a process may not free",
        share * 100.0,
        mib(bytes as f64)
    );
    if part.contains("slab") && !m.top_slab_caches.is_empty() {
        let names: Vec<String> = m
            .top_slab_caches
            .iter()
            .take(3)
            .map(|c| format!("{} {}", c.name, mib(c.total_bytes as f64)))
            .collect();
        s += &format!(" (largest caches: {})", names.join(", "));
    }
    s
}

/// What the comm alone does not say: the executable when its name is not
/// the comm (a process can call itself "systemd"), and the pid inside its
/// namespace. "" when neither applies.
pub(super) fn identity(v: &Victim) -> String {
    let mut s = String::new();
    let base = v.exe.rsplit('/').next().unwrap_or("");
    // comm is at most 15 bytes and often a variant of the binary's name
    // ("python3" for python3.11, "stress-ng-bighe" for stress-ng).
    let matches = !base.is_empty() && !v.comm.is_empty() && (base.starts_with(&v.comm) || v.comm.starts_with(base));
    if !v.exe.is_empty() && !matches {
        s += &format!(", running {}", v.exe);
    }
    if let Some(n) = v.ns_pid.filter(|&n| n != v.pid) {
        s += &format!(", pid {n} in its namespace");
    }
    s
}
