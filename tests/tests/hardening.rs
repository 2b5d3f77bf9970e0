//! Issue 21: the recorder's own bounds under attack, with real processes,
//! memcgs, sockets and a tmpfs (docs/security.md: "Exec hooks", "Two
//! recorders", "Metrics port", "Output losses"). "Service capabilities" is
//! in service.rs.
use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `leaktrace record` with its stderr kept in a file. Drop sends SIGTERM,
/// then SIGKILL, also when the test failed.
struct Rec {
    child: Child,
    dir: PathBuf,
    stderr: PathBuf,
    reaped: bool,
}

impl Rec {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_in(&[], dir, extra)
    }

    /// Started through `prefix` (a command that ends by exec'ing its
    /// arguments, so that the pid is the recorder's).
    fn start_in(prefix: &[&str], dir: &Path, extra: &[&str]) -> Self {
        let stderr = dir.with_extension("stderr");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(leaktrace_bin());
                c
            }
            None => Command::new(leaktrace_bin()),
        };
        let child = cmd
            .arg("record")
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawning leaktrace record");
        let r = Self {
            child,
            dir: dir.to_path_buf(),
            stderr,
            reaped: false,
        };
        wait_events(dir, Duration::from_secs(30), "the status line", |l| {
            l.iter().any(|v| v["type"] == "status")
        });
        r
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&mut self, sig: i32) -> std::process::ExitStatus {
        // SAFETY: signalling our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let st = self.child.wait().expect("wait record");
        self.reaped = true;
        st
    }

    /// The latest summary's limits_hit[name].
    fn limit_hits(&self, name: &str) -> u64 {
        read_events(&self.dir)
            .iter()
            .rfind(|v| v["type"] == "summary")
            .and_then(|v| v["kernel"]["limits_hit"][name].as_u64())
            .unwrap_or(0)
    }
}

impl Drop for Rec {
    fn drop(&mut self) {
        if !self.reaped {
            terminate(&mut self.child);
        }
    }
}

/// The value of the first sample line that starts with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Removes the hooks' cgroups a recorder with this pid made (a kill -9
/// leaves them), killing what is in them, also when the test failed.
struct HooksCgroups(u32);

impl HooksCgroups {
    fn dirs(&self) -> Vec<PathBuf> {
        [
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/unified",
        ]
        .iter()
        .map(|r| Path::new(r).join("leaktrace-hooks").join(self.0.to_string()))
        .filter(|d| d.exists())
        .collect()
    }
}

