//! Harness for the integration tests: run the real `leaktrace` binary (which
//! loads the real programs into the running kernel) next to helper
//! processes, and clean everything up even when a test fails.
use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use serde_json::Value;

/// Panics (does not skip) when not root: CI runs as root and these tests
/// are the point of the suite.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the integration tests load eBPF programs and need root; run `sudo cargo xtask test`"
    );
}

pub fn leaktrace_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LEAKTRACE_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/leaktrace");
    assert!(
        p.exists(),
        "{} not built: run the tests through `cargo xtask test`",
        p.display()
    );
    p
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let stdout = child.stdout.take().map(BufReader::new);
        Self { child, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads stdout lines until one equals `want`; returns the lines before.
    pub fn wait_line(&mut self, want: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let out = self.stdout.as_mut().expect("stdout piped");
        loop {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for '{want}' (saw {seen:?})"
            );
            let mut line = String::new();
            let n = out.read_line(&mut line).expect("reading helper stdout");
            assert!(n > 0, "helper closed stdout before '{want}' (saw {seen:?})");
            let line = line.trim().to_string();
            if line == want {
                return seen;
            }
            seen.push(line);
        }
    }

    /// Writes one line to the child's stdin (spawned with a piped stdin).
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().expect("stdin piped");
        writeln!(stdin, "{line}").expect("writing to the child's stdin");
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `leaktrace watch --json` running in the background, its lines collected.
pub struct Watch {
    proc: Mutex<Child>,
    /// Set once the child has been waited for: never signal a reaped pid.
    stopped: bool,
    lines: Arc<Mutex<Vec<Value>>>,
    reader: Option<JoinHandle<()>>,
}

impl Watch {
    /// Starts `leaktrace watch --json <extra>` and waits for its first sample
    /// (programs attached and the maps readable).
    pub fn start(extra: &[&str]) -> Self {
        // Tests look for their own pids: every row, unless a test asks
        // for the default view (--top) itself.
        let all: &[&str] = if extra.iter().any(|a| *a == "--top" || *a == "--all") {
            &[]
        } else {
            &["--all"]
        };
        Self::start_args(all, extra)
    }

    /// `watch --json` with its defaults (the top 50 rows).
    pub fn start_default(extra: &[&str]) -> Self {
        Self::start_args(&[], extra)
    }

    fn start_args(all: &[&str], extra: &[&str]) -> Self {
        let mut proc = Command::new(leaktrace_bin())
            .args(["watch", "--json"])
            .args(all)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning leaktrace");
        let out = BufReader::new(proc.stdout.take().unwrap());
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => l2.lock().unwrap().push(v),
                    Err(e) => panic!("leaktrace printed a line that is not JSON ({e}): {line}"),
                }
            }
        });
        let w = Self {
            proc: Mutex::new(proc),
            stopped: false,
            lines,
            reader: Some(reader),
        };
        w.wait_for(Duration::from_secs(30), "the first sample", |l| {
            l.iter().any(|v| v["type"] == "sample")
        });
        w
    }

    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    pub fn samples(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v["type"] == "sample")
            .collect()
    }

    pub fn sample_count(&self) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == "sample")
            .count()
    }

    /// Waits until `n` more samples have arrived.
    pub fn wait_samples(&self, n: usize) {
        let target = self.sample_count() + n;
        self.wait_for(Duration::from_secs(10 + 3 * n as u64), "samples", |l| {
            l.iter().filter(|v| v["type"] == "sample").count() >= target
        });
    }

    pub fn wait_for(&self, timeout: Duration, what: &str, f: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if f(&self.lines.lock().unwrap()) {
                return;
            }
            if let Ok(Some(st)) = self.proc.lock().unwrap().try_wait() {
                panic!("leaktrace exited ({st}) while waiting for {what}");
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The process row for `pid` in the newest sample that has it.
    pub fn latest_row(&self, pid: u32) -> Option<Value> {
        self.samples().iter().rev().find_map(|s| row(s, pid))
    }

    /// Stops leaktrace with SIGINT and returns its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let proc = self.proc.get_mut().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(proc.id() as i32, libc::SIGINT) };
        let st = proc.wait().expect("wait leaktrace");
        self.stopped = true;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        st
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let Ok(proc) = self.proc.get_mut() else { return };
        // SAFETY: signalling our own child; SIGINT first so it detaches cleanly.
        unsafe { libc::kill(proc.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = proc.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = proc.kill();
        let _ = proc.wait();
    }
}

/// The pids on the `children ...` line a helper pool (`lt-helper
/// forkpool` or `cowpool`) prints before `ready`.
pub fn pool_children(lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("children "))
        .expect("children line")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect()
}

pub fn row(sample: &Value, pid: u32) -> Option<Value> {
    sample["processes"]
        .as_array()?
        .iter()
        .find(|p| p["pid"] == pid)
        .cloned()
}

/// A field of /proc/<pid>/status in bytes (kB lines).
pub fn status_bytes(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("{key} missing in /proc/{pid}/status"))
}

