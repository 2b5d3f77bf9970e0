//! leaktrace: which process is eating memory, how fast, and is it a leak.
mod btf;
mod doctor;
mod evidence;
mod groups;
mod host;
mod kernel;
mod loader;
mod metrics;
mod oom;
mod procfs;
mod record;
mod report;
mod stacks;
mod tracefs;
mod tracker;
mod trend;
mod tui;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const LONG_ABOUT: &str = "\
leaktrace shows, live, which processes on this host are growing in memory, how fast, \
what kind of memory, and whether the growth looks like a leak. It counts RSS changes and \
page faults in the kernel (eBPF on kmem:rss_stat and exceptions:page_fault_user) and \
samples those counters once per interval, so its cost does not grow with the fault rate.

Needs root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF (/sys/kernel/btf/vmlinux).";

#[derive(Parser)]
#[command(name = "leaktrace", version, about = "Find the process that is eating memory, live", long_about = LONG_ABOUT)]
struct Cli {
    /// More detail: -v lists the hooks that attached and why others were
    /// skipped; -vv adds verifier logs and debug output.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Live per-process memory growth, like top sorted by growth.
    ///
    /// In a terminal: a full-screen table (q to quit). With --json: one JSON
    /// object per line ({"type":"sample",...}) for scripts. Otherwise: a
    /// plain-text table per interval.
    ///
    /// Trend: growing (sustained growth), step (jumped and kept it), spike
    /// (rose and was released), stable. The rule is in docs/trend.md.
    ///
    /// Examples:
    ///   leaktrace watch
    ///   leaktrace watch --json --duration 30 | jq '.processes[0]'
    ///   leaktrace watch --pid 1234 --pid 1240 --interval 2
    #[command(verbatim_doc_comment)]
    Watch(watch::WatchArgs),
    /// Is this host safe for an OOM? A checklist, before anything happens.
    ///
    /// Checks which hooks this kernel allows and what leaktrace will use,
    /// the cgroup setup and PSI, and the slow-console risk of seed 004: how
    /// long printing one OOM report would hold oom_lock, from the enabled
    /// consoles, their baud rate, console_loglevel, vm.oom_dump_tasks and
    /// the number of tasks. Also panic_on_oom, oom_kill_allocating_task,
    /// overcommit, swap, and large processes the OOM killer may never kill.
    /// It changes nothing; remedies are printed as commands.
    ///
    /// Exit code: 0 when nothing is at risk, 2 when a warning was printed.
    ///
    /// Examples:
    ///   leaktrace doctor
    ///   leaktrace doctor --json | jq '.console_risk'
    #[command(verbatim_doc_comment)]
    Doctor(doctor::DoctorArgs),
    /// Run in the background and keep the evidence: events.jsonl and bundles.
    ///
    /// Writes OOM incidents, evidence events and a periodic summary of the
    /// top growers to DIR/events.jsonl (rotated by size), and an evidence
    /// bundle under DIR/evidence/ when a process crosses a trigger: RSS at
    /// --rss-pct of its memcg limit, projected to hit it within
    /// --time-to-limit seconds, PSI memory full above --psi-full, or named
    /// with --evidence-pid. A bundle holds meta.json, /proc copies,
    /// timeline.json and stacks.txt (where the process touches memory, from
    /// page-fault stacks sampled in the kernel). SIGTERM/SIGINT flush and
    /// exit 0. A full disk is reported and tracing goes on.
    ///
    /// Examples:
    ///   leaktrace record --dir /var/lib/leaktrace
    ///   leaktrace record --dir /var/lib/leaktrace --exec-on-trigger 'gcore -o {dir}/core {pid}'
    ///   leaktrace record --dir /var/lib/leaktrace --exec-on-trigger 'py-spy dump --pid {pid}'
    #[command(verbatim_doc_comment)]
    Record(watch::RecordArgs),
    /// Read a recording: incidents in time order, or one HTML page.
    ///
    /// Prints each OOM incident with its victim, invoker, whether the OOM
    /// killer picked the process that was growing, the stall diagnosis and
    /// the top stack of the evidence bundle written before the kill.
    /// --html writes one self-contained page with an SVG chart of RSS over
    /// time for the top processes, OOM moments marked, incidents below.
    /// Needs no privileges.
    ///
    /// Examples:
    ///   leaktrace report /var/lib/leaktrace
    ///   leaktrace report /var/lib/leaktrace --html report.html
    #[command(verbatim_doc_comment)]
    Report(report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .filter_module(
            "aya",
            if cli.verbose >= 2 {
                log::LevelFilter::Debug
            } else {
                log::LevelFilter::Warn
            },
        )
        .format_timestamp(None)
        .format_target(false)
        .init();

    let result = match cli.cmd {
        Cmd::Watch(args) => watch::run(args, cli.verbose).map(|()| 0),
        Cmd::Doctor(args) => doctor::run(args, cli.verbose),
        Cmd::Record(args) => watch::record(args, cli.verbose).map(|()| 0),
        Cmd::Report(args) => report::run(args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            // One clear sentence (with its causes), no backtrace.
            eprintln!("leaktrace: {e:#}");
            ExitCode::FAILURE
        }
    }
}
