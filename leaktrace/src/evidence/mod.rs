//! Evidence before the kill: triggers, suspects whose faults are sampled
//! with their user stacks, and evidence bundles written atomically.
pub mod bundle;
pub mod exec;
pub mod hook_pool;
pub mod hook_sandbox;
pub mod langstacks;
pub mod perfmap;
pub mod pprof;
pub mod pyframes;
pub mod pymix;
pub mod runtime;
pub mod stackdata;
pub mod stackfiles;
pub mod symbolize;
pub mod unwind;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde::Serialize;

#[cfg(test)]
use crate::model::sample::ProcessRow;
use crate::model::trend::Trend;

pub use crate::model::sample::Subject;

#[cfg(test)]
impl From<&ProcessRow> for Subject {
    fn from(r: &ProcessRow) -> Self {
        Self {
            pid: r.pid,
            rss_bytes: r.rss_bytes,
            growth_bytes_per_sec: r.growth_bytes_per_sec,
            trend: r.trend,
            memcg: None,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct TriggerArgs {
    /// Write a bundle when a process's RSS reaches this % of its memcg limit
    /// (of MemTotal when it has no limit).
    #[arg(long, default_value_t = 80.0, value_name = "PCT")]
    pub rss_pct: f64,
    /// Write a bundle when a growing process would reach its limit within
    /// this long at its current growth rate (30s, 5m; a bare number is
    /// seconds).
    #[arg(long, default_value_t = 30.0, value_name = "DURATION", value_parser = crate::units::secs)]
    pub time_to_limit: f64,
    /// Write a bundle for the top grower when PSI memory "full avg10"
    /// reaches this % (0 disables).
    #[arg(long, default_value_t = 10.0, value_name = "PCT")]
    pub psi_full: f64,
    /// Always write a bundle for this process (repeatable), once per cool-down.
    #[arg(long = "evidence-pid", value_name = "PID")]
    pub evidence_pids: Vec<u32>,
    /// At most one bundle per process in this long (5m, 300s; a bare number
    /// is seconds).
    #[arg(long, default_value_t = 300.0, value_name = "DURATION", value_parser = positive_secs)]
    pub cooldown: f64,
    /// At most this many bundles per hour in total.
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub max_bundles_per_hour: u32,
    /// Sample the user stack of 1 in N page faults of a suspect (the
    /// suspect pays about 6% at 16 on a fault-bound loop; docs/performance.md).
    #[arg(long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub stack_period: u32,
    /// Run this command when a bundle is written, with no shell: {pid},
    /// {comm} and {dir} are each replaced inside one argument; quotes group
    /// words. Output goes to exec.stdout/exec.stderr in the bundle.
    /// Examples: 'gcore -o {dir}/core {pid}', 'py-spy dump --pid {pid}',
    /// 'kill -QUIT {pid}' (Go and Java thread dumps).
    #[arg(long, value_name = "COMMAND")]
    pub exec_on_trigger: Option<String>,
    /// Kill the --exec-on-trigger command after this long (30s, 2m; a bare
    /// number is seconds).
    #[arg(long, default_value_t = 30.0, value_name = "DURATION", value_parser = positive_secs)]
    pub exec_timeout: f64,
    /// py-spy, for the Python stacks of CPython processes
    /// (python_stacks.txt). Default: the first py-spy in PATH.
    #[arg(long, value_name = "PATH")]
    pub py_spy: Option<std::path::PathBuf>,
    /// Write a bundle for a process whose trend has been `growing` for this
    /// long (2m, 120s; a bare number is seconds), however far its limit is
    /// (slow leaks); its faults are sampled from half that time on. 0
    /// disables.
    #[arg(long, default_value_t = 120.0, value_name = "DURATION", value_parser = crate::units::secs)]
    pub sustained_growth: f64,
    /// Do not read CPython frames in the kernel at a Python suspect's
    /// sampled faults (they name the Python function, file and line in
    /// stacks.txt and stacks.folded; docs/stacks.md gives their cost).
    #[arg(long)]
    pub no_python_frames: bool,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    let v = crate::units::secs(s)?;
    if v <= 0.0 {
        return Err("must be positive".into());
    }
    Ok(v)
}

/// Why a bundle was written.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Trigger {
    /// "rss-pct", "time-to-limit", "psi", "pid", "sustained-growth", or
    /// "stacks-follow-up" (a second bundle once samples arrived).
    pub reason: &'static str,
    pub detail: String,
    /// time-to-limit: the seconds left at the current rate.
    pub secs_left: Option<f64>,
}

/// A cheap check, with no text built, that `check` can fire.
pub fn may_trigger(
    row: &Subject,
    limit: u64,
    args: &TriggerArgs,
    psi_full_avg10: Option<f64>,
    is_top_grower: bool,
) -> bool {
    args.evidence_pids.contains(&row.pid)
        || (limit > 0
            && (row.rss_bytes as f64 * 100.0 / limit as f64 >= args.rss_pct
                || (row.trend == Trend::Growing && row.growth_bytes_per_sec > 0.0)))
        || (is_top_grower && args.psi_full > 0.0 && psi_full_avg10.is_some_and(|p| p >= args.psi_full))
}

/// The rule, pure: does this row cross a trigger? `limit` is the memcg limit
/// (or MemTotal), `psi_full_avg10` the host's PSI memory full avg10 in %.
pub fn check(
    row: &Subject,
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
            secs_left: None,
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
                secs_left: None,
            });
        }
        let g = row.growth_bytes_per_sec;
        if row.trend == Trend::Growing && g > 0.0 {
            let mib = |v: f64| v / 1048576.0;
            // With the memcg followed, its total decides: the other
            // members' memory counts against the same limit.
            let (secs, detail) = match row.memcg {
                Some((usage, mg)) if mg > 0.0 && limit > usage => {
                    let secs = (limit - usage) as f64 / mg;
                    let d = format!(
                        "its memcg grows at {:.1} MiB/s (this process {:.1} MiB/s) and reaches {limit_source} in {secs:.1} s",
                        mib(mg),
                        mib(g)
                    );
                    (secs, d)
                }
                Some(_) => (f64::INFINITY, String::new()),
                None if limit > row.rss_bytes => {
                    let secs = (limit - row.rss_bytes) as f64 / g;
                    (
                        secs,
                        format!("at {:.1} MiB/s it reaches {limit_source} in {secs:.1} s", mib(g)),
                    )
                }
                None => (f64::INFINITY, String::new()),
            };
            if secs < args.time_to_limit {
                return Some(Trigger {
                    reason: "time-to-limit",
                    detail,
                    secs_left: Some(secs),
                });
            }
        }
    }
    if let Some(p) = psi_full_avg10 {
        if args.psi_full > 0.0 && p >= args.psi_full && is_top_grower {
            return Some(Trigger {
                reason: "psi",
                detail: format!("PSI memory full avg10 {p:.1}% (top grower)"),
                secs_left: None,
            });
        }
    }
    None
}