pub fn within(actual: f64, expected: f64, frac: f64) -> bool {
    (actual - expected).abs() <= frac * expected.abs()
}

/// The factor timing-sensitive tolerances are widened by: 1.0 unless
/// `LEAKTRACE_TEST_SLACK` says otherwise. Only `cargo xtask vm-test` sets
/// it, in the guest, where software emulation makes a workload's pacing
/// drift; it never narrows a tolerance.
pub fn slack() -> f64 {
    std::env::var("LEAKTRACE_TEST_SLACK")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 1.0)
        .unwrap_or(1.0)
}

/// `within` for a measured rate: the tolerance is multiplied by `slack()`.
pub fn rate_within(actual: f64, expected: f64, frac: f64) -> bool {
    within(actual, expected, frac * slack())
}

pub const MIB: f64 = 1024.0 * 1024.0;

/// A memory cgroup for one test (v1 memory hierarchy or cgroup v2, whichever
/// has the memory controller). Drop kills what is left inside and removes it,
/// even when the test failed.
pub struct MemCg {
    pub dir: PathBuf,
    /// The path as /proc/<pid>/cgroup and the kernel's OOM report show it.
    pub path: String,
    pub version: u8,
}

fn cgroup2_with_memory() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
        let p = PathBuf::from(mnt);
        let ctrls = std::fs::read_to_string(p.join("cgroup.controllers")).ok()?;
        (fstype == "cgroup2" && ctrls.split_whitespace().any(|c| c == "memory")).then_some(p)
    })
}

impl MemCg {
    pub fn new(tag: &str, limit_bytes: u64) -> Self {
        Self::with_name_bytes(tag.as_bytes(), limit_bytes)
    }

    /// A cgroup whose name ends with these bytes, which need not be UTF-8
    /// (any byte but '/' and NUL is a valid cgroup name).
    pub fn with_name_bytes(tag: &[u8], limit_bytes: u64) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let mut raw = format!("leaktrace-test-{}-", std::process::id()).into_bytes();
        raw.extend_from_slice(tag);
        let name = std::ffi::OsStr::from_bytes(&raw);
        let v1 = PathBuf::from("/sys/fs/cgroup/memory");
        let (dir, version) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(name), 1)
        } else if let Some(root) = cgroup2_with_memory() {
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
            (root.join(name), 2)
        } else {
            panic!("no memory cgroup controller (neither v1 nor v2): cannot run memcg OOM tests");
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let cg = Self {
            dir,
            path: format!("/{}", String::from_utf8_lossy(&raw)),
            version,
        };
        let (file, swap_file) = if version == 1 {
            ("memory.limit_in_bytes", None)
        } else {
            ("memory.max", Some("memory.swap.max"))
        };
        std::fs::write(cg.dir.join(file), limit_bytes.to_string()).expect("set memcg limit");
        if let Some(sf) = swap_file {
            let _ = std::fs::write(cg.dir.join(sf), "0");
        }
        cg
    }

    /// A command that moves itself into this cgroup, then execs `argv`.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("/bin/sh");
        // The path goes in as $0, not inside the script: it may hold any
        // bytes.
        c.arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(self.dir.join("cgroup.procs"))
            .args(argv);
        c
    }

    /// The kernel's own count of OOM kills in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.version == 1 {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for MemCg {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            for p in &pids {
                // SAFETY: killing leftover test processes in our own cgroup.
                unsafe { libc::kill(*p as i32, libc::SIGKILL) };
            }
            if (pids.is_empty() && std::fs::remove_dir(&self.dir).is_ok()) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.dir.exists() {
            eprintln!("warning: could not remove test cgroup {}", self.dir.display());
        }
    }
}