impl Drop for HooksCgroups {
    fn drop(&mut self) {
        for d in self.dirs() {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: killing what a test's recorder left in its cgroup.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                if std::fs::remove_dir(&d).is_ok() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Six children at oom_score_adj 1000 in the memcg of `procs`, each touching 200 MiB/s
/// until it is killed, each replaced when it dies, until `stop`. The
/// children are killed when it returns.
fn oom_storm(procs: &Path, stop: &AtomicBool) -> u32 {
    let mut kids: Vec<Child> = Vec::new();
    let mut spawned = 0;
    while !stop.load(Ordering::Relaxed) {
        kids.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        while kids.len() < 6 {
            let c = Command::new("/bin/sh")
                .arg("-c")
                .arg("echo $$ > \"$0\" && echo 1000 > /proc/self/oom_score_adj && exec \"$@\"")
                .arg(procs)
                .args([HELPER, "grow", "200", "2", "30"])
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn a storm child");
            kids.push(c);
            spawned += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut c in kids {
        let _ = c.kill();
        let _ = c.wait();
    }
    spawned
}

/// Issue 21 item 1: an OOM storm with a hanging --exec-on-oom command.
/// At most 4 commands run at once, the rest wait (16) or are dropped and
/// counted, and a kill -9 of the recorder takes every command with it.
#[test]
fn exec_hooks_in_an_oom_storm_are_bounded_and_die_with_the_recorder() {
    require_root();
    let out = TempDir::new("hard-hooks");
    // A command line no other process has: `sleep <marker>`.
    let marker = (1_000_000 + std::process::id()).to_string();
    let hook = format!("sleep {marker}");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut rec = Rec::start(
        &out.0.join("rec"),
        &[
            "--interval",
            "0.5",
            "--summary-interval",
            "0.5",
            "--metrics",
            &addr,
            "--exec-on-oom",
            &hook,
            "--exec-timeout",
            "300",
        ],
    );
    let _cgroups = HooksCgroups(rec.pid());
    let cg = MemCg::new("hookstorm", 256 * MB);
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let (stop, procs) = (stop.clone(), cg.dir.join("cgroup.procs"));
        std::thread::spawn(move || oom_storm(&procs, &stop))
    };
    let hooks = || pids_with_cmdline(&["sleep", &marker]).len();
    let t0 = Instant::now();
    let mut peak = 0;
    let mut last_read = Instant::now();
    let mut dropped = 0;
    while t0.elapsed() < Duration::from_secs(120) {
        peak = peak.max(hooks());
        if last_read.elapsed() > Duration::from_secs(1) {
            last_read = Instant::now();
            dropped = rec.limit_hits("exec_queue");
            if dropped >= 5 && t0.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let kills = cg.oom_kills();
    let (code, body) = http(&addr, "GET /metrics HTTP/1.1");
    let lost_hooks = metric(&body, "leaktrace_lost_events_total{kind=\"hooks\"}");
    let dropped_json = std::fs::read_dir(rec.dir.join("incidents"))
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path().join("exec.json")).ok())
                .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
                .filter(|v| v["dropped"] == true)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let running = hooks();
    eprintln!(
        "{:.1} s: memcg OOM kills {kills}, hooks running now {running}, at most {peak} at once, \
         exec_queue hits {dropped}, lost_events_total{{kind=hooks}} {lost_hooks:?}, {} exec.json dropped",
        t0.elapsed().as_secs_f64(),
        dropped_json.len()
    );
    // kill -9 while the storm goes on and the commands hang.
    let t_kill = Instant::now();
    rec.signal(libc::SIGKILL);
    let mut left = hooks();
    while left > 0 && t_kill.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
        left = hooks();
    }
    let gone_after = t_kill.elapsed();
    stop.store(true, Ordering::Relaxed);
    let spawned = storm.join().unwrap();
    let leftovers = pids_with_cmdline(&["sleep", &marker]);
    for p in &leftovers {
        // SAFETY: cleaning up what the test caused.
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
    eprintln!(
        "after kill -9: {} hook(s) left, checked for {:.2} s; {spawned} storm children",
        leftovers.len(),
        gone_after.as_secs_f64()
    );
    assert!(peak >= 1, "no --exec-on-oom command ever ran");
    assert!(peak <= 4, "{peak} commands ran at once; the bound is 4");
    assert!(dropped >= 5, "exec_queue hits {dropped} after {kills} kills");
    assert_eq!(code, 200);
    assert!(
        lost_hooks.unwrap_or(0.0) >= dropped as f64,
        "{lost_hooks:?} < {dropped}"
    );
    assert!(!dropped_json.is_empty(), "no exec.json says dropped");
    assert!(
        dropped_json[0]["not_run"]
            .as_str()
            .unwrap_or("")
            .contains("dropped"),
        "{}",
        dropped_json[0]
    );
    assert!(
        leftovers.is_empty(),
        "hooks outlived the recorder's kill -9: {leftovers:?}"
    );
    // The next recorder with hooks empties and removes the cgroups the
    // killed one left.
    let stale = _cgroups.dirs();
    let marker2 = (2_000_000 + std::process::id()).to_string();
    let hook2 = format!("sleep {marker2}");
    let mut rec2 = Rec::start(
        &out.0.join("rec2"),
        &[
            "--summary-interval",
            "0.5",
            "--exec-on-oom",
            &hook2,
            "--exec-timeout",
            "300",
        ],
    );
    let _cgroups2 = HooksCgroups(rec2.pid());
    let still = stale.iter().filter(|d| d.exists()).collect::<Vec<_>>();
    eprintln!("stale hook cgroups {stale:?}, left after the next start {still:?}");
    assert!(still.is_empty(), "{still:?}");
    // Its SIGTERM ends its hooks too, and it says what it dropped.
    stop.store(false, Ordering::Relaxed);
    let storm = {
        let (stop, procs) = (stop.clone(), cg.dir.join("cgroup.procs"));
        std::thread::spawn(move || oom_storm(&procs, &stop))
    };
    let hooks2 = || pids_with_cmdline(&["sleep", &marker2]).len();
    let t0 = Instant::now();
    while rec2.limit_hits("exec_queue") == 0 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let before = hooks2();
    let t_term = Instant::now();
    let st = rec2.signal(libc::SIGTERM);
    let after = hooks2();
    let took = t_term.elapsed();
    stop.store(true, Ordering::Relaxed);
    storm.join().unwrap();
    let left = pids_with_cmdline(&["sleep", &marker2]);
    for p in &left {
        // SAFETY: cleaning up what the test caused.
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
    let line = rec2
        .stderr()
        .lines()
        .find(|l| l.contains("exec hooks:"))
        .unwrap_or("")
        .to_string();
    eprintln!(
        "SIGTERM with {before} hooks running: {after} left when it exited ({:.2} s); {line}",
        took.as_secs_f64()
    );
    // The hooks SIGTERM ended say where they ran: in the recorder's
    // cgroup (v1 here, v2 in vm-test's guests).
    let sandboxes: Vec<String> = std::fs::read_dir(rec2.dir.join("incidents"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("exec.json")).ok())
        .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|v| v["dropped"] != true)
        .map(|v| {
            assert_eq!(
                v["error"], "killed with its process group: the recorder exited",
                "{v}"
            );
            v["sandbox"].as_str().unwrap_or("").to_string()
        })
        .collect();
    eprintln!("sandboxes of the hooks that ran: {:?}", sandboxes.first());
    assert!(st.success());
    assert!(before >= 1, "no hook ran under the second recorder");
    assert!(!sandboxes.is_empty(), "no exec.json of a hook that ran");
    assert!(
        sandboxes
            .iter()
            .all(|s| s.starts_with("cgroup ") && s.contains("leaktrace-hooks/")),
        "{sandboxes:?}"
    );
    assert!(left.is_empty(), "hooks outlived the recorder's SIGTERM: {left:?}");
    assert!(line.contains("dropped"), "{}", rec2.stderr());
}

/// Issue 21 item 1 where no cgroup can be made: systemd's
/// ProtectControlGroups=yes makes every cgroup mount read-only. The
/// recorder runs in a mount namespace of its own where they all are. Its
/// --exec-on-oom command then runs under rlimits (RLIMIT_AS 1 GiB, no
/// core files) and exec.json says so and why. The timeout kills the
/// command's whole group, and a kill -9 of the recorder takes a running
/// command with it (PR_SET_PDEATHSIG).
#[test]
fn hooks_get_rlimits_where_cgroups_are_read_only() {
    require_root();
    let out = TempDir::new("hard-rlimits");
    let marker = (3_000_000 + std::process::id()).to_string();
    let hook = format!("/bin/sh -c 'cat /proc/self/limits /proc/self/cgroup; exec sleep {marker}'");
    let read_only = r#"awk '$3=="cgroup"||$3=="cgroup2"||$2=="/sys/fs/cgroup"{print $2}' /proc/self/mounts |
        while read -r m; do mount -o remount,bind,ro "$m" || exit 1; done && exec "$@""#;
    let unshare = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        read_only,
        "sh",
    ];
    let mut rec = Rec::start_in(
        &unshare,
        &out.0.join("rec"),
        &["--interval", "0.5", "--exec-on-oom", &hook, "--exec-timeout", "3"],
    );
    let cgroups = HooksCgroups(rec.pid());
    let cg = MemCg::new("hookrlimit", 64 * MB);
    let oom = || {
        let mut victim = Command::new("/bin/sh")
            .arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(cg.dir.join("cgroup.procs"))
            .args([HELPER, "grow", "200", "2", "30"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the victim");
        let _ = victim.wait();
    };
    let sleeps = || pids_with_cmdline(&["sleep", &marker]);
    // 1. The command hangs until --exec-timeout kills its group.
    oom();
    let (json, stdout) = wait_exec_json(&rec.dir, Duration::from_secs(60)).unwrap_or_else(|| {
        panic!(
            "no exec.json after {} OOM kill(s):\n{}",
            cg.oom_kills(),
            rec.stderr()
        )
    });
    eprintln!("exec.json: {json}\nexec.stdout:\n{stdout}");
    let sandbox = json["sandbox"].as_str().unwrap_or("");
    assert!(sandbox.starts_with("rlimits"), "{json}");
    assert!(
        sandbox.contains("Read-only file system"),
        "the reason is given: {sandbox}"
    );
    assert_eq!(json["timed_out"], true, "{json}");
    let limit = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let addr = limit("Max address space");
    assert_eq!(addr.get(3).map(String::as_str), Some("1073741824"), "{addr:?}");
    let core = limit("Max core file size");
    assert_eq!(core.get(4).map(String::as_str), Some("0"), "{core:?}");
    assert!(
        !stdout.contains("leaktrace-hooks"),
        "the command is in no hooks cgroup"
    );
    assert!(cgroups.dirs().is_empty(), "{:?}", cgroups.dirs());
    assert!(sleeps().is_empty(), "the timeout left {:?}", sleeps());
    // 2. A command still running when the recorder is kill -9'd dies with it.
    oom();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sleeps().is_empty() {
        assert!(Instant::now() < deadline, "the second command never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t_kill = Instant::now();
    rec.signal(libc::SIGKILL);
    let mut left = sleeps();
    while !left.is_empty() && t_kill.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
        left = sleeps();
    }
    for p in &left {
        // SAFETY: cleaning up what the test caused.
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
    eprintln!(
        "after kill -9: {} command(s) left ({:.2} s)",
        left.len(),
        t_kill.elapsed().as_secs_f64()
    );
    assert!(
        left.is_empty(),
        "the command outlived the recorder's kill -9: {left:?}"
    );
}

/// The first exec.json under `dir`/incidents and its exec.stdout.
fn wait_exec_json(dir: &Path, timeout: Duration) -> Option<(Value, String)> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let found = std::fs::read_dir(dir.join("incidents"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .find_map(|e| {
                let j = std::fs::read(e.path().join("exec.json")).ok()?;
                let o = std::fs::read_to_string(e.path().join("exec.stdout")).ok()?;
                Some((serde_json::from_slice::<Value>(&j).ok()?, o))
            });
        if found.is_some() {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Issue 21 item 2: a second recorder on the same directory is refused
/// (exit 1, a clear message) and the first one goes on.
#[test]
fn a_second_recorder_on_the_same_directory_is_refused() {
    require_root();
    let out = TempDir::new("hard-lock");
    let dir = out.0.join("rec");
    let first = Rec::start(&dir, &["--interval", "0.5", "--summary-interval", "0.5"]);
    let t = Instant::now();
    let second = Command::new(leaktrace_bin())
        .args(["record", "--duration", "10", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    eprintln!(
        "second recorder: {:?} after {:.2} s: {err}",
        second.status.code(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already recording into") && err.contains(&format!("pid {}", first.pid())),
        "{err}"
    );
    // The first one still records: new summaries after the refusal.
    let n = read_events(&dir).len();
    wait_events(
        &dir,
        Duration::from_secs(10),
        "new lines from the first recorder",
        |l| l.len() > n + 2,
    );
    let mut first = first;
    assert!(first.signal(libc::SIGTERM).success());
    // Its lock went with it: a new recorder starts on the directory.
    let mut third = Rec::start(&dir, &[]);
    // SIGTERM is handled once the threads run, just after the status line.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(third.signal(libc::SIGTERM).success(), "{}", third.stderr());
}

/// Issue 21 item 4: 64 idle connections and a reconnecting flood of 128
/// more cannot keep a scraper out.
#[test]
fn idle_connections_cannot_lock_a_scraper_out_of_metrics() {
    require_root();
    raise_nofile();
    let out = TempDir::new("hard-metrics");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut rec = Rec::start(
        &out.0.join("rec"),
        &[
            "--interval",
            "0.5",
            "--summary-interval",
            "0.5",
            "--metrics",
            &addr,
        ],
    );
    let sa: std::net::SocketAddr = addr.parse().unwrap();
    let idle: Vec<_> = (0..64)
        .map(|_| std::net::TcpStream::connect(sa).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flood: Vec<_> = (0..128)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(1)) else {
                        continue;
                    };
                    n += 1;
                    // Hold it, sending nothing, until the server closes it.
                    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut b = [0u8; 64];
                    let _ = c.read(&mut b);
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let mut ok = 0;
    let mut worst = Duration::ZERO;
    for i in 0..10 {
        let t = Instant::now();
        let (code, body) = http(&addr, "GET /metrics HTTP/1.1");
        let took = t.elapsed();
        worst = worst.max(took);
        let good = code == 200 && body.contains("leaktrace_build_info") && took < Duration::from_secs(3);
        eprintln!("scrape {i}: {code} in {:.3} s", took.as_secs_f64());
        ok += good as usize;
        std::thread::sleep(Duration::from_millis(300));
    }
    let curl = Command::new("curl")
        .args(["-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{addr}/metrics"))
        .output()
        .unwrap();
    let curl_code = String::from_utf8_lossy(&curl.stdout).into_owned();
    stop.store(true, Ordering::Relaxed);
    let reconnects: u64 = flood.into_iter().map(|t| t.join().unwrap()).sum();
    drop(idle);
    let evicted = rec.limit_hits("metrics_idle_evicted");
    eprintln!(
        "{ok}/10 scrapes in time (slowest {:.3} s), curl {curl_code}, {reconnects} flood connections, \
         {evicted} idle evicted",
        worst.as_secs_f64()
    );
    assert_eq!(ok, 10, "scrapes that got their answer within 3 s");
    assert_eq!(curl_code, "200");
    assert!(evicted > 0);
    assert!(rec.signal(libc::SIGTERM).success());
    // A bind address that is not loopback is warned about, with the doc.
    let addr = format!("0.0.0.0:{}", free_port());
    let mut open = Rec::start(&out.0.join("any"), &["--metrics", &addr]);
    std::thread::sleep(Duration::from_millis(1500));
    let err = open.stderr();
    assert!(open.signal(libc::SIGTERM).success());
    assert!(
        err.contains("not a loopback address") && err.contains("docs/security.md"),
        "{err}"
    );
}

/// Issue 21 item 8 (metrics): kills recorded while the output directory's
/// disk is full are lost, and counted: lost_events_total{kind="outputs"}
/// and a line at exit.
#[test]
fn outputs_lost_to_a_full_disk_are_counted_in_metrics_and_printed() {
    require_root();
    let fs = Tmpfs::mount("hard-tmpfs", "2m");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut rec = Rec::start(
        &fs.dir.0.join("rec"),
        &[
            "--interval",
            "0.5",
            "--summary-interval",
            "0.5",
            "--metrics",
            &addr,
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (_, body) = http(&addr, "GET /metrics HTTP/1.1");
    let before = metric(&body, "leaktrace_lost_events_total{kind=\"outputs\"}");
    let filler = fs.dir.0.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
    }
    let cg = MemCg::new("fullkills", 32 * MB);
    let mut victims = 0;
    for _ in 0..3 {
        let mut h = Proc::spawn(&mut cg.command(&[HELPER, "grow", "128", "1", "1"]));
        if !h.wait().success() {
            victims += 1;
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let (code, body) = http(&addr, "GET /metrics HTTP/1.1");
    let lost = metric(&body, "leaktrace_lost_events_total{kind=\"outputs\"}");
    std::fs::remove_file(&filler).unwrap();
    let st = rec.signal(libc::SIGTERM);
    let err = rec.stderr();
    let line = err
        .lines()
        .find(|l| l.contains("outputs:"))
        .unwrap_or("")
        .to_string();
    eprintln!(
        "{victims} OOM kills ({} in the memcg) while full: outputs lost {before:?} -> {lost:?}; exit line: {line}",
        cg.oom_kills()
    );
    assert!(st.success());
    assert_eq!(code, 200);
    assert!(victims >= 1 && cg.oom_kills() >= 1);
    assert_eq!(before.unwrap_or(0.0), 0.0);
    assert!(lost.unwrap_or(0.0) > 0.0, "{body}");
    assert!(line.contains("write(s) failed"), "{err}");
}

/// The kernel's OOM kill count since boot (/proc/vmstat oom_kill).
fn vmstat_oom_kills() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .expect("oom_kill in /proc/vmstat")
}

/// Issue 21 item 8: kills while the recorder is down leave a mark. A real
/// memcg OOM kill between two recorders on one directory is counted in
/// `report` as a kill no recorder saw, with the kernel's own count.
#[test]
fn kills_while_no_recorder_ran_are_reported() {
    require_root();
    let out = TempDir::new("hard-missed");
    let dir = out.0.join("rec");
    let args = ["--interval", "0.5", "--summary-interval", "0.5"];
    let first = Record::start(&dir, &args);
    first.wait_for(Duration::from_secs(20), "a summary", |l| {
        l.iter().any(|v| v["type"] == "summary")
    });
    assert!(first.stop().success());

    let before = vmstat_oom_kills();
    let cg = MemCg::new("missed", 64 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "leak", "40", "20"]));
    assert!(!h.wait().success(), "the leaker must be OOM-killed");
    let missed = vmstat_oom_kills() - before;
    assert!(missed >= 1, "no OOM kill happened");

    let second = Record::start(&dir, &args);
    second.wait_for(Duration::from_secs(20), "a summary of the second recorder", |l| {
        l.iter().filter(|v| v["type"] == "status").count() >= 2
            && l.iter()
                .rev()
                .take_while(|v| v["type"] != "status")
                .any(|v| v["type"] == "summary")
    });
    assert!(second.stop().success());
    let o = Command::new(leaktrace_bin())
        .arg("report")
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = format!("{missed} OOM kill(s) happened while no recorder ran");
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.contains("recorder"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(text.contains(&want), "wanted '{want}' in:\n{text}");
    assert!(text.contains("the recorder started 1 more time(s)"), "{text}");
}
