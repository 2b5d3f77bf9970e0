//! `leaktrace doctor`: is this host safe for an OOM, before one happens?
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::{
    host::{facts as host, procfs},
    kernel::loader,
};

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Print one JSON object instead of the checklist.
    #[arg(long)]
    pub json: bool,
    /// Warn when an OOM report would take longer than this to print on a
    /// console (500ms, 1s; a bare number is seconds).
    #[arg(long, default_value_t = 1.0, value_name = "DURATION", value_parser = crate::units::secs)]
    pub console_threshold: f64,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Check {
    pub section: &'static str,
    pub name: String,
    /// "ok", "warn" or "info".
    pub status: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ConsoleRisk {
    pub console: String,
    pub baud: u32,
    pub baud_source: String,
    pub console_loglevel: u8,
    pub oom_dump_tasks: bool,
    pub tasks: u64,
    pub estimate: host::Estimate,
    /// The same report if console_loglevel were 8 (everything printed).
    pub estimate_all_levels: host::Estimate,
    pub at_risk: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Report {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub checks: Vec<Check>,
    pub console_risk: Vec<ConsoleRisk>,
    pub recommendations: Vec<String>,
    pub warnings: usize,
    pub exit_code: i32,
}

fn check(
    section: &'static str,
    name: impl Into<String>,
    status: &'static str,
    detail: impl Into<String>,
) -> Check {
    Check {
        section,
        name: name.into(),
        status,
        detail: detail.into(),
    }
}

/// The console part, pure: one risk entry per enabled serial console.
pub fn console_risks(f: &host::Facts, threshold_s: f64) -> Vec<ConsoleRisk> {
    let level = f.printk.map(|p| p.console_loglevel).unwrap_or(7);
    let dump = f.oom_dump_tasks.unwrap_or(1) == 1;
    f.consoles
        .iter()
        .filter(|c| c.enabled && c.serial)
        .map(|c| {
            let baud = c.baud.unwrap_or(9600);
            let estimate = host::estimate_report(baud, level, dump, f.tasks);
            ConsoleRisk {
                console: c.name.clone(),
                baud,
                baud_source: c.baud_source.clone().unwrap_or_default(),
                console_loglevel: level,
                oom_dump_tasks: dump,
                tasks: f.tasks,
                estimate,
                estimate_all_levels: host::estimate_report(baud, 8, dump, f.tasks),
                at_risk: estimate.seconds > threshold_s,
            }
        })
        .collect()
}

fn tracing_checks(verbose: u8, checks: &mut Vec<Check>) {
    if let Err(why) = loader::check_privileges() {
        checks.push(check("tracing", "hooks", "info", format!("not checked: {why}")));
        return;
    }
    let opts = loader::LoadOptions {
        path: loader::DataPath::Auto,
        force_classic: false,
        bench_floor: false,
        verbose,
    };
    match loader::load(opts) {
        Ok(loaded) => {
            checks.push(check(
                "tracing",
                "data path",
                "ok",
                format!("{}: {}", loaded.data_path, loaded.data_path_why),
            ));
            for p in &loaded.probes {
                if p.live.is_none() && p.skipped.iter().any(|s| s.reason.starts_with("not attached")) {
                    continue;
                }
                let skipped: Vec<String> = p
                    .skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.program, s.reason))
                    .collect();
                match &p.live {
                    Some(l) => {
                        let mut d = l.clone();
                        if !skipped.is_empty() {
                            d += &format!(" (not used: {})", skipped.join("; "));
                        }
                        checks.push(check("tracing", p.job, "ok", d));
                    }
                    None => checks.push(check(
                        "tracing",
                        p.job,
                        if p.required { "warn" } else { "info" },
                        format!("unavailable: {}", skipped.join("; ")),
                    )),
                }
            }
            for c in &loaded.capabilities {
                checks.push(check(
                    "tracing",
                    c.name,
                    if c.available { "ok" } else { "info" },
                    if c.available {
                        c.detail.clone()
                    } else {
                        format!("unavailable: {}", c.detail)
                    },
                ));
            }
            checks.push(check(
                "tracing",
                "ring buffer",
                "ok",
                "OOM ring buffer created (BPF_MAP_TYPE_RINGBUF)",
            ));
            // Programs detach when `loaded` is dropped here.
        }
        Err(e) => checks.push(check("tracing", "load", "warn", format!("{e:#}"))),
    }
}

