//! Language runtimes in a bundle: the Python stacks of a CPython process
//! (py-spy), and what can be said about a Go process.
//!
//! py-spy reads the interpreter's memory with ptrace (root has it). It runs
//! like --exec-on-trigger's command: no shell, a cleared environment with a
//! fixed PATH, its own process group (killed whole on timeout),
//! oom_score_adj 0, death with leaktrace. Its output names functions and
//! files of the traced program, which anyone may have written: every line is
//! escaped (`fmt::term`) and capped, and the file is bounded.
use std::{
    io::Read,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde::Serialize;

/// Most bytes of py-spy output kept.
pub const PY_OUTPUT_CAP: usize = 256 * 1024;
/// Longest line kept.
const LINE_CAP: usize = 1024;
/// py-spy's wall-clock limit.
const PY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of /proc/PID/maps read to look for libpython.
const MAPS_CAP: usize = 4 << 20;

pub const PY_SPY_HINT: &str = "pip install py-spy";

/// How the process was recognised as CPython, if it was.
pub fn python_kind(pid: u32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    if let Some(b) = exe.as_ref().and_then(|e| e.file_name()).and_then(|b| b.to_str()) {
        if b.starts_with("python") {
            return Some(format!(
                "exe {}",
                crate::fmt::term(&b.chars().take(64).collect::<String>())
            ));
        }
    }
    let (maps, _) =
        crate::host::procfs::read_capped(Path::new(&format!("/proc/{pid}/maps")), MAPS_CAP).ok()?;
    String::from_utf8_lossy(&maps)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter_map(|p| Path::new(p).file_name()?.to_str())
        .find(|b| b.starts_with("libpython"))
        .map(|b| {
            format!(
                "maps {}",
                crate::fmt::term(&b.chars().take(64).collect::<String>())
            )
        })
}

/// Where py-spy is: `--py-spy`, else the first `py-spy` in $PATH or the
/// fixed command PATH.
pub fn find_py_spy(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let env_path = std::env::var("PATH").unwrap_or_default();
    env_path
        .split(':')
        .chain(super::exec::PATH.split(':'))
        .filter(|d| d.starts_with('/') && !d.contains("/shims"))
        .map(|d| Path::new(d).join("py-spy"))
        .find(|p| p.is_file())
}

/// meta.json's `python` object.
#[derive(Serialize, Debug, Default)]
pub struct PyMeta {
    /// How the process was recognised as CPython.
    pub detected_by: String,
    /// The file written, if any.
    pub file: Option<&'static str>,
    /// "py-spy", or None when it is missing.
    pub tool: Option<&'static str>,
    pub tool_path: Option<String>,
    pub tool_version: Option<String>,
    /// ok, missing, failed, timed-out.
    pub status: &'static str,
    pub error: Option<String>,
    /// How to get the tool when it is missing.
    pub install_hint: Option<&'static str>,
    pub output_truncated: bool,
    pub duration_ms: f64,
}

struct Ran {
    out: Vec<u8>,
    err: Vec<u8>,
    truncated: bool,
    timed_out: bool,
    success: bool,
    status: String,
}

/// Runs argv with no shell in its own process group, killed whole after
/// `timeout`; keeps at most `cap` bytes of stdout and 4 KiB of stderr.
fn run_capped(argv: &[&str], timeout: Duration, cap: usize) -> std::io::Result<Ran> {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .env("PATH", super::exec::PATH)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, open, write, close).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr() as *const libc::c_void, 1);
                libc::close(fd);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pgid = child.id() as libc::pid_t;
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    // Read one byte past the cap to know it was reached; the rest is
    // drained and dropped so the tool never blocks on a full pipe.
    let r1 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = (&mut so).take(cap as u64 + 1).read_to_end(&mut b);
        let _ = std::io::copy(&mut so, &mut std::io::sink());
        b
    });
    let r2 = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = (&mut se).take(4096).read_to_end(&mut b);
        let _ = std::io::copy(&mut se, &mut std::io::sink());
        b
    });
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let st = loop {
        match child.try_wait()? {
            Some(st) => break Some(st),
            None if Instant::now() >= deadline => {
                // SAFETY: signals the tool's own process group.
                unsafe { libc::killpg(pgid, libc::SIGKILL) };
                timed_out = true;
                break child.wait().ok();
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    // Whatever it left in its group ends with it (ESRCH when empty).
    // SAFETY: as above.
    unsafe { libc::killpg(pgid, libc::SIGKILL) };
    let mut out = r1.join().unwrap_or_default();
    let err = r2.join().unwrap_or_default();
    let truncated = out.len() > cap;
    out.truncate(cap);
    Ok(Ran {
        out,
        err,
        truncated,
        timed_out,
        success: st.is_some_and(|s| s.success()),
        status: st.map(|s| s.to_string()).unwrap_or_default(),
    })
}

/// Tool output made safe for a text file: every line escaped and capped.
fn escape_lines(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut s = String::with_capacity(text.len());
    for l in text.lines() {
        let l = crate::fmt::term(l);
        if l.len() > LINE_CAP {
            let mut end = LINE_CAP;
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            s += &l[..end];
            s += "…";
        } else {
            s += &l;
        }
        s.push('\n');
    }
    s
}

/// The Python stacks of a CPython process: python_stacks.txt's text (None
/// when nothing was written) and meta.json's `python` object.
pub fn python_stacks(pid: u32, detected_by: String, py_spy: Option<&Path>) -> (Option<String>, PyMeta) {
    let t0 = Instant::now();
    let mut m = PyMeta {
        detected_by,
        ..Default::default()
    };
    let found = match py_spy {
        Some(p) if !p.is_file() => Err(format!(
            "--py-spy {} is not a file",
            crate::fmt::term(&p.to_string_lossy())
        )),
        p => find_py_spy(p).ok_or_else(|| "py-spy not found in PATH (or give --py-spy PATH)".to_string()),
    };
    let tool = match found {
        Ok(t) => t,
        Err(e) => {
            m.status = "missing";
            m.install_hint = Some(PY_SPY_HINT);
            m.file = Some("python_stacks.txt");
            let text = format!(
                "# leaktrace python_stacks.txt: pid {pid} is CPython ({}), but py-spy is missing: {e}.\n\
                 # Install it with `{PY_SPY_HINT}` (or give its path with --py-spy) to get the Python stacks.\n",
                m.detected_by
            );
            m.error = Some(e);
            return (Some(text), m);
        }
    };
    let tool_s = tool.to_string_lossy().into_owned();
    m.tool = Some("py-spy");
    m.tool_path = Some(crate::fmt::term(&tool_s).into_owned());
    if let Ok(r) = run_capped(&[&tool_s, "--version"], Duration::from_secs(3), 200) {
        if r.success {
            m.tool_version = Some(escape_lines(&r.out).trim().to_string());
        }
    }
    let pid_s = pid.to_string();
    let dump = || run_capped(&[&tool_s, "dump", "--pid", &pid_s], PY_TIMEOUT, PY_OUTPUT_CAP);
    let mut res = dump();
    // py-spy fails on an interpreter that is still starting up (it cannot
    // find the version yet): one more try a moment later.
    if res.as_ref().is_ok_and(|r| !r.success && !r.timed_out) {
        std::thread::sleep(Duration::from_millis(300));
        res = dump();
    }
    match res {
        Err(e) => {
            m.status = "failed";
            m.error = Some(format!("cannot run {}: {e}", crate::fmt::term(&tool_s)));
        }
        Ok(r) => {
            m.output_truncated = r.truncated;
            m.status = if r.timed_out {
                m.error = Some(format!("killed after {} s", PY_TIMEOUT.as_secs()));
                "timed-out"
            } else if r.success {
                "ok"
            } else {
                m.error = Some(format!("{}: {}", r.status, escape_lines(&r.err).trim()));
                "failed"
            };
            if !r.out.is_empty() || m.status != "ok" {
                let mut text = format!(
                    "# leaktrace python_stacks.txt: `py-spy dump --pid {pid}` ({}), status {}\n",
                    m.tool_version.as_deref().unwrap_or("py-spy"),
                    m.status
                );
                if let Some(e) = &m.error {
                    text += &format!("# error: {e}\n");
                }
                text += &escape_lines(&r.out);
                if r.truncated {
                    text += &format!("# output cut at {PY_OUTPUT_CAP} bytes\n");
                }
                m.file = Some("python_stacks.txt");
                m.duration_ms = t0.elapsed().as_secs_f64() * 1000.0;
                return (Some(text), m);
            }
        }
    }
    m.duration_ms = t0.elapsed().as_secs_f64() * 1000.0;
    (None, m)
}

/// meta.json's `go` object: a Go program is recognised by the Go runtime's
/// symbols in its sampled stacks (`runtime.goexit`, `runtime.main`,
/// `runtime.mallocgc`).
#[derive(Serialize, Debug)]
pub struct GoMeta {
    pub detected_by: &'static str,
    /// The number of goroutines: not read (it would need the runtime's
    /// internal `allglen` read out of the process's memory).
    pub goroutines: Option<u64>,
    pub goroutines_note: &'static str,
}

/// Go, if the frame names show its runtime.
pub fn go_meta<'a>(mut names: impl Iterator<Item = &'a str>) -> Option<GoMeta> {
    names
        .any(|n| {
            matches!(
                n,
                "runtime.goexit" | "runtime.main" | "runtime.mallocgc" | "runtime.goexit.abi0"
            )
        })
        .then_some(GoMeta {
            detected_by: "Go runtime symbols in the sampled stacks",
            goroutines: None,
            goroutines_note: "not available: the goroutine count lives in the Go runtime's memory \
                              (runtime.allglen); /proc counts threads, not goroutines",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_output_is_escaped_and_capped() {
        let s = escape_lines(b"Thread 1 \"Main\x1b[2J\"\n    f\x07 (a.py:3)\n");
        assert!(!s.contains('\x1b') && !s.contains('\x07'), "{s}");
        assert!(s.contains("a.py:3"));
        let long = "x".repeat(5000);
        assert!(escape_lines(long.as_bytes()).len() < LINE_CAP + 10);
    }

    #[test]
    fn capped_run_keeps_the_cap_and_times_out() {
        let r = run_capped(
            &["/bin/sh", "-c", "yes | head -c 100000"],
            Duration::from_secs(5),
            1000,
        )
        .unwrap();
        assert!(r.truncated && r.out.len() == 1000 && r.success);
        let t = Instant::now();
        let r = run_capped(&["/bin/sleep", "30"], Duration::from_millis(300), 10).unwrap();
        assert!(r.timed_out && t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn go_is_told_by_its_runtime() {
        assert!(go_meta(["main.startWorker", "runtime.goexit"].into_iter()).is_some());
        assert!(go_meta(["main", "__libc_start_main"].into_iter()).is_none());
    }
}
