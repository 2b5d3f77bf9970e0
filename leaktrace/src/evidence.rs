//! Evidence before the kill: triggers, suspects whose faults are sampled
//! with their user stacks, and evidence bundles written atomically.
use std::{
    collections::HashMap,
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::tracker::ProcessRow;

#[derive(clap::Args, Debug, Clone)]
pub struct TriggerArgs {
    /// Write a bundle when a process's RSS reaches this % of its memcg limit
    /// (of MemTotal when it has no limit).
    #[arg(long, default_value_t = 80.0, value_name = "PCT")]
    pub rss_pct: f64,
    /// Write a bundle when a growing process would reach its limit within
    /// this many seconds at its current growth rate.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub time_to_limit: f64,
    /// Write a bundle for the top grower when PSI memory "full avg10"
    /// reaches this % (0 disables).
    #[arg(long, default_value_t = 10.0, value_name = "PCT")]
    pub psi_full: f64,
    /// Always write a bundle for this process (repeatable), once per cool-down.
    #[arg(long = "evidence-pid", value_name = "PID")]
    pub evidence_pids: Vec<u32>,
    /// At most one bundle per process in this many seconds.
    #[arg(long, default_value_t = 300.0, value_name = "SECS", value_parser = positive_secs)]
    pub cooldown: f64,
    /// At most this many bundles per hour in total.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub max_bundles_per_hour: u32,
    /// Sample the user stack of 1 in N page faults of a suspect.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub stack_period: u32,
    /// Run this command when a bundle is written, with no shell: {pid},
    /// {comm} and {dir} are each replaced inside one argument; quotes group
    /// words. Output goes to exec.stdout/exec.stderr in the bundle.
    /// Examples: 'gcore -o {dir}/core {pid}', 'py-spy dump --pid {pid}',
    /// 'kill -QUIT {pid}' (Go and Java thread dumps).
    #[arg(long, value_name = "COMMAND")]
    pub exec_on_trigger: Option<String>,
    /// Kill the --exec-on-trigger command after this many seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECS", value_parser = positive_secs)]
    pub exec_timeout: f64,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !(v > 0.0 && v.is_finite() && v < 1e9) {
        return Err("must be a positive number of seconds".into());
    }
    Ok(v)
}

/// Why a bundle was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    /// "rss-pct", "time-to-limit", "psi", "pid"
    pub reason: &'static str,
    pub detail: String,
}

/// The rule, pure: does this row cross a trigger? `limit` is the memcg limit
/// (or MemTotal), `psi_full_avg10` the host's PSI memory full avg10 in %.
pub fn check(
    row: &ProcessRow,
    limit: u64,
    limit_source: &str,
    args: &TriggerArgs,
    psi_full_avg10: Option<f64>,
    is_top_grower: bool,
) -> Option<Trigger> {
    if args.evidence_pids.contains(&row.pid) {
        return Some(Trigger {
            reason: "pid",
            detail: "requested with --evidence-pid".into(),
        });
    }
    if limit > 0 {
        let pct = row.rss_bytes as f64 * 100.0 / limit as f64;
        if pct >= args.rss_pct {
            return Some(Trigger {
                reason: "rss-pct",
                detail: format!(
                    "RSS {:.0}% of {limit_source} ({} of {} bytes)",
                    pct, row.rss_bytes, limit
                ),
            });
        }
        let g = row.growth_bytes_per_sec;
        if row.trend == crate::trend::Trend::Growing && g > 0.0 && limit > row.rss_bytes {
            let secs = (limit - row.rss_bytes) as f64 / g;
            if secs < args.time_to_limit {
                return Some(Trigger {
                    reason: "time-to-limit",
                    detail: format!(
                        "at {:.1} MiB/s it reaches {limit_source} in {secs:.1} s",
                        g / 1048576.0
                    ),
                });
            }
        }
    }
    if let Some(p) = psi_full_avg10 {
        if args.psi_full > 0.0 && p >= args.psi_full && is_top_grower {
            return Some(Trigger {
                reason: "psi",
                detail: format!("PSI memory full avg10 {p:.1}% (top grower)"),
            });
        }
    }
    None
}

/// Should this process's faults be sampled with stacks? Sustained growth
/// faster than 1 MiB/s (trend growing), above half the RSS threshold, or
/// named. Not any fast rise: a suspect pays a stack walk per sample, and
/// the benchmark's mmap/touch/munmap loop lost about 20% while its first
/// samples made it look like a riser. A trigger waits a moment for a new
/// suspect's stacks (see the watch loop).
pub fn is_suspect(row: &ProcessRow, limit: u64, args: &TriggerArgs) -> bool {
    args.evidence_pids.contains(&row.pid)
        || (row.trend == crate::trend::Trend::Growing && row.growth_bytes_per_sec > 1048576.0)
        || (limit > 0 && row.rss_bytes as f64 * 100.0 / limit as f64 >= args.rss_pct / 2.0)
}