fn cgroup_checks(checks: &mut Vec<Check>) {
    let v1 = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    checks.push(check(
        "cgroups",
        "cgroup v1 memory",
        if v1 { "ok" } else { "info" },
        if v1 {
            "/sys/fs/cgroup/memory (memcg OOMs are attributed to these paths)"
        } else {
            "not mounted"
        },
    ));
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut any_v2 = false;
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 2 && f[2] == "cgroup2" {
            any_v2 = true;
            let ctrls =
                std::fs::read_to_string(Path::new(f[1]).join("cgroup.controllers")).unwrap_or_default();
            let has_mem = ctrls.split_whitespace().any(|c| c == "memory");
            checks.push(check(
                "cgroups",
                "cgroup v2",
                if has_mem { "ok" } else { "info" },
                format!(
                    "{} (controllers: {}){}",
                    f[1],
                    ctrls.trim(),
                    if has_mem {
                        ""
                    } else {
                        "; no memory controller here"
                    }
                ),
            ));
        }
    }
    if !any_v2 {
        checks.push(check("cgroups", "cgroup v2", "info", "not mounted"));
    }
}

pub fn build(args: &DoctorArgs, verbose: u8) -> Report {
    let mut checks = Vec::new();
    tracing_checks(verbose, &mut checks);
    cgroup_checks(&mut checks);
    let f = host::read();
    match &f.psi_memory {
        Some(t) => checks.push(check(
            "pressure",
            "PSI",
            "ok",
            format!("/proc/pressure/memory: {}", t.lines().next().unwrap_or("")),
        )),
        None => checks.push(check(
            "pressure",
            "PSI",
            "info",
            "unavailable (psi=1 on the kernel command line enables it)",
        )),
    }
    let risks = console_checks(&f, args.console_threshold, &mut checks);
    oom_checks(&f, &mut checks);
    unkillable_checks(&f, &mut checks);
    ledger_checks(&mut checks);
    let warnings = checks.iter().filter(|c| c.status == "warn").count();
    let recommendations = if risks.iter().any(|r| r.at_risk) {
        host::recommendations(&f)
    } else {
        Vec::new()
    };
    Report {
        kind: "doctor",
        checks,
        console_risk: risks,
        recommendations,
        warnings,
        exit_code: if warnings > 0 {
            crate::exit::WARNINGS as i32
        } else {
            crate::exit::OK as i32
        },
    }
}

/// The slow-console risk: consoles, levels, and how long a report would take.
fn console_checks(f: &host::Facts, threshold: f64, checks: &mut Vec<Check>) -> Vec<ConsoleRisk> {
    // Slow-console risk.
    let level = f.printk.map(|p| p.console_loglevel);
    let enabled: Vec<String> = f
        .consoles
        .iter()
        .filter(|c| c.enabled)
        .map(|c| match (c.serial, c.baud) {
            (true, Some(b)) => format!(
                "{} (serial, {b} baud from {})",
                c.name,
                c.baud_source.as_deref().unwrap_or("?")
            ),
            _ => format!("{} (not a serial line)", c.name),
        })
        .collect();
    checks.push(check(
        "console",
        "consoles",
        "info",
        if enabled.is_empty() {
            "none enabled".to_string()
        } else {
            enabled.join(", ")
        },
    ));
    checks.push(check(
        "console",
        "console_loglevel",
        "info",
        format!(
            "{} (lines below this level reach the console: the OOM header and stack are level 4, the task dump 6, \
             'Killed process' 3)",
            level.map(|l| l.to_string()).unwrap_or_else(|| "unknown".into())
        ),
    ));
    checks.push(check(
        "console",
        "vm.oom_dump_tasks",
        "info",
        format!(
            "{} ({} tasks on this host)",
            f.oom_dump_tasks.map(|v| v.to_string()).unwrap_or("?".into()),
            f.tasks
        ),
    ));
    let risks = console_risks(f, threshold);
    for r in &risks {
        checks.push(check(
            "console",
            format!("OOM report on {}", r.console),
            if r.at_risk { "warn" } else { "ok" },
            format!(
                "an OOM report would write {} lines ({:.1} KB) to {} at {} baud: about {:.2} s with oom_lock held \
                 (at console_loglevel 8: {:.1} s; estimated at the nominal baud rate, an emulated UART may be faster)",
                r.estimate.lines,
                r.estimate.bytes as f64 / 1024.0,
                r.console,
                r.baud,
                r.estimate.seconds,
                r.estimate_all_levels.seconds
            ),
        ));
    }
    if risks.is_empty() {
        checks.push(check(
            "console",
            "OOM report on consoles",
            "ok",
            "no serial console: no slow-console risk",
        ));
    }

    risks
}

