//! leaktrace: which process is eating memory, how fast, and is it a leak.
mod commands;
mod dirlock;
mod evidence;
mod exit;
mod fmt;
mod host;
mod kernel;
mod limits;
mod losses;
mod model;
mod notify;
mod outdir;
mod pipeline;
mod schema;
mod sinks;
mod stopping;
mod units;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
    /// Internal: which CPython a process runs, and its code objects named,
    /// in a limited child (evidence/pyframes.rs).
    #[command(name = "__pyinfo", hide = true)]
    PyInfo,
    /// Internal: offline symbolization for `report --symbolize`, in a
    /// limited child (evidence/stackfiles.rs).
    #[command(name = "__symbolize-offline", hide = true)]
    SymbolizeOffline,
    /// Internal, for `cargo xtask dist`: writes the man pages (leaktrace.8
    /// and one per subcommand) generated from this command line into DIR.
    #[command(name = "__gen-man", hide = true)]
    GenMan { dir: std::path::PathBuf },
    /// Internal, for `cargo xtask dist`: writes bash, zsh and fish
    /// completions into DIR.
    #[command(name = "__gen-completions", hide = true)]
    GenCompletions { dir: std::path::PathBuf },
}

/// glibc malloc settings, before any thread starts (docs/performance.md,
/// "Memory"): one arena per thread (up to 8 per core) keeps each thread's
/// freed memory to itself, and the dynamic mmap threshold moves large
/// buffers (the iterator pass, the sample's rows) into those arenas after
/// the first one is freed, where their pages stay resident. Two arenas and
/// a fixed 128 KiB threshold: every large buffer is its own mapping,
/// returned to the kernel when freed. (glibc only: musl, in the static
/// builds, has one heap and no mallopt.)
#[cfg(target_env = "gnu")]
fn malloc_settings() {
    // SAFETY: mallopt changes allocator parameters only; called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 * 1024);
    }
}

#[cfg(not(target_env = "gnu"))]
fn malloc_settings() {}

fn main() -> ExitCode {
    malloc_settings();
    // First, while there is one thread: NOTIFY_SOCKET and friends leave
    // the environment here.
    notify::init_from_env();
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
    let mut logger = env_logger::Builder::new();
    logger
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
        .format_target(false);
    if notify::journal() {
        // Under systemd with stderr on the journal: sd-daemon priority
        // prefixes instead of "[WARN ]", so `journalctl -p warning` works.
        logger
            .write_style(env_logger::WriteStyle::Never)
            .format(|buf, r| {
                use std::io::Write;
                buf.write_all(notify::journal_lines(r.level(), &r.args().to_string()).as_bytes())
            });
    }
    logger.init();

    let result = match cli.cmd {
        Cmd::Watch(args) => commands::watch::watch(args, cli.verbose).map(|()| 0),
        Cmd::Doctor(args) => commands::doctor::run(args, cli.verbose),
        Cmd::Record(args) => commands::watch::record(args, cli.verbose).map(|()| 0),
        Cmd::Report(args) => commands::report::run(args).map(|()| 0),
        Cmd::Symbolize => Ok(evidence::symbolize::child_main()),
        Cmd::Schemas { dir } => schema::write_all(&dir).map(|()| 0),
        Cmd::StackInfo => Ok(evidence::stackfiles::info_child_main()),
        Cmd::PyInfo => Ok(evidence::pyframes::child_main()),
        Cmd::SymbolizeOffline => Ok(evidence::stackfiles::offline_child_main()),
        Cmd::GenMan { dir } => gen_man(&dir).map(|()| 0),
        Cmd::GenCompletions { dir } => gen_completions(&dir).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            // One clear sentence (with its causes), no backtrace.
            if notify::journal() {
                eprint!(
                    "{}",
                    notify::journal_lines(log::Level::Error, &format!("leaktrace: {e:#}"))
                );
            } else {
                eprintln!("leaktrace: {e:#}");
            }
            ExitCode::from(if e.downcast_ref::<exit::NoPermission>().is_some() {
                exit::NO_PERMISSION
            } else {
                exit::RUNTIME
            })
        }
    }
}

/// leaktrace.8, and leaktrace-<sub>.8 for each visible subcommand, from the
/// same clap definition that parses the command line.
fn gen_man(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    // Propagates the global -v into the subcommands' pages.
    cmd.build();
    let mut pages = vec![("leaktrace".to_string(), cmd.clone())];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        // A one-shot generator: leaking the few names is fine (clap wants
        // 'static names without its "string" feature).
        let name: &'static str = Box::leak(format!("leaktrace-{}", sub.get_name()).into_boxed_str());
        pages.push((name.to_string(), sub.clone().name(name)));
    }
    for (name, c) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(c)
            .section("8")
            .manual("System Administration")
            .source(concat!("leaktrace ", env!("CARGO_PKG_VERSION")))
            .render(&mut out)?;
        let path = dir.join(format!("{name}.8"));
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// leaktrace.bash, _leaktrace (zsh) and leaktrace.fish.
fn gen_completions(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use clap_complete::Shell;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = public_command();
        clap_complete::generate_to(shell, &mut cmd, "leaktrace", dir)
            .with_context(|| format!("writing {shell} completions into {}", dir.display()))?;
    }
    Ok(())
}

/// The command line without the hidden internal subcommands (zsh's
/// completion generator would offer them otherwise).
fn public_command() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("leaktrace")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .subcommand_required(true)
        .args(full.get_arguments().cloned());
    for sub in full.get_subcommands().filter(|s| !s.is_hide_set()) {
        cmd = cmd.subcommand(sub.clone());
    }
    cmd
}