/// Splits a command template into argv: whitespace separates words,
/// single or double quotes group them. No shell is involved.
pub fn split_template(t: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in t.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        bail!("unbalanced quote in --exec-on-trigger");
    }
    if in_word {
        out.push(cur);
    }
    if out.is_empty() {
        bail!("empty --exec-on-trigger");
    }
    Ok(out)
}

/// Replaces {pid}, {comm} and {dir} inside each argument; every argument
/// stays one argument whatever the values contain.
pub fn substitute(argv: &[String], pid: u32, comm: &str, dir: &Path) -> Vec<String> {
    argv.iter()
        .map(|a| {
            a.replace("{pid}", &pid.to_string())
                .replace("{comm}", comm)
                .replace("{dir}", &dir.to_string_lossy())
        })
        .collect()
}

/// A directory for leaktrace's output: created 0700 if missing, refused if
/// it is a symlink or not a directory.
pub fn ensure_dir(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => {
            bail!("{} is a symlink; refusing to write through it", p.display())
        }
        Ok(m) if !m.is_dir() => bail!("{} exists and is not a directory", p.display()),
        Ok(_) => Ok(()),
        Err(_) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(p)
            .with_context(|| format!("creating {}", p.display())),
    }
}

/// Writes `data` to `dir/name` atomically: a new 0600 temp file (never
/// following a symlink), then rename.
pub fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name)).with_context(|| format!("renaming into {}", dir.display()))?;
    Ok(())
}

fn safe_comm(c: &str) -> String {
    c.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(15)
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct EvidenceEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub ts_ms: u64,
    pub pid: u32,
    pub comm: String,
    pub reason: &'static str,
    pub detail: String,
    /// The bundle, or null when no --dir was given (watch without --dir).
    pub dir: Option<String>,
    pub error: Option<String>,
}

/// Memory limits of cgroups, cached for a few seconds.
#[derive(Default)]
pub struct Limits {
    cache: HashMap<(String, u8), (Instant, Option<u64>)>,
    mem_total: Option<u64>,
}

const UNLIMITED: u64 = 1 << 60;

fn v2_root() -> Option<PathBuf> {
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

/// The effective limit: the smallest limit on the path from the cgroup up
/// to the root.
pub fn cgroup_limit(path: &str, version: u8) -> Option<u64> {
    let (root, file) = match version {
        1 => (PathBuf::from("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"),
        2 => (v2_root()?, "memory.max"),
        _ => return None,
    };
    let mut best: Option<u64> = None;
    let mut p = root.join(path.trim_start_matches('/'));
    loop {
        if let Ok(t) = fs::read_to_string(p.join(file)) {
            if let Ok(v) = t.trim().parse::<u64>() {
                if v < UNLIMITED {
                    best = Some(best.map_or(v, |b| b.min(v)));
                }
            }
        }
        if p == root || !p.pop() || !p.starts_with(&root) {
            break;
        }
    }
    best
}

impl Limits {
    /// (limit bytes, what it is) for a process.
    pub fn for_row(&mut self, row: &ProcessRow) -> (u64, String) {
        let key = (row.cgroup.clone(), row.cgroup_version);
        let now = Instant::now();
        let lim = match self.cache.get(&key) {
            Some((t, v)) if now.duration_since(*t) < Duration::from_secs(10) => *v,
            _ => {
                let v = cgroup_limit(&row.cgroup, row.cgroup_version);
                if self.cache.len() >= 4096 {
                    // Cgroup churn must not grow this without bound.
                    self.cache.clear();
                }
                self.cache.insert(key, (now, v));
                v
            }
        };
        match lim {
            Some(l) => (l, format!("the memcg limit of {}", row.cgroup)),
            None => {
                let mt = *self
                    .mem_total
                    .get_or_insert_with(|| crate::host::meminfo_kb("MemTotal").unwrap_or(0) * 1024);
                (mt, "MemTotal".into())
            }
        }
    }
}

/// Cool-downs and the hourly budget.
#[derive(Default)]
pub struct RateLimit {
    last: HashMap<u32, Instant>,
    recent: Vec<Instant>,
}

impl RateLimit {
    pub fn allow(&mut self, pid: u32, cooldown: f64, per_hour: u32, now: Instant) -> bool {
        if self
            .last
            .get(&pid)
            .is_some_and(|t| now.duration_since(*t).as_secs_f64() < cooldown)
        {
            return false;
        }
        self.recent
            .retain(|t| now.duration_since(*t) < Duration::from_secs(3600));
        if self.last.len() > 4096 {
            self.last
                .retain(|_, t| now.duration_since(*t).as_secs_f64() < cooldown);
        }
        if self.recent.len() as u32 >= per_hour {
            return false;
        }
        self.last.insert(pid, now);
        self.recent.push(now);
        true
    }
}

/// Everything that goes into one bundle besides the /proc copies.
pub struct BundleInput<'a> {
    pub root: &'a Path,
    pub ts_ms: u64,
    pub row: &'a ProcessRow,
    pub trigger: &'a Trigger,
    pub limit: u64,
    pub limit_source: &'a str,
    pub args: &'a TriggerArgs,
    pub timeline: Vec<(u64, u64)>,
    pub stacks: String,
}

#[derive(Serialize)]
struct Meta<'a> {
    ts_ms: u64,
    pid: u32,
    comm: &'a str,
    cmdline: &'a str,
    cgroup: &'a str,
    trigger: &'a Trigger,
    thresholds: Thresholds,
    limit_bytes: u64,
    limit_source: &'a str,
    rss_bytes: u64,
    rss_anon_bytes: u64,
    rss_file_bytes: u64,
    rss_shmem_bytes: u64,
    growth_bytes_per_sec: f64,
    growth_bytes_per_sec_long: f64,
    trend: crate::trend::Trend,
    stack_period: u32,
}