/// The slow-leak rule for a pool (model/groups.rs): its total has been
/// growing for `--sustained-growth` seconds although no member need be
/// (recycled workers, one step each). The bundle goes to the member that
/// grows fastest now, else the largest: `members` = (pid, growth bytes/s,
/// RSS bytes). None when the rule does not hold.
pub fn sustained_group(
    g: &crate::model::sample::GroupRow,
    growing_for: f64,
    members: &[(u32, f64, u64)],
    args: &TriggerArgs,
) -> Option<(u32, Trigger)> {
    if args.sustained_growth <= 0.0 || g.trend != Trend::Growing || growing_for < args.sustained_growth {
        return None;
    }
    let pick = members
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2)).then(b.0.cmp(&a.0)))?;
    Some((
        pick.0,
        Trigger {
            reason: "sustained-growth",
            detail: format!(
                "its pool (leader {} {}, {} members) has been growing for {growing_for:.0} s \
                 (at {:.2} MiB/s now, by its {}); this member grows fastest",
                g.leader_pid,
                g.comm,
                g.members,
                g.growth_bytes_per_sec / 1048576.0,
                if g.growth_of == "pss" { "Pss" } else { "RSS sum" }
            ),
            secs_left: None,
        },
    ))
}

/// The process the PSI trigger may name: the fastest grower whose trend
/// is `growing`, never leaktrace itself (`me`). A process whose RSS only
/// wobbles (a shell script, leaktrace's own buffers) is not a grower.
pub fn psi_top(subjects: impl Iterator<Item = Subject>, me: u32) -> Option<u32> {
    fastest(subjects.filter(|s| s.pid != me && s.trend == Trend::Growing))
}