/// panic_on_oom, oom_kill_allocating_task, overcommit, swap.
fn oom_checks(f: &host::Facts, checks: &mut Vec<Check>) {
    // Other OOM settings.
    let v = |o: Option<i64>| o.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    checks.push(match f.panic_on_oom {
        Some(x) if x != 0 => check(
            "oom",
            "vm.panic_on_oom",
            "warn",
            format!("{x}: the kernel panics instead of killing a process"),
        ),
        o => check("oom", "vm.panic_on_oom", "ok", v(o)),
    });
    checks.push(check(
        "oom",
        "vm.oom_kill_allocating_task",
        "info",
        match f.oom_kill_allocating_task {
            Some(1) => {
                "1: the allocating task is killed, not the biggest (fast, but often the wrong victim)".into()
            }
            o => format!("{}: the OOM killer picks the task with the highest badness", v(o)),
        },
    ));
    checks.push(check(
        "oom",
        "overcommit",
        "info",
        format!(
            "vm.overcommit_memory={}, vm.overcommit_ratio={}",
            v(f.overcommit_memory),
            v(f.overcommit_ratio)
        ),
    ));
    checks.push(check(
        "oom",
        "swap",
        "info",
        match f.swap_total_kb {
            Some(0) => "none: anonymous memory cannot be swapped out before an OOM".to_string(),
            Some(kb) => format!("{} MiB", kb / 1024),
            None => "unknown".into(),
        },
    ));
}

/// Processes the OOM killer may never kill that hold more than 10% of memory.
fn unkillable_checks(f: &host::Facts, checks: &mut Vec<Check>) {
    let total = f.mem_total_kb.unwrap_or(0) * 1024;
    for pid in procfs::pids().unwrap_or_default() {
        let adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if adj != Some(-1000) {
            continue;
        }
        let Ok(rss) = procfs::read_status_rss(pid) else {
            continue;
        };
        let bytes = rss.anon + rss.file + rss.shmem;
        if total > 0 && bytes * 10 > total {
            let comm = procfs::read_stat(pid)
                .map(|s| crate::fmt::term(&String::from_utf8_lossy(&s.comm)).into_owned())
                .unwrap_or_default();
            checks.push(check(
                "oom",
                format!("unkillable pid {pid}"),
                "warn",
                format!(
                    "{comm} has oom_score_adj -1000 and {} MiB RSS ({}% of memory): the OOM killer can never free it",
                    bytes >> 20,
                    bytes * 100 / total
                ),
            ));
        }
    }
}

/// The host memory ledger, read once: what memory no process holds (tmpfs,
/// shmem no process maps, unreclaimable slab, SysV segments no process
/// has attached) and whether any of it is a large share of the host.
fn ledger_checks(checks: &mut Vec<Check>) {
    let r = crate::host::ledger::read();
    let proc_shmem: u64 = procfs::pids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| procfs::read_status_rss(p).ok())
        .map(|r| r.shmem)
        .sum();
    let l = crate::model::ledger::LedgerHistory::default().update(0.0, crate::fmt::now_ms(), &r, proc_shmem);
    let total = l.mem_total_bytes.max(1);
    let b = |v: u64| crate::fmt::bytes(v as f64);
    let summary: Vec<String> = l
        .parts
        .iter()
        .filter(|p| p.bytes * 100 >= total)
        .map(|p| format!("{} {}", p.name, b(p.bytes)))
        .collect();
    checks.push(check(
        "memory",
        "ledger",
        "info",
        format!("of {}: {}", b(total), summary.join(", ")),
    ));
    let part = |n: &str| l.parts.iter().find(|p| p.name == n).map_or(0, |p| p.bytes);
    let big = |v: u64| v * 10 >= total;
    for m in l.tmpfs.iter().filter(|m| big(m.bytes)) {
        checks.push(check(
            "memory",
            format!("tmpfs {}", crate::fmt::term(&m.name)),
            "warn",
            format!(
                "holds {} ({}% of memory): tmpfs pages are freed only when its files are deleted",
                b(m.bytes),
                m.bytes * 100 / total
            ),
        ));
    }
    for (name, v, what) in [
        (
            "shmem no process maps",
            part("shmem_unmapped"),
            "shared memory (tmpfs, /dev/shm, SysV, memfd) that no process has mapped",
        ),
        (
            "unreclaimable slab",
            part("slab_unreclaimable"),
            "kernel objects that reclaim cannot free (see /proc/slabinfo)",
        ),
        (
            "SysV shm, no process attached",
            l.sysv_shm_unattached_bytes,
            "segments no process has attached (ipcs -m; ipcrm)",
        ),
    ] {
        let status = if big(v) { "warn" } else { "ok" };
        checks.push(check("memory", name, status, format!("{}: {what}", b(v))));
    }
}