#[derive(Serialize)]
struct Thresholds {
    rss_pct: f64,
    time_to_limit_s: f64,
    psi_full_pct: f64,
}

/// Writes `<root>/evidence/<ts>-<pid>-<comm>/`: built in a hidden temp
/// directory (0700) and renamed into place, so a reader never sees half a
/// bundle.
pub fn write_bundle(b: &BundleInput) -> Result<PathBuf> {
    let ev = b.root.join("evidence");
    ensure_dir(b.root)?;
    ensure_dir(&ev)?;
    let name = format!("{}-{}-{}", b.ts_ms, b.row.pid, safe_comm(&b.row.comm));
    let tmp = ev.join(format!(".tmp-{name}"));
    let _ = fs::remove_dir_all(&tmp);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let res = fill_bundle(b, &tmp).and_then(|()| {
        let fin = ev.join(&name);
        fs::rename(&tmp, &fin).with_context(|| format!("renaming {} into place", tmp.display()))?;
        Ok(fin)
    });
    if res.is_err() {
        // A full disk must not leave half bundles behind.
        let _ = fs::remove_dir_all(&tmp);
    }
    res
}

fn fill_bundle(b: &BundleInput, tmp: &Path) -> Result<()> {
    let meta = Meta {
        ts_ms: b.ts_ms,
        pid: b.row.pid,
        comm: &b.row.comm,
        cmdline: &b.row.cmdline,
        cgroup: &b.row.cgroup,
        trigger: b.trigger,
        thresholds: Thresholds {
            rss_pct: b.args.rss_pct,
            time_to_limit_s: b.args.time_to_limit,
            psi_full_pct: b.args.psi_full,
        },
        limit_bytes: b.limit,
        limit_source: b.limit_source,
        rss_bytes: b.row.rss_bytes,
        rss_anon_bytes: b.row.rss_anon_bytes,
        rss_file_bytes: b.row.rss_file_bytes,
        rss_shmem_bytes: b.row.rss_shmem_bytes,
        growth_bytes_per_sec: b.row.growth_bytes_per_sec,
        growth_bytes_per_sec_long: b.row.growth_bytes_per_sec_long,
        trend: b.row.trend,
        stack_period: b.args.stack_period,
    };
    write_atomic(tmp, "meta.json", &serde_json::to_vec_pretty(&meta)?)?;
    for f in [
        "status",
        "smaps_rollup",
        "cgroup",
        "oom_score",
        "oom_score_adj",
        "limits",
    ] {
        let data = fs::read(format!("/proc/{}/{f}", b.row.pid))
            .unwrap_or_else(|e| format!("unreadable: {e}\n").into_bytes());
        write_atomic(tmp, f, &data)?;
    }
    #[derive(Serialize)]
    struct Timeline<'a> {
        pid: u32,
        points: &'a [(u64, u64)],
    }
    write_atomic(
        tmp,
        "timeline.json",
        &serde_json::to_vec(&Timeline {
            pid: b.row.pid,
            points: &b.timeline,
        })?,
    )?;
    write_atomic(tmp, "stacks.txt", b.stacks.as_bytes())?;
    Ok(())
}

