//! leaktrace: which process is eating memory, how fast, and is it a leak.
mod commands;
mod evidence;
mod fmt;
mod host;
mod kernel;
mod limits;
mod model;
mod outdir;
mod pipeline;
mod schema;
mod sinks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const LONG_ABOUT: &str = "\
leaktrace shows, live, which processes on this host are growing in memory, how fast, \
what kind of memory, and whether the growth looks like a leak, and explains every OOM kill. \
Once per interval a BPF task iterator reads every process's memory counters in the kernel; \
nothing runs on page faults, so its cost does not grow with the fault rate. Kernels without \
task iterators (< 5.8) get per-fault hooks instead (--data-path).

Needs root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF (/sys/kernel/btf/vmlinux).

Exit codes: 0 ok, 1 runtime error, 2 doctor found a risk, 64 bad command line,
77 missing privileges.";

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
    Watch(commands::watch::WatchArgs),
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
    Doctor(commands::doctor::DoctorArgs),
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
    Record(commands::watch::RecordArgs),
    /// Read a recording: incidents in time order, or one HTML page.
    ///
    /// Prints each OOM incident with its victim, invoker, whether the OOM
    /// killer picked the process that was growing, the stall diagnosis and
    /// the top stack of the evidence bundle written before the kill.
    /// --html writes one self-contained page instead: a timeline of the
    /// incidents, a chart per incident (the victim, the other growers and
    /// the memcg's usage against its limit) and a flame graph of the fault
    /// stacks of each bundle. With --html nothing goes to stdout unless
    /// --text is given too. Needs no privileges.
    ///
    /// Examples:
    ///   leaktrace report /var/lib/leaktrace
    ///   leaktrace report /var/lib/leaktrace --html report.html
    ///   leaktrace report /var/lib/leaktrace --html report.html --text
    #[command(verbatim_doc_comment)]
    Report(commands::report::ReportArgs),
    /// Internal: symbolizes stacks for the daemon, in a child process with
    /// resource limits (evidence/symbolize.rs). Not for people.
    #[command(name = "__symbolize", hide = true)]
    Symbolize,
    /// Internal: writes the JSON schemas of every line type into DIR
    /// (docs/schema/ is made this way; src/schema.rs).
    #[command(name = "__schemas", hide = true)]
    Schemas { dir: std::path::PathBuf },
    /// Internal: build-ids, file offsets and names of a process's stack
    /// addresses, in a limited child (evidence/stackfiles.rs).
    #[command(name = "__stackinfo", hide = true)]
    StackInfo,
    /// Internal: offline symbolization for `report --symbolize`, in a
    /// limited child (evidence/stackfiles.rs).
    #[command(name = "__symbolize-offline", hide = true)]
    SymbolizeOffline,
}

/// Exit codes (also in `leaktrace --help` and docs/security.md).
pub mod exit {
    pub const OK: u8 = 0;
    /// Something failed at run time (the kernel refused a program, a
    /// directory cannot be written, ...).
    pub const RUNTIME: u8 = 1;
    /// `doctor` found a risk.
    pub const WARNINGS: u8 = 2;
    /// A bad command line (sysexits EX_USAGE).
    pub const USAGE: u8 = 64;
    /// Not root, and no CAP_BPF + CAP_PERFMON (sysexits EX_NOPERM):
    /// restarting will not help; the unit file says so
    /// (RestartPreventExitStatus=77).
    pub const NO_PERMISSION: u8 = 77;
}

/// The error for missing privileges, told apart from other errors by its
/// exit code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoPermission(pub String);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print and succeed; anything else is a
            // usage error, exit 64.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
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
        Cmd::Watch(args) => commands::watch::watch(args, cli.verbose).map(|()| 0),
        Cmd::Doctor(args) => commands::doctor::run(args, cli.verbose),
        Cmd::Record(args) => commands::watch::record(args, cli.verbose).map(|()| 0),
        Cmd::Report(args) => commands::report::run(args).map(|()| 0),
        Cmd::Symbolize => Ok(evidence::symbolize::child_main()),
        Cmd::Schemas { dir } => schema::write_all(&dir).map(|()| 0),
        Cmd::StackInfo => Ok(evidence::stackfiles::info_child_main()),
        Cmd::SymbolizeOffline => Ok(evidence::stackfiles::offline_child_main()),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            // One clear sentence (with its causes), no backtrace.
            eprintln!("leaktrace: {e:#}");
            ExitCode::from(if e.downcast_ref::<NoPermission>().is_some() {
                exit::NO_PERMISSION
            } else {
                exit::RUNTIME
            })
        }
    }
}
