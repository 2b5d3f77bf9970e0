//! `--exec-on-trigger`: a command run for each bundle, with no shell.
use std::{
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::process::{CommandExt, ExitStatusExt},
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::outdir::OutDir;

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

/// A comm made safe to put in an argument: only [A-Za-z0-9._-] are kept
/// (anything else becomes '_'), and it never starts with '-', so that a
/// process named `-f/etc/shadow` cannot become an option of the command.
pub fn safe_comm(comm: &str) -> String {
    let mut s: String = comm
        .chars()
        .take(16)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('-') || s.starts_with('.') || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

/// The LEAKTRACE_* variables about where a process belongs (the same for
/// --exec-on-trigger and --exec-on-oom): empty when they do not apply.
/// Each value comes from names a user controls (a delegated cgroup can be
/// called anything but '/' and NUL): control bytes are escaped
/// (`fmt::term`), so that a hook that logs or echoes them prints no
/// escape sequence.
pub fn place_env(cgroup: &str, a: &crate::host::attribution::Attribution) -> Vec<(&'static str, String)> {
    let esc = |s: Option<&str>| crate::fmt::term(s.unwrap_or_default()).into_owned();
    vec![
        ("LEAKTRACE_CGROUP", esc(Some(cgroup))),
        ("LEAKTRACE_UNIT", esc(a.unit.as_deref())),
        ("LEAKTRACE_CONTAINER_ID", esc(a.container_id.as_deref())),
        ("LEAKTRACE_POD_UID", esc(a.pod_uid.as_deref())),
    ]
}

/// Replaces {pid}, {comm} and {dir} inside each argument; every argument
/// stays one argument whatever the values contain, and {comm} is
/// `safe_comm`.
pub fn substitute(argv: &[String], pid: u32, comm: &str, dir: &Path) -> Vec<String> {
    let comm = safe_comm(comm);
    argv.iter()
        .map(|a| {
            a.replace("{pid}", &pid.to_string())
                .replace("{comm}", &comm)
                .replace("{dir}", &dir.to_string_lossy())
        })
        .collect()
}

/// The fixed PATH the command runs with (its environment is cleared).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One command to run for a bundle.
pub struct ExecJob {
    pub argv: Vec<String>,
    /// The bundle: output files go here, through its handle.
    pub bundle: OutDir,
    pub bundle_path: PathBuf,
    pub pid: u32,
    pub comm: String,
    pub reason: &'static str,
    /// The process the bundle is about, held since before the bundle was
    /// written: if it has exited, its pid may be another process now.
    pub target: Option<Target>,
    /// Run only if `target` is alive (a trigger's command); an OOM's
    /// command runs for a victim that is gone by design.
    pub need_target: bool,
    /// More LEAKTRACE_* variables (cgroup, unit, container, incident).
    pub env: Vec<(&'static str, String)>,
    pub timeout: f64,
    /// A delay before the command runs (tests: LEAKTRACE_TEST_EXEC_DELAY_MS).
    pub delay: Duration,
}

/// A process held by a pidfd, checked to be the one that was traced.
pub struct Target(OwnedFd);

impl Target {
    /// Opens a pidfd on `pid` and checks that the process behind it started
    /// at `start_ns` (CLOCK_MONOTONIC, as the kernel's task->start_time).
    /// None if it has exited or the pid is another process already.
    pub fn open(pid: u32, start_ns: u64) -> Option<Self> {
        // SAFETY: pidfd_open takes a pid and flags; the result is a new fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd was just opened and is ours.
        let t = Target(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        // The pidfd holds whatever process has the pid now; it is ours if
        // that process started when ours did.
        crate::host::procfs::started_at(pid, start_ns).then_some(t)
    }

    /// The process has not exited (so its pid is still its own). EPERM
    /// (leaktrace without CAP_KILL, a target of another user) means the
    /// process exists: only ESRCH means it has exited.
    pub fn alive(&self) -> bool {
        // SAFETY: signal 0 through a pidfd checks existence only.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                0,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

#[derive(Serialize, Default)]
pub struct ExecOutcome {
    pub argv: Vec<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// The command was not run: the process had exited (its pid may have
    /// been reused), or the command could not start.
    pub not_run: Option<String>,
    pub error: Option<String>,
    /// The command's output reached exec_output_bytes (SIGXFSZ).
    pub output_capped: bool,
    pub duration_ms: f64,
    /// Not run because too many commands were running and waiting
    /// (limit exec_queue), or the recorder was exiting; `not_run` says which.
    pub dropped: bool,
    /// Where the command ran: the hooks' cgroup and its limits, or the
    /// rlimits it got instead (hook_sandbox.rs).
    pub sandbox: Option<String>,
}

/// exec.json for a command that was dropped, not run (hook_pool.rs).
pub fn write_dropped(job: &ExecJob, why: String) {
    let out = ExecOutcome {
        argv: job.argv.clone(),
        not_run: Some(why),
        dropped: true,
        ..Default::default()
    };
    if let Ok(j) = crate::fmt::json_line(&out) {
        if job.bundle.write_atomic("exec.json", j.as_bytes()).is_err() {
            crate::losses::output_write_failed();
        }
    }
}

/// Who keeps the process groups of running commands (hook_pool.rs), so
/// that the recorder's exit can kill them: told of each start and end.
pub trait Groups {
    /// A command started in process group `pgid`; false if it must not
    /// run (the recorder is exiting): it is killed at once.
    fn started(&self, pgid: libc::pid_t) -> bool;
    /// The command's group has ended; true if the recorder is exiting
    /// (then it was the recorder that killed the group).
    fn finished(&self, pgid: libc::pid_t) -> bool;
}

/// Runs the --exec-on-trigger command for a bundle: no shell, a cleared
/// environment with a fixed PATH and LEAKTRACE_* variables, its own
/// process group (killed whole on timeout and when the command exits),
/// oom_score_adj 0 (not leaktrace's -1000), output files capped by
/// RLIMIT_FSIZE. Runs on its own thread; writes exec.json in the bundle.
pub fn run_exec(job: ExecJob, groups: &dyn Groups) -> ExecOutcome {
    let t0 = Instant::now();
    let mut out = ExecOutcome {
        argv: job.argv.clone(),
        ..Default::default()
    };
    std::thread::sleep(job.delay);
    match &job.target {
        _ if !job.need_target => run_checked(&job, &mut out, t0, groups),
        Some(t) if t.alive() => run_checked(&job, &mut out, t0, groups),
        _ => {
            out.not_run = Some(format!(
                "pid {} had exited before the command could run; its pid may belong to another process now",
                job.pid
            ))
        }
    }
    out.duration_ms = t0.elapsed().as_secs_f64() * 1000.0;
    if let Ok(j) = crate::fmt::json_line(&out) {
        if job.bundle.write_atomic("exec.json", j.as_bytes()).is_err() {
            crate::losses::output_write_failed();
        }
    }
    out
}

fn run_checked(job: &ExecJob, out: &mut ExecOutcome, t0: Instant, groups: &dyn Groups) {
    // Output goes straight to files in the bundle: nothing is buffered in
    // leaktrace, whatever the command prints.
    let (stdout, stderr) = match (
        job.bundle.create("exec.stdout", false),
        job.bundle.create("exec.stderr", false),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            out.not_run = Some(format!("cannot create output files: {e}"));
            return;
        }
    };
    let sandbox = super::hook_sandbox::get();
    out.sandbox = Some(sandbox.describe());
    let mut cmd = command(job, stdout, stderr, sandbox);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            out.not_run = Some(format!("cannot run {}: {e}", job.argv[0]));
            return;
        }
    };
    let pgid = child.id() as libc::pid_t;
    if !groups.started(pgid) {
        // SAFETY: the command's own process group.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
    }
    wait_bounded(&mut child, pgid, t0 + Duration::from_secs_f64(job.timeout), job.timeout, out);
    // Whatever the command left running in its group ends with it.
    // SAFETY: as above; ESRCH when the group is empty.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
    if groups.finished(pgid) && out.exit_code.is_none() && out.error.is_none() {
        out.error = Some("killed with its process group: the recorder exited".into());
    }
    if out.output_capped {
        crate::limits::EXEC_OUTPUT.hit();
    }
}

/// The command, its environment and what its child does before exec: a
/// death signal tied to the recorder, the sandbox, an output size limit
/// and an OOM score of its own.
fn command(
    job: &ExecJob,
    stdout: std::fs::File,
    stderr: std::fs::File,
    sandbox: &'static super::hook_sandbox::Sandbox,
) -> std::process::Command {
    let fsize = crate::limits::EXEC_OUTPUT.bound();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let mut cmd = std::process::Command::new(&job.argv[0]);
    cmd.args(&job.argv[1..])
        .env_clear()
        .env("PATH", PATH)
        .env("LEAKTRACE_PID", job.pid.to_string())
        .env("LEAKTRACE_COMM", safe_comm(&job.comm))
        .env("LEAKTRACE_DIR", &job.bundle_path)
        .env("LEAKTRACE_REASON", job.reason)
        .envs(job.env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(stdout))
        .stderr(std::process::Stdio::from(stderr))
        .process_group(0);
    // SAFETY: between fork and exec only async-signal-safe calls: prctl,
    // getppid, setrlimit, open, write, close, on data prepared before the
    // fork.
    unsafe {
        cmd.pre_exec(move || {
            // A kill -9 of the recorder kills the command too (the thread
            // that forks waits for it: hook_pool.rs); if the recorder died
            // before this line, the command must not start.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            super::hook_sandbox::enter(sandbox)?;
            let r = libc::rlimit {
                rlim_cur: fsize,
                rlim_max: fsize,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // leaktrace protects itself with -1000; the command must not
            // inherit that, or it could eat the host's memory unkillable.
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr() as *const libc::c_void, 1);
                libc::close(fd);
            }
            Ok(())
        });
    }
    cmd
}

/// Waits for the command until `deadline`, then kills its process group.
fn wait_bounded(
    child: &mut std::process::Child,
    pgid: libc::pid_t,
    deadline: Instant,
    timeout: f64,
    out: &mut ExecOutcome,
) {
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                out.exit_code = st.code();
                out.signal = st.signal();
                out.output_capped = st.signal() == Some(libc::SIGXFSZ);
                return;
            }
            Ok(None) if Instant::now() >= deadline => {
                // SAFETY: signals the command's own process group.
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
                let _ = child.wait();
                out.timed_out = true;
                out.error = Some(format!("killed with its process group after {timeout} s"));
                crate::limits::EXEC_SECONDS.hit();
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                out.error = Some(e.to_string());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_split_and_substitution_keep_arguments_whole() {
        let argv = split_template("gcore -o '{dir}/core file' {pid}").unwrap();
        assert_eq!(argv, vec!["gcore", "-o", "{dir}/core file", "{pid}"]);
        let s = substitute(&argv, 7, "a b;$(rm -rf /)", Path::new("/d"));
        assert_eq!(s, vec!["gcore", "-o", "/d/core file", "7"]);
        let s = substitute(&["{comm}".to_string()], 7, "a b;$(x)", Path::new("/d"));
        assert_eq!(s, vec!["a_b___x_"]);
        assert_eq!(safe_comm("-f/etc/shadow"), "_-f_etc_shadow");
        assert_eq!(safe_comm("..\x1b[2J"), "_..__2J");
        assert_eq!(safe_comm(""), "_");
        assert_eq!(safe_comm("python3"), "python3");
        assert!(split_template("a 'b").is_err());
        assert!(split_template("   ").is_err());
    }

    #[test]
    fn place_variables_carry_no_raw_control_bytes() {
        let a = crate::host::attribution::Attribution {
            unit: Some("x\x1b]0;pwned\x07.service".into()),
            ..Default::default()
        };
        let env = place_env("/user.slice/\x1b[31mred\u{202e}", &a);
        for (k, v) in &env {
            assert!(
                !v.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{k}={v:?}"
            );
        }
        assert_eq!(env[0].1, crate::fmt::term("/user.slice/\x1b[31mred\u{202e}"));
        assert!(env[1].1.ends_with(".service"), "{:?}", env[1]);
    }
}