/// Keeps the bundles under `max_bytes` in total, deleting the oldest.
pub fn enforce_budget(root: &Path, max_bytes: u64) {
    let ev = root.join("evidence");
    let Ok(rd) = fs::read_dir(&ev) else { return };
    let mut dirs: Vec<(String, u64)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let size = fs::read_dir(e.path())
                .map(|r| r.filter_map(|f| f.ok()?.metadata().ok()).map(|m| m.len()).sum())
                .unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), size)
        })
        .collect();
    dirs.sort(); // names start with the timestamp
    let mut total: u64 = dirs.iter().map(|d| d.1).sum();
    for (name, size) in dirs {
        if total <= max_bytes {
            break;
        }
        if fs::remove_dir_all(ev.join(&name)).is_ok() {
            total = total.saturating_sub(size);
        }
    }
}

/// Runs the --exec-on-trigger command for a bundle, with no shell and a
/// timeout, and stores its output in the bundle.
pub async fn run_exec(argv: Vec<String>, dir: PathBuf, timeout: f64) {
    let t0 = Instant::now();
    let open = |name: &str| -> std::io::Result<fs::File> {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dir.join(name))
    };
    #[derive(Serialize)]
    struct ExecMeta<'a> {
        argv: &'a [String],
        exit_code: Option<i32>,
        timed_out: bool,
        error: Option<String>,
        duration_ms: f64,
    }
    let (mut exit_code, mut timed_out, mut error) = (None, false, None);
    // Output goes straight to files in the bundle: nothing is buffered in
    // leaktrace, whatever the command prints.
    match (open("exec.stdout"), open("exec.stderr")) {
        (Ok(out), Ok(err)) => {
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::from(out))
                .stderr(std::process::Stdio::from(err))
                .kill_on_drop(true);
            match cmd.spawn() {
                Ok(mut child) => {
                    match tokio::time::timeout(Duration::from_secs_f64(timeout), child.wait()).await {
                        Ok(Ok(st)) => exit_code = st.code(),
                        Ok(Err(e)) => error = Some(e.to_string()),
                        Err(_) => {
                            let _ = child.kill().await;
                            timed_out = true;
                            error = Some(format!("killed after {timeout} s"));
                        }
                    }
                }
                Err(e) => error = Some(format!("cannot run {}: {e}", argv[0])),
            }
        }
        (Err(e), _) | (_, Err(e)) => error = Some(format!("cannot create output files: {e}")),
    }
    let m = ExecMeta {
        argv: &argv,
        exit_code,
        timed_out,
        error,
        duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
    };
    if let Ok(j) = serde_json::to_vec_pretty(&m) {
        let _ = write_atomic(&dir, "exec.json", &j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trend::Trend;

    fn args() -> TriggerArgs {
        TriggerArgs {
            rss_pct: 80.0,
            time_to_limit: 30.0,
            psi_full: 10.0,
            evidence_pids: vec![],
            cooldown: 300.0,
            max_bundles_per_hour: 30,
            stack_period: 4,
            exec_on_trigger: None,
            exec_timeout: 30.0,
        }
    }

    fn row(rss: u64, growth: f64, trend: Trend) -> ProcessRow {
        ProcessRow {
            pid: 42,
            ppid: 1,
            comm: "x".into(),
            cmdline: "x".into(),
            exe: "/x".into(),
            cgroup: "/app".into(),
            cgroup_version: 1,
            rss_bytes: rss,
            rss_anon_bytes: rss,
            rss_file_bytes: 0,
            rss_shmem_bytes: 0,
            swap_bytes: 0,
            growth_bytes_per_sec: growth,
            growth_bytes_per_sec_long: growth,
            faults_per_sec: 0.0,
            forks_per_sec: 0.0,
            reclaim_stall_ms_per_sec: 0.0,
            trend,
            source: "kernel",
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn triggers() {
        let a = args();
        // 85% of 100 MiB.
        assert_eq!(
            check(
                &row(85 * MIB, 0.0, Trend::Stable),
                100 * MIB,
                "lim",
                &a,
                None,
                false
            )
            .unwrap()
            .reason,
            "rss-pct"
        );
        // 50% and growing at 4 MiB/s: 12.5 s to the limit.
        let t = check(
            &row(50 * MIB, 4.0 * MIB as f64, Trend::Growing),
            100 * MIB,
            "lim",
            &a,
            None,
            false,
        )
        .unwrap();
        assert_eq!(t.reason, "time-to-limit");
        // Same rate but a step, not sustained growth: no trigger.
        assert!(check(
            &row(50 * MIB, 4.0 * MIB as f64, Trend::Step),
            100 * MIB,
            "lim",
            &a,
            None,
            false
        )
        .is_none());
        // Slow growth: 50 MiB at 1 MiB/s is 50 s away.
        assert!(check(
            &row(50 * MIB, MIB as f64, Trend::Growing),
            100 * MIB,
            "lim",
            &a,
            None,
            false
        )
        .is_none());
        // PSI only for the top grower.
        assert!(check(
            &row(MIB, 0.0, Trend::Stable),
            100 * MIB,
            "lim",
            &a,
            Some(20.0),
            false
        )
        .is_none());
        assert_eq!(
            check(
                &row(MIB, 0.0, Trend::Stable),
                100 * MIB,
                "lim",
                &a,
                Some(20.0),
                true
            )
            .unwrap()
            .reason,
            "psi"
        );
        let mut a2 = args();
        a2.evidence_pids = vec![42];
        assert_eq!(
            check(&row(MIB, 0.0, Trend::Stable), 100 * MIB, "lim", &a2, None, false)
                .unwrap()
                .reason,
            "pid"
        );
        assert!(is_suspect(
            &row(MIB, 2.0 * MIB as f64, Trend::Growing),
            100 * MIB,
            &a
        ));
        assert!(!is_suspect(&row(MIB, 0.0, Trend::Stable), 100 * MIB, &a));
        assert!(
            !is_suspect(&row(MIB, 2.0 * MIB as f64, Trend::Spike), 100 * MIB, &a),
            "alloc/free churn"
        );
        assert!(
            !is_suspect(&row(MIB, 2.0 * MIB as f64, Trend::Step), 100 * MIB, &a),
            "a rise that is not sustained"
        );
        assert!(
            is_suspect(&row(45 * MIB, 0.0, Trend::Stable), 100 * MIB, &a),
            "above half the threshold"
        );
    }

    #[test]
    fn template_split_and_substitution_keep_arguments_whole() {
        let argv = split_template("gcore -o '{dir}/core file' {pid}").unwrap();
        assert_eq!(argv, vec!["gcore", "-o", "{dir}/core file", "{pid}"]);
        let s = substitute(&argv, 7, "a b;$(rm -rf /)", Path::new("/d"));
        assert_eq!(s, vec!["gcore", "-o", "/d/core file", "7"]);
        let s = substitute(&["{comm}".to_string()], 7, "a b;$(x)", Path::new("/d"));
        assert_eq!(s, vec!["a b;$(x)"]);
        assert!(split_template("a 'b").is_err());
        assert!(split_template("   ").is_err());
    }

    #[test]
    fn rate_limits() {
        let mut r = RateLimit::default();
        let t = Instant::now();
        assert!(r.allow(1, 300.0, 2, t));
        assert!(!r.allow(1, 300.0, 2, t), "cool-down");
        assert!(r.allow(2, 300.0, 2, t));
        assert!(!r.allow(3, 300.0, 2, t), "hourly budget");
    }

    #[test]
    fn bundle_is_atomic_private_and_refuses_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("lt-ev-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let a = args();
        let r = row(MIB, 0.0, Trend::Stable);
        let t = Trigger {
            reason: "pid",
            detail: "x".into(),
        };
        let b = BundleInput {
            root: &root,
            ts_ms: 1000,
            row: &r,
            trigger: &t,
            limit: 100 * MIB,
            limit_source: "lim",
            args: &a,
            timeline: vec![(1, 2)],
            stacks: "stack\n".into(),
        };
        let d = write_bundle(&b).unwrap();
        assert!(d.ends_with("evidence/1000-42-x"));
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(d.join("meta.json")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(fs::read_dir(root.join("evidence")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')));
        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(d.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta["trigger"]["reason"], "pid");
        // A symlinked root is refused.
        let link = std::env::temp_dir().join(format!("lt-ev-link-{}", std::process::id()));
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let b2 = BundleInput { root: &link, ..b };
        assert!(write_bundle(&b2).is_err());
        let _ = fs::remove_file(&link);
        enforce_budget(&root, 0);
        assert_eq!(
            fs::read_dir(root.join("evidence")).unwrap().count(),
            0,
            "budget 0 deletes everything"
        );
        let _ = fs::remove_dir_all(&root);
    }
}