/// Waits for an `oom_kill` line whose victim is `pid`.
pub fn wait_incident(w: &Watch, pid: u32, timeout: Duration) -> Value {
    w.wait_for(timeout, &format!("an oom_kill incident for pid {pid}"), |l| {
        l.iter()
            .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
    });
    w.lines()
        .into_iter()
        .find(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
        .unwrap()
}

/// CapEff of this process has CAP_SYS_RESOURCE.
pub fn has_cap_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

impl Watch {
    pub fn pid(&self) -> u32 {
        self.proc.lock().unwrap().id()
    }
}

/// Sets /proc/sys/kernel/printk for a test and restores the old value on
/// drop, also when the test fails.
pub struct PrintkGuard {
    old: String,
}

impl PrintkGuard {
    pub fn set(value: &str) -> Self {
        let old = std::fs::read_to_string("/proc/sys/kernel/printk").expect("read printk");
        std::fs::write("/proc/sys/kernel/printk", value).expect("set printk");
        Self { old }
    }
}

impl Drop for PrintkGuard {
    fn drop(&mut self) {
        // The file reads back as "4\t4\t1\t7"; writing it back is accepted.
        if let Err(e) = std::fs::write("/proc/sys/kernel/printk", self.old.trim()) {
            eprintln!(
                "warning: could not restore /proc/sys/kernel/printk to {}: {e}",
                self.old.trim()
            );
        }
    }
}

/// `leaktrace record --dir DIR ...` in the background. Drop sends SIGTERM
/// (then SIGKILL) so programs are detached even when a test fails.
pub struct Record {
    child: Child,
    pub dir: PathBuf,
    stopped: bool,
}

impl Record {
    pub fn start(dir: &std::path::Path, extra: &[&str]) -> Self {
        Self::start_env(dir, extra, &[])
    }

    /// With extra environment variables (test hooks).
    pub fn start_env(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let child = Command::new(leaktrace_bin())
            .arg("record")
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .envs(env.iter().copied())
            .spawn()
            .expect("spawning leaktrace record");
        let r = Self {
            child,
            dir: dir.to_path_buf(),
            stopped: false,
        };
        r.wait_for(Duration::from_secs(30), "the status line", |l| {
            l.iter().any(|v| v["type"] == "status")
        });
        r
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// All lines of events.jsonl and its rotations, oldest file first.
    pub fn events(&self) -> Vec<Value> {
        read_events(&self.dir)
    }

    pub fn wait_for(&self, timeout: Duration, what: &str, f: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if f(&self.events()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} in {}",
                self.dir.display()
            );
            let alive = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            assert!(alive, "leaktrace record exited while waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM and the exit status.
    /// Waits for the evidence event of `pid` and returns it with its
    /// bundle directory.
    pub fn bundle_of(&self, pid: u32, timeout: Duration) -> (Value, PathBuf) {
        self.wait_for(timeout, "the evidence event", |l| {
            l.iter().any(|v| v["type"] == "evidence" && v["pid"] == pid)
        });
        let ev = self
            .events()
            .into_iter()
            .find(|v| v["type"] == "evidence" && v["pid"] == pid)
            .unwrap();
        let dir = PathBuf::from(ev["dir"].as_str().expect("bundle written"));
        (ev, dir)
    }

    /// Waits for the OOM incident whose victim is `pid`, then returns it,
    /// the evidence event written for `pid` and its bundle directory. With
    /// no evidence event it panics listing the events about `pid`.
    pub fn incident_and_bundle(&self, pid: u32) -> (Value, Value, PathBuf) {
        self.wait_for(Duration::from_secs(30), "the incident", |l| {
            l.iter()
                .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
        });
        let events = self.events();
        let inc = events
            .iter()
            .find(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
            .unwrap()
            .clone();
        let ev = events
            .iter()
            .find(|v| v["type"] == "evidence" && v["pid"] == pid)
            .cloned()
            .unwrap_or_else(|| {
                let about: Vec<String> = events
                    .iter()
                    .filter(|v| v["type"] != "summary" || v.to_string().contains(&format!("\"pid\":{pid},")))
                    .map(|v| v.to_string().chars().take(400).collect())
                    .collect();
                panic!("no evidence event for {pid}; events:\n{}", about.join("\n"))
            });
        let dir = PathBuf::from(ev["dir"].as_str().expect("bundle written"));
        (inc, ev, dir)
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = self.child.wait().expect("wait record");
        self.stopped = true;
        st
    }
}

/// SIGTERM, up to 5 s to exit, then SIGKILL: how a test ends a recorder
/// it did not stop itself.
pub fn terminate(child: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Record {
    fn drop(&mut self) {
        if !self.stopped {
            terminate(&mut self.child);
        }
    }
}

/// All lines of DIR/events.jsonl and its rotations (events.jsonl.N, and
/// events.jsonl.N.gz once compressed), oldest file first. A rotation there
/// both plain and compressed (mid-compression) is read once, plain.
pub fn read_events(dir: &std::path::Path) -> Vec<Value> {
    let rotation = |name: &str| -> Option<(usize, bool)> {
        if name == "events.jsonl" {
            return Some((0, false));
        }
        let rest = name.strip_prefix("events.jsonl.")?;
        match rest.strip_suffix(".gz") {
            Some(n) => Some((n.parse().ok()?, true)),
            None => Some((rest.parse().ok()?, false)),
        }
    };
    let mut files: Vec<(usize, bool, PathBuf)> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let (n, gz) = rotation(&p.file_name()?.to_string_lossy())?;
            Some((n, gz, p))
        })
        .collect();
    files.sort_by_key(|f| (std::cmp::Reverse(f.0), f.1));
    files.dedup_by_key(|f| f.0);
    files
        .iter()
        .flat_map(|(_, gz, f)| {
            let raw = std::fs::read(f).unwrap_or_default();
            let raw = if *gz {
                let mut out = Vec::new();
                // A file still being written reads as far as it goes.
                let _ = std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&raw[..]), &mut out);
                out
            } else {
                raw
            };
            String::from_utf8_lossy(&raw).lines().map(str::to_string).collect::<Vec<_>>()
        })
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

/// Waits until `f` holds for the lines of DIR/events.jsonl.
pub fn wait_events(
    dir: &std::path::Path,
    timeout: Duration,
    what: &str,
    f: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let ev = read_events(dir);
        if f(&ev) {
            return ev;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A fresh directory under the test target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/tmp")
            .join(format!("{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Debian's chromium for the HTML report test, installed if missing.
pub fn ensure_chromium() -> PathBuf {
    let p = PathBuf::from("/usr/bin/chromium");
    if !p.exists() {
        eprintln!("installing chromium (Debian package) for the HTML report test");
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("apt-get").args(["update", "-qq"]).status();
            let st = Command::new("apt-get")
                .args(["install", "-y", "-qq", "chromium"])
                .status();
            assert!(st.is_ok_and(|s| s.success()), "apt-get install chromium failed");
        }
    }
    assert!(p.exists(), "chromium not installed");
    p
}

/// A Debian package's program (stress-ng, gunicorn, golang-go...),
/// installed with apt-get if missing; returns its path.
pub fn ensure_package(program: &str, package: &str) -> PathBuf {
    let find = || {
        ["/usr/bin", "/usr/sbin", "/usr/local/bin"]
            .iter()
            .map(|d| PathBuf::from(d).join(program))
            .find(|p| p.exists())
    };
    if let Some(p) = find() {
        return p;
    }
    eprintln!("installing {package} (Debian package) for this test");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        assert!(install(), "apt-get install {package} failed");
    }
    find().unwrap_or_else(|| panic!("{program} not found after installing {package}"))
}

/// Headless chromium with the flags this machine needs (no network, no
/// background services), on a fresh profile.
pub fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    Command::new(ensure_chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("running chromium")
}

/// A tmpfs of `size` mounted on a fresh directory (mode 0700), unmounted
/// on drop, also when the test fails.
pub struct Tmpfs {
    pub dir: TempDir,
}

impl Tmpfs {
    pub fn mount(tag: &str, size: &str) -> Self {
        let dir = TempDir::new(tag);
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&dir.0)
            .status()
            .expect("running mount");
        assert!(st.success(), "mount tmpfs on {}", dir.0.display());
        Self { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir.0).status();
    }
}

/// Pids of processes whose command line is exactly these bytes
/// (arguments NUL-separated).
pub fn pids_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .map(|r| {
            r.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes with an address space (not kernel threads, not
/// zombies), as /proc lists them now.
pub fn user_process_count() -> usize {
    const PF_KTHREAD: u64 = 0x0020_0000;
    std::fs::read_dir("/proc")
        .map(|r| {
            r.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| {
                    let Ok(s) = std::fs::read(format!("/proc/{p}/stat")) else {
                        return false;
                    };
                    let Some(close) = s.iter().rposition(|&b| b == b')') else {
                        return false;
                    };
                    let rest = String::from_utf8_lossy(&s[close + 1..]).into_owned();
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    // Field 3 is the state, field 9 the flags.
                    f.first().is_some_and(|st| *st != "Z" && *st != "X")
                        && f.get(6)
                            .and_then(|f| f.parse::<u64>().ok())
                            .is_some_and(|f| f & PF_KTHREAD == 0)
                })
                .count()
        })
        .unwrap_or(0)
}

/// Raises this process's open-file soft limit to the hard one.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit to fill, then to set.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
    r.rlim_cur
}

/// One HTTP/1.1 request; (status code, body).
pub fn http(addr: &str, request_line: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{request_line}\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (code, body)
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|r| r.count())
        .unwrap_or(0)
}

/// `go tool pprof` (Debian's golang-go, installed if missing) on a
/// profile: `-top` and `-raw`, both as text. `-symbolize=none`: the
/// profile must name its functions itself.
pub fn pprof_text(profile: &std::path::Path) -> (String, String) {
    let go = ensure_package("go", "golang-go");
    let home = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/pprof-home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |mode: &str| {
        let out = Command::new(&go)
            .args(["tool", "pprof", mode, "-symbolize=none"])
            .arg(profile)
            .env("HOME", &home)
            .env("PPROF_TMPDIR", &home)
            .env("PPROF_BINARY_PATH", &home)
            .output()
            .expect("run go tool pprof");
        assert!(
            out.status.success(),
            "go tool pprof {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    (run("-top"), run("-raw"))
}

/// Checks a bundle's profile.pb.gz with `go tool pprof`: `want` is among
/// the functions of `-top`, and the fields pprof's ingesters rely on
/// (period type, period, time, duration, both sample types) are set.
/// Returns the head of `-top`.
pub fn check_profile(bundle: &std::path::Path, want: &str) -> String {
    let (top, raw) = pprof_text(&bundle.join("profile.pb.gz"));
    let head: String = top.lines().take(12).collect::<Vec<_>>().join("\n");
    eprintln!("go tool pprof -top profile.pb.gz:\n{head}");
    let functions: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    assert!(
        functions.iter().any(|f| f.contains(want)),
        "pprof -top does not list {want}:\n{top}"
    );
    for field in [
        "PeriodType: faults count",
        "Period: ",
        "Time: ",
        "Duration: ",
        "sampled_faults/count estimated_bytes/bytes[dflt]",
    ] {
        assert!(
            raw.contains(field),
            "pprof -raw lacks {field:?}:\n{}",
            &raw[..raw.len().min(2000)]
        );
    }
    let meta: Value = serde_json::from_slice(&std::fs::read(bundle.join("meta.json")).unwrap()).unwrap();
    eprintln!("meta.profile: {}", meta["profile"]);
    assert_eq!(meta["profile"]["file"], "profile.pb.gz");
    assert_eq!(meta["profile"]["stacks_dropped_for_size"], 0);
    head
}

/// Reads `binary` and the shared libraries it links (from `ldd`) into the
/// page cache from outside any test memcg. On cgroup v1 a page is charged
/// to the memcg that first faults it: a program first run inside a small
/// memcg has its own text charged there, and at the limit the kernel
/// reclaims and refaults that text forever instead of OOM-killing
/// (stress-ng --bigheap made 0 kills in 2 x 30 s on a fresh machine, and
/// again here after drop_caches). Charged to the test's own cgroup
/// instead, the pages are not the memcg's to reclaim.
pub fn warm_page_cache(binary: &std::path::Path) {
    let mut files = vec![binary.to_path_buf()];
    if let Ok(out) = Command::new("ldd").arg(binary).output() {
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = l.split("=>").last().unwrap_or("").split_whitespace().next().unwrap_or("");
            if path.starts_with('/') {
                files.push(PathBuf::from(path));
            }
        }
    }
    for f in files {
        let _ = std::fs::read(&f);
    }
}