/// A memcg whose usage is at least this share of its limit is where the
/// pressure is (reclaim runs at the limit; on cgroup v1 there is no
/// per-memcg PSI to ask).
pub const PRESSURED_MEMCG_PCT: f64 = 90.0;

/// The PSI trigger's process: the fastest grower of the most pressured
/// memcg (usage ≥ PRESSURED_MEMCG_PCT of its limit, the fullest first),
/// whatever its trend: in an OOM storm the memcg's processes live too
/// briefly to be `growing`. Else the host's `psi_top`. Never leaktrace.
/// `subjects` come with their memcg's id and limit (None: no limit).
pub fn psi_pick(subjects: &[(Subject, u64, Option<u64>)], me: u32) -> Option<u32> {
    let fill = |s: &Subject, limit: Option<u64>| match (s.memcg, limit) {
        (Some((usage, _)), Some(l)) if l > 0 => usage as f64 * 100.0 / l as f64,
        _ => 0.0,
    };
    let fullest = subjects
        .iter()
        .filter(|(s, id, _)| *id != 0 && s.pid != me && s.growth_bytes_per_sec > 0.0)
        .map(|(s, id, l)| (fill(s, *l), *id))
        .filter(|(f, _)| *f >= PRESSURED_MEMCG_PCT)
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    if let Some((_, memcg)) = fullest {
        return fastest(subjects.iter().filter(|(s, id, _)| *id == memcg && s.pid != me).map(|x| x.0));
    }
    psi_top(subjects.iter().map(|x| x.0), me)
}

/// The fastest of these that grows at all (the lower pid on a tie).
fn fastest(subjects: impl Iterator<Item = Subject>) -> Option<u32> {
    subjects
        .filter(|s| s.growth_bytes_per_sec > 0.0)
        .max_by(|a, b| {
            a.growth_bytes_per_sec
                .total_cmp(&b.growth_bytes_per_sec)
                .then(b.pid.cmp(&a.pid))
        })
        .map(|s| s.pid)
}

/// The slow-leak rule: growing without a break for `--sustained-growth`
/// seconds (`growing_for`), whatever the limit.
pub fn sustained(row: &Subject, growing_for: f64, args: &TriggerArgs) -> Option<Trigger> {
    if args.sustained_growth <= 0.0 || row.trend != Trend::Growing || growing_for < args.sustained_growth {
        return None;
    }
    Some(Trigger {
        reason: "sustained-growth",
        detail: format!(
            "growing for {growing_for:.0} s (at {:.2} MiB/s now), limit or not",
            row.growth_bytes_per_sec / 1048576.0
        ),
        secs_left: None,
    })
}

