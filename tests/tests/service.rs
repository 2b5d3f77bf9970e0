//! leaktrace under systemd, without systemd: the sd_notify datagrams a
//! Type=notify unit relies on (READY=1 after the hooks are live, STATUS=,
//! WATCHDOG=1 from the sampling loop) and the journald priority prefixes.
//! The socket is ours; leaktrace cannot tell it from systemd's.
use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use leaktrace_tests::*;

/// Every datagram received, with the time it arrived (ms since the epoch,
/// and since the listener started).
struct Listener {
    msgs: Arc<Mutex<Vec<(u64, Duration, String)>>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn start(sock: UnixDatagram) -> Self {
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (m, d) = (msgs.clone(), done.clone());
        let t0 = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !d.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
                    let s = String::from_utf8_lossy(&buf[..n]).into_owned();
                    m.lock().unwrap().push((ms, t0.elapsed(), s));
                }
            }
        });
        Self {
            msgs,
            done,
            thread: Some(thread),
        }
    }

    fn msgs(&self) -> Vec<(u64, Duration, String)> {
        self.msgs.lock().unwrap().clone()
    }

    fn wait_for(&self, timeout: Duration, what: &str, f: impl Fn(&[(u64, Duration, String)]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !f(&self.msgs.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; got {:?}",
                self.msgs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn is(m: &str, key: &str) -> bool {
    m.lines().any(|l| l == key)
}

/// Test 1: READY=1 comes after a STATUS= that says the hooks are live (and
/// after the status line in events.jsonl), and WATCHDOG_USEC=2 s gives a
/// ping about every second from the sampling loop.
#[test]
fn ready_after_hooks_live_then_watchdog_pings() {
    require_root();
    let tmp = TempDir::new("service-notify");
    let path = tmp.0.join("notify.sock");
    let listener = Listener::start(UnixDatagram::bind(&path).unwrap());
    let rec_dir = tmp.0.join("rec");
    std::fs::create_dir_all(&rec_dir).unwrap();
    let rec = Record::start_env(
        &rec_dir,
        &["--interval", "0.5"],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    listener.wait_for(Duration::from_secs(20), "READY=1", |m| {
        m.iter().any(|(_, _, s)| is(s, "READY=1"))
    });
    let ready_at = listener
        .msgs()
        .iter()
        .find(|(_, _, s)| is(s, "READY=1"))
        .map(|(ms, t, _)| (*ms, *t))
        .unwrap();
    // Two pings in the 5 s after READY (there should be about five).
    std::thread::sleep(Duration::from_secs(5));
    let msgs = listener.msgs();
    for (_, t, s) in &msgs {
        eprintln!("{:>7.3} s  {}", t.as_secs_f64(), s.replace('\n', "\\n"));
    }
    let ready_idx = msgs.iter().position(|(_, _, s)| is(s, "READY=1")).unwrap();
    let live_idx = msgs
        .iter()
        .position(|(_, _, s)| s.starts_with("STATUS=hooks live:"))
        .expect("a STATUS= line saying the hooks are live");
    assert!(
        live_idx < ready_idx,
        "READY=1 before the hooks-live status: {msgs:?}"
    );
    assert_eq!(
        msgs.iter().filter(|(_, _, s)| is(s, "READY=1")).count(),
        1,
        "READY=1 sent more than once"
    );
    let pings: Vec<Duration> = msgs
        .iter()
        .filter(|(_, t, s)| {
            is(s, "WATCHDOG=1") && *t >= ready_at.1 && *t <= ready_at.1 + Duration::from_secs(5)
        })
        .map(|(_, t, _)| *t)
        .collect();
    eprintln!("{} WATCHDOG=1 in the 5 s after READY=1", pings.len());
    assert!(pings.len() >= 2, "fewer than 2 watchdog pings in 5 s: {msgs:?}");
    // The status line was written before READY=1 (its timestamp is taken
    // when the hooks are attached).
    let status = rec
        .events()
        .into_iter()
        .find(|v| v["type"] == "status")
        .expect("status line");
    let status_ms = status["ts_ms"].as_u64().unwrap();
    assert!(
        status_ms <= ready_at.0,
        "status line at {status_ms} ms, READY=1 at {} ms",
        ready_at.0
    );
    let live = status["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["live"].is_null())
        .count();
    assert!(live > 0, "no hook live in the status line: {status}");
    let st = rec.stop();
    assert!(st.success(), "SIGTERM: {st}");
    let msgs = listener.msgs();
    assert!(
        msgs.iter().any(|(_, _, s)| is(s, "STOPPING=1")),
        "no STOPPING=1 on SIGTERM: {msgs:?}"
    );
}

/// Test 2: the pings come from the sampling loop: while it hangs (a test
/// hook sleeps 4 s in one sample) there are none, then they resume. The
/// socket is abstract (NOTIFY_SOCKET=@name), as systemd's can be.
#[test]
fn watchdog_pings_stop_while_the_sampler_hangs() {
    require_root();
    use std::os::linux::net::SocketAddrExt;
    let name = format!("leaktrace-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = Listener::start(UnixDatagram::bind_addr(&addr).unwrap());
    let tmp = TempDir::new("service-hang");
    let env_name = format!("@{name}");
    let rec = Record::start_env(
        &tmp.0,
        &["--interval", "0.5"],
        &[
            ("NOTIFY_SOCKET", env_name.as_str()),
            ("WATCHDOG_USEC", "1000000"),
            // Sample 6 (about 2.5 s after start) sleeps 4 s.
            ("LEAKTRACE_TEST_HANG_SAMPLER", "6:4"),
        ],
    );
    listener.wait_for(Duration::from_secs(30), "pings after the hang", |m| {
        let pings: Vec<Duration> = m
            .iter()
            .filter(|(_, _, s)| is(s, "WATCHDOG=1"))
            .map(|(_, t, _)| *t)
            .collect();
        // A gap of 3 s or more, and two pings after it.
        let gap = pings
            .windows(2)
            .position(|w| w[1] - w[0] >= Duration::from_secs(3));
        gap.is_some_and(|i| pings.len() >= i + 4)
    });
    let pings: Vec<f64> = listener
        .msgs()
        .iter()
        .filter(|(_, _, s)| is(s, "WATCHDOG=1"))
        .map(|(_, t, _)| t.as_secs_f64())
        .collect();
    eprintln!("pings at {pings:.2?} s");
    let gaps: Vec<f64> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    let longest = gaps.iter().cloned().fold(0.0, f64::max);
    eprintln!("longest gap {longest:.2} s (hang 4 s, period 0.5 s)");
    assert!(longest >= 3.5, "no gap while the sampler hung: {gaps:.2?}");
    // Outside the hang they come every half period (0.5 s) or so.
    let normal = gaps.iter().filter(|g| **g < 1.5).count();
    assert!(normal + 1 >= gaps.len(), "irregular pings: {gaps:.2?}");
    let st = rec.stop();
    assert!(st.success(), "SIGTERM: {st}");
}

/// dev:inode of a file, as systemd puts them into JOURNAL_STREAM.
fn dev_ino(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap();
    format!("{}:{}", m.dev(), m.ino())
}

/// Test 3: with stderr on the journal (JOURNAL_STREAM matching stderr),
/// log lines carry sd-daemon priorities; otherwise they are unchanged.
#[test]
fn journal_priorities_only_when_stderr_is_the_journal() {
    require_root();
    let tmp = TempDir::new("service-journal");
    let err = tmp.0.join("stderr");
    let run = |journal: Option<String>, args: &[&str]| -> String {
        let f = std::fs::File::create(&err).unwrap();
        let mut cmd = Command::new(leaktrace_bin());
        cmd.args(args).stdout(Stdio::null()).stderr(f);
        cmd.env_remove("JOURNAL_STREAM");
        if let Some(j) = journal {
            cmd.env("JOURNAL_STREAM", j);
        }
        let _ = cmd.status().unwrap();
        std::fs::read_to_string(&err).unwrap()
    };
    let rec_dir = tmp.0.join("rec");
    let rec_dir = rec_dir.to_str().unwrap();
    let args = ["-v", "record", "--dir", rec_dir, "--duration", "1"];

    std::fs::File::create(&err).unwrap();
    let j = dev_ino(&err);
    let out = run(Some(j.clone()), &args);
    eprintln!("journal:\n{}", out.lines().take(6).collect::<Vec<_>>().join("\n"));
    assert!(!out.is_empty());
    for l in out.lines() {
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].iter().any(|p| l.starts_with(p)),
            "a line without a priority: {l:?}"
        );
    }
    assert!(out.lines().any(|l| l.starts_with("<6>data path:")), "{out}");
    assert!(!out.contains("INFO"), "level labels besides the prefix:\n{out}");

    // An error exit: the last line is an error.
    let bad = run(
        Some(j),
        &[
            "record",
            "--dir",
            "/proc/leaktrace-nonexistent/x",
            "--duration",
            "1",
        ],
    );
    eprintln!("journal, error: {}", bad.trim());
    assert!(
        bad.lines().last().unwrap_or("").starts_with("<3>leaktrace: "),
        "{bad}"
    );

    // JOURNAL_STREAM set but stderr elsewhere (a child with stderr
    // redirected): no prefixes.
    let out = run(Some("1:2".into()), &args);
    assert!(out.lines().any(|l| l.contains("data path:")), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("<6>")), "{out}");
    let out = run(None, &args);
    assert!(!out.lines().any(|l| l.starts_with('<')), "{out}");
}

/// The unit's CapabilityBoundingSet, as setpriv's list ("+bpf,+kill,...").
fn unit_caps() -> Vec<String> {
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/leaktrace.service"))
            .expect("contrib/leaktrace.service");
    unit.lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet in the unit")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

/// Issue 21 item 3: under the unit's capability set, --exec-on-trigger
/// against another user's process runs (the pidfd liveness check sees it
/// alive). Also without CAP_KILL: EPERM from that check means "exists".
#[test]
fn exec_on_trigger_sees_another_users_process_alive_under_the_units_capabilities() {
    require_root();
    let caps = unit_caps();
    assert!(
        caps.iter().any(|c| c == "kill"),
        "the unit lacks CAP_KILL: {caps:?}"
    );
    let out = TempDir::new("svc-caps");
    let helper = env!("CARGO_BIN_EXE_lt-helper");
    for (tag, set) in [
        ("unit", caps.clone()),
        ("no-kill", caps.iter().filter(|c| *c != "kill").cloned().collect()),
    ] {
        // The target belongs to nobody (uid 65534), not to root.
        let mut target = {
            use std::os::unix::process::CommandExt;
            Proc::spawn(
                Command::new(helper)
                    .args(["step", "4", "0", "120"])
                    .uid(65534)
                    .gid(65534),
            )
        };
        target.wait_line("ready", Duration::from_secs(10));
        let dir = out.0.join(tag);
        let bounding = format!(
            "-all,{}",
            set.iter().map(|c| format!("+{c}")).collect::<Vec<_>>().join(",")
        );
        let mut rec = Command::new("setpriv")
            .arg(format!("--bounding-set={bounding}"))
            .args(["--inh-caps=-all", "--"])
            .arg(leaktrace_bin())
            .args(["record", "--interval", "0.5", "--evidence-pid"])
            .arg(target.pid().to_string())
            .args(["--exec-on-trigger", "/bin/true", "--dir"])
            .arg(&dir)
            .stderr(Stdio::null())
            .spawn()
            .expect("setpriv leaktrace record");
        let guard = KillOnDrop(rec.id());
        let events = wait_events(&dir, Duration::from_secs(30), "the bundle", |l| {
            l.iter().any(|v| v["type"] == "evidence" && v["dir"].is_string())
        });
        let status = events
            .iter()
            .find(|v| v["type"] == "status")
            .cloned()
            .unwrap_or_default();
        let bundle = events
            .iter()
            .find(|v| v["type"] == "evidence")
            .and_then(|v| v["dir"].as_str())
            .unwrap()
            .to_string();
        let exec_json = Path::new(&bundle).join("exec.json");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !exec_json.exists() {
            assert!(Instant::now() < deadline, "{tag}: exec.json missing");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(100));
        let ex: serde_json::Value = serde_json::from_slice(&std::fs::read(&exec_json).unwrap()).unwrap();
        let eff = std::fs::read_to_string(format!("/proc/{}/status", rec.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("CapEff"))
            .unwrap_or("")
            .to_string();
        eprintln!("{tag}: caps {bounding} ({eff}); exec.json {ex}");
        drop(guard);
        let _ = rec.wait();
        assert!(status.is_object(), "{tag}: no status line");
        assert!(ex["not_run"].is_null(), "{tag}: {ex}");
        assert_eq!(ex["exit_code"], 0, "{tag}: {ex}");
        assert!(ex["sandbox"].is_string(), "{tag}: {ex}");
    }
}

/// SIGTERM to a pid on drop (then SIGKILL), for a child spawned by hand.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: our own child, not yet reaped (the caller waits after).
        unsafe { libc::kill(self.0 as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && Path::new(&format!("/proc/{}/status", self.0)).exists() {
            let zombie = std::fs::read_to_string(format!("/proc/{}/stat", self.0))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true);
            if zombie {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}