pub fn render_text(r: &Report) -> String {
    let mut s = String::from("leaktrace doctor: is this host ready for an OOM?\n");
    let mut section = "";
    for c in &r.checks {
        if c.section != section {
            section = c.section;
            s += &format!("\n{section}\n");
        }
        let mark = match c.status {
            "ok" => "[ ok ]",
            "warn" => "[WARN]",
            _ => "[info]",
        };
        s += &format!("  {mark} {:<28} {}\n", c.name, c.detail);
    }
    if !r.recommendations.is_empty() {
        s += "\nremedies (leaktrace changes nothing; run these yourself):\n";
        for rec in &r.recommendations {
            s += &format!("  - {rec}\n");
        }
    }
    s += &format!(
        "\n{}\n",
        if r.warnings == 0 {
            "no risk found (exit 0)".to_string()
        } else {
            format!("{} warning(s) (exit 2)", r.warnings)
        }
    );
    s
}

pub fn run(args: DoctorArgs, verbose: u8) -> Result<i32> {
    host::require_proc_and_sys()?;
    let r = build(&args, verbose);
    if args.json {
        println!("{}", crate::fmt::json_line(&r)?);
    } else {
        print!("{}", render_text(&r));
    }
    Ok(r.exit_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(consoles: Vec<host::Console>, level: u8, tasks: u64) -> host::Facts {
        host::Facts {
            consoles,
            printk: Some(host::Printk {
                console_loglevel: level,
                default_message_loglevel: 4,
            }),
            oom_dump_tasks: Some(1),
            panic_on_oom: Some(0),
            oom_kill_allocating_task: Some(0),
            overcommit_memory: Some(0),
            overcommit_ratio: Some(50),
            mem_total_kb: Some(1 << 24),
            swap_total_kb: Some(0),
            tasks,
            psi_memory: None,
        }
    }

    fn serial(name: &str, baud: u32) -> host::Console {
        host::Console {
            name: name.into(),
            flags: "-W- (EC  p a)".into(),
            enabled: true,
            serial: true,
            baud: Some(baud),
            baud_source: Some("kernel command line".into()),
        }
    }

    #[test]
    fn seed_004_host_is_at_risk() {
        let r = console_risks(&facts(vec![serial("ttyS1", 19200)], 7, 3000), 1.0);
        assert_eq!(r.len(), 1);
        assert!(r[0].at_risk);
        assert!(r[0].estimate.seconds > 60.0, "{:?}", r[0].estimate);
    }

    #[test]
    fn no_serial_console_no_risk() {
        let mut vga = serial("tty0", 0);
        vga.serial = false;
        vga.baud = None;
        assert!(console_risks(&facts(vec![vga], 8, 3000), 1.0).is_empty());
        assert!(console_risks(&facts(vec![], 8, 3000), 1.0).is_empty());
    }

    #[test]
    fn default_loglevel_keeps_a_slow_console_safe() {
        let r = console_risks(&facts(vec![serial("ttyS0", 9600)], 4, 3000), 1.0);
        assert!(!r[0].at_risk, "{:?}", r[0]);
        assert!(r[0].estimate_all_levels.seconds > 100.0);
    }
}