/// Should this process's faults be sampled with stacks? Sustained growth
/// faster than 1 MiB/s (trend growing), above half the RSS threshold, or
/// named. Not any fast rise: a suspect pays a stack walk per sample, and
/// the benchmark's mmap/touch/munmap loop lost about 20% while its first
/// samples made it look like a riser. A trigger waits a moment for a new
/// suspect's stacks (see the watch loop).
pub fn is_suspect(row: &Subject, limit: u64, args: &TriggerArgs) -> bool {
    args.evidence_pids.contains(&row.pid)
        || (row.trend == Trend::Growing && row.growth_bytes_per_sec > 1048576.0)
        || (limit > 0 && row.rss_bytes as f64 * 100.0 / limit as f64 >= args.rss_pct / 2.0)
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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

/// An `evidence` line read back (by `report`): [`EvidenceEvent`] with
/// owned strings. Kept next to the writer so that the two change together;
/// `an_evidence_line_reads_back` fails when they drift apart.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct EvidenceRecord {
    pub ts_ms: u64,
    pub pid: u32,
    pub comm: String,
    pub reason: String,
    pub detail: String,
    pub dir: Option<String>,
    pub error: Option<String>,
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
            crate::limits::BUNDLES_PER_HOUR.hit();
            return false;
        }
        self.last.insert(pid, now);
        self.recent.push(now);
        true
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn args() -> TriggerArgs {
        TriggerArgs {
            rss_pct: 80.0,
            time_to_limit: 30.0,
            psi_full: 10.0,
            evidence_pids: vec![],
            cooldown: 300.0,
            max_bundles_per_hour: 30,
            stack_period: 16,
            sustained_growth: 120.0,
            no_python_frames: false,
            exec_on_trigger: None,
            exec_timeout: 30.0,
            py_spy: None,
        }
    }

    pub fn row(rss: u64, growth: f64, trend: Trend) -> ProcessRow {
        ProcessRow {
            attribution: Default::default(),
            flagged: false,
            pid: 42,
            ppid: 1,
            comm: "x".into(),
            cmdline: "x".into(),
            exe: "/x".into(),
            cgroup: "/app".into(),
            cgroup_version: 1,
            memcg_id: 0,
            threads: 1,
            rss_bytes: rss,
            rss_anon_bytes: rss,
            rss_file_bytes: 0,
            rss_shmem_bytes: 0,
            swap_bytes: 0,
            peak_rss_bytes: rss,
            growth_bytes_per_sec: growth,
            growth_bytes_per_sec_long: growth,
            growth_of: "rss",
            pss_bytes: None,
            uss_bytes: None,
            uss_growth_bytes_per_sec: None,
            faults_per_sec: 0.0,
            forks_per_sec: 0.0,
            reclaim_stall_ms_per_sec: 0.0,
            trend,
            oom_score_adj: 0,
            source: "kernel",
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_pool_growing_for_long_gets_a_bundle_for_its_fastest_member() {
        let mut args = args();
        args.sustained_growth = 120.0;
        let g = crate::model::sample::GroupRow {
            attribution: Default::default(),
            leader_pid: 10,
            comm: "gunicorn".into(),
            exe: String::new(),
            members: 3,
            pids: vec![10, 11, 12],
            rss_bytes: 220 << 20,
            growth_bytes_per_sec: 512.0 * 1024.0,
            growth_bytes_per_sec_long: 512.0 * 1024.0,
            trend: Trend::Growing,
            growth_of: "rss_sum",
            pss_bytes: None,
            uss_bytes: None,
            pss_growth_bytes_per_sec: None,
        };
        let members = [(10, 0.0, 50 << 20), (11, 1000.0, 80 << 20), (12, 0.0, 90 << 20)];
        assert!(sustained_group(&g, 119.0, &members, &args).is_none());
        let (pid, t) = sustained_group(&g, 121.0, &members, &args).unwrap();
        assert_eq!((pid, t.reason), (11, "sustained-growth"));
        assert!(t.detail.contains("its pool (leader 10 gunicorn, 3 members) has been growing for 121 s"), "{}", t.detail);
        // None growing: the largest.
        let flat = [(10, 0.0, 50 << 20), (11, 0.0, 80 << 20), (12, 0.0, 90 << 20)];
        assert_eq!(sustained_group(&g, 121.0, &flat, &args).unwrap().0, 12);
        let stable = crate::model::sample::GroupRow { trend: Trend::Stable, ..g };
        assert!(sustained_group(&stable, 500.0, &members, &args).is_none());
    }

    #[test]
    fn the_psi_trigger_names_a_grower_never_leaktrace() {
        let s = |pid, g, trend| Subject {
            pid,
            rss_bytes: 1 << 20,
            growth_bytes_per_sec: g,
            trend,
            memcg: None,
        };
        let me = 10;
        let subjects = || {
            [
                s(10, 9e6, Trend::Growing),
                s(11, 5e6, Trend::Stable),
                s(12, 2e6, Trend::Growing),
                s(13, 3e6, Trend::Growing),
            ]
            .into_iter()
        };
        assert_eq!(psi_top(subjects(), me), Some(13));
        assert_eq!(psi_top(subjects().filter(|x| x.pid != 13 && x.pid != 12), me), None);
    }

    /// Issue 21: in a storm the PSI bundle was about leaktrace and the
    /// storm's shell script, none for the storm's memcg. The memcg at its
    /// limit is where the pressure is; its fastest grower is named even
    /// though its short-lived processes never turn `growing`.
    #[test]
    fn the_psi_trigger_names_the_grower_of_the_memcg_at_its_limit() {
        let s = |pid, g, trend, usage: u64| Subject {
            pid,
            rss_bytes: 1 << 20,
            growth_bytes_per_sec: g,
            trend,
            memcg: Some((usage, 0.0)),
        };
        const MIB: u64 = 1 << 20;
        let me = 10;
        let host = [
            (s(10, 9e6, Trend::Growing, 0), 0, None),
            (s(20, 4e6, Trend::Growing, 0), 0, None),
        ];
        // A storm memcg at 250 of 256 MiB: its child grows, not `growing`.
        let storm = [
            (s(30, 1e6, Trend::Spike, 250 * MIB), 7, Some(256 * MIB)),
            (s(31, 3e6, Trend::Stable, 250 * MIB), 7, Some(256 * MIB)),
            (s(32, 0.0, Trend::Stable, 250 * MIB), 7, Some(256 * MIB)),
        ];
        // A memcg at half its limit is not pressured.
        let calm = [(s(40, 8e6, Trend::Growing, 100 * MIB), 8, Some(200 * MIB))];
        let all: Vec<_> = host.iter().chain(&storm).chain(&calm).copied().collect();
        assert_eq!(psi_pick(&all, me), Some(31));
        let without_storm: Vec<_> = host.iter().chain(&calm).copied().collect();
        assert_eq!(psi_pick(&without_storm, me), Some(40), "the host's fastest grower");
        // leaktrace in the pressured memcg is never named.
        let mine = [(s(10, 9e6, Trend::Growing, 250 * MIB), 7, Some(256 * MIB)), storm[0]];
        assert_eq!(psi_pick(&mine, me), Some(30));
    }
    use super::{tests_support::*, *};

    #[test]
    fn an_evidence_line_reads_back() {
        let ev = EvidenceEvent {
            kind: "evidence",
            ts_ms: 5,
            pid: 7,
            comm: "c".into(),
            reason: "rss",
            detail: "d".into(),
            dir: Some("/r/evidence/5-7-c".into()),
            error: Some("e".into()),
        };
        let line = crate::fmt::json_line(&ev).unwrap();
        let r: EvidenceRecord = serde_json::from_str(&line).unwrap();
        let back = (
            r.ts_ms,
            r.pid,
            r.comm.as_str(),
            r.reason.as_str(),
            r.detail.as_str(),
        );
        assert_eq!(back, (ev.ts_ms, ev.pid, "c", "rss", "d"));
        assert_eq!(
            (r.dir, r.error),
            (ev.dir, ev.error),
            "optional fields are not lost by a rename"
        );
    }

    fn sub(rss: u64, growth: f64, trend: Trend) -> Subject {
        Subject::from(&row(rss, growth, trend))
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn triggers() {
        let a = args();
        // 85% of 100 MiB.
        assert_eq!(
            check(
                &sub(85 * MIB, 0.0, Trend::Stable),
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
            &sub(50 * MIB, 4.0 * MIB as f64, Trend::Growing),
            100 * MIB,
            "lim",
            &a,
            None,
            false,
        )
        .unwrap();
        assert_eq!(t.reason, "time-to-limit");
        // The same process in a memcg at 90 MiB that grows 8 MiB/s in all:
        // 1.25 s, and the memcg's rate is the one given.
        let mut s = sub(50 * MIB, 4.0 * MIB as f64, Trend::Growing);
        s.memcg = Some((90 * MIB, 8.0 * MIB as f64));
        let t = check(&s, 100 * MIB, "lim", &a, None, false).unwrap();
        assert!(
            t.detail.contains("memcg grows at 8.0 MiB/s") && t.detail.contains("1.2 s"),
            "{}",
            t.detail
        );
        // A memcg that does not grow (others shrink as this one grows).
        s.memcg = Some((90 * MIB, -1.0));
        assert!(check(&s, 100 * MIB, "lim", &a, None, false).is_none());
        // Same rate but a step, not sustained growth: no trigger.
        assert!(check(
            &sub(50 * MIB, 4.0 * MIB as f64, Trend::Step),
            100 * MIB,
            "lim",
            &a,
            None,
            false
        )
        .is_none());
        // Slow growth: 50 MiB at 1 MiB/s is 50 s away.
        assert!(check(
            &sub(50 * MIB, MIB as f64, Trend::Growing),
            100 * MIB,
            "lim",
            &a,
            None,
            false
        )
        .is_none());
        // PSI only for the top grower.
        assert!(check(
            &sub(MIB, 0.0, Trend::Stable),
            100 * MIB,
            "lim",
            &a,
            Some(20.0),
            false
        )
        .is_none());
        assert_eq!(
            check(
                &sub(MIB, 0.0, Trend::Stable),
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
            check(&sub(MIB, 0.0, Trend::Stable), 100 * MIB, "lim", &a2, None, false)
                .unwrap()
                .reason,
            "pid"
        );
        assert!(is_suspect(
            &sub(MIB, 2.0 * MIB as f64, Trend::Growing),
            100 * MIB,
            &a
        ));
        assert!(!is_suspect(&sub(MIB, 0.0, Trend::Stable), 100 * MIB, &a));
        assert!(
            !is_suspect(&sub(MIB, 2.0 * MIB as f64, Trend::Spike), 100 * MIB, &a),
            "alloc/free churn"
        );
        assert!(
            !is_suspect(&sub(MIB, 2.0 * MIB as f64, Trend::Step), 100 * MIB, &a),
            "a rise that is not sustained"
        );
        assert!(
            is_suspect(&sub(45 * MIB, 0.0, Trend::Stable), 100 * MIB, &a),
            "above half the threshold"
        );
    }

    #[test]
    fn sustained_growth_fires_after_its_time_only() {
        let a = args();
        let g = sub(64 << 20, 512.0 * 1024.0, Trend::Growing);
        assert!(sustained(&g, a.sustained_growth - 1.0, &a).is_none());
        let t = sustained(&g, a.sustained_growth, &a).expect("fires");
        assert_eq!(t.reason, "sustained-growth");
        assert!(sustained(&sub(64 << 20, 0.0, Trend::Stable), 1e6, &a).is_none());
        let off = TriggerArgs {
            sustained_growth: 0.0,
            ..args()
        };
        assert!(sustained(&g, 1e6, &off).is_none(), "0 disables");
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
}
