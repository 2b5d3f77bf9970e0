//! The pipeline under stress: a sink that never reads, a stop request
//! while a worker is stuck, a process that names itself with hostile
//! bytes. Real kernel, real processes; run through `cargo xtask test`.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

/// `record --json` whose stdout nobody reads: the JSON sink blocks in
/// write() once the pipe is full. A memcg OOM still reaches the event log
/// with nothing lost, the JSON drops are counted, and SIGTERM still ends
/// leaktrace within 2 s although that sink thread is stuck.
#[test]
fn a_stuck_json_consumer_loses_nothing_else_and_sigterm_still_works() {
    require_root();
    let out = TempDir::new("pipeline-stuck");
    let dir = out.0.join("rec");
    let mut child = Command::new(leaktrace_bin())
        .arg("record")
        .arg("--dir")
        .arg(&dir)
        .args(["--json", "--interval", "0.2", "--summary-interval", "0.5"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning leaktrace record --json");
    // Held, never read: the pipe fills and stays full.
    let _stdout = child.stdout.take();
    let pid = child.id();
    let _guard = KillOnDrop(pid);
    wait_events(&dir, Duration::from_secs(30), "the status line", |l| {
        l.iter().any(|v| v["type"] == "status")
    });
    // A few seconds of samples fill the pipe (64 KiB).
    let full = wait_events(&dir, Duration::from_secs(30), "json drops", |l| {
        l.iter()
            .filter(|v| v["type"] == "summary")
            .any(|v| json_drops(v) > 0)
    });
    eprintln!(
        "json drops so far: {}",
        full.iter()
            .rev()
            .find(|v| v["type"] == "summary")
            .map(json_drops)
            .unwrap()
    );
    let cg = MemCg::new("pipeline", 64 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "grow", "64", "3", "3"]));
    let victim = h.pid();
    assert!(!h.wait().success(), "the grower must be OOM-killed");
    let ev = wait_events(&dir, Duration::from_secs(20), "the incident", |l| {
        l.iter()
            .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == victim)
    });
    let inc = ev
        .iter()
        .find(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == victim)
        .unwrap();
    assert_eq!(inc["lost_events"], 0, "{inc}");
    // SIGTERM with the JSON sink stuck in write().
    let t0 = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    let took = t0.elapsed();
    eprintln!("SIGTERM -> exit {st} in {took:?}");
    // 2 s, times LEAKTRACE_TEST_SLACK under emulation (vm-test).
    let limit = Duration::from_secs_f64(2.0 * slack());
    assert!(took < limit, "took {took:?} to stop (limit {limit:?})");
    assert!(st.success(), "{st}");
    // What the event log had when it stopped is intact: every line parses.
    let raw = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    for l in raw.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("bad line ({e}): {l}"));
    }
}

fn json_drops(v: &Value) -> u64 {
    v["kernel"]["sink_drops"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d[0] == "json")
        .map(|d| d[1].as_u64().unwrap_or(0))
        .sum()
}

/// SIGKILLs a pid on drop (the test failed before it stopped it).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling our own child, which may already be gone.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// A process that renames itself with prctl to bytes that are not UTF-8
/// (ESC ] 0 ; 0xff BEL) is tracked and classified like any other.
#[test]
fn a_process_with_a_hostile_comm_is_tracked_and_classified() {
    require_root();
    let w = Watch::start(&["--interval", "1"]);
    let mut h = Proc::spawn(Command::new(HELPER).args(["--comm", "1b5d303bff07", "grow", "16", "12", "30"]));
    let pid = h.pid();
    std::thread::sleep(Duration::from_secs(9));
    w.wait_samples(1);
    let r = w
        .latest_row(pid)
        .expect("the process with a hostile comm is listed");
    eprintln!("row: {r}");
    assert_eq!(
        r["comm"], "\u{1b}]0;\u{fffd}\u{7}",
        "comm decoded lossily, escapes kept for JSON"
    );
    assert_eq!(r["trend"], "growing", "{r}");
    let rate = r["growth_bytes_per_sec"].as_f64().unwrap();
    assert!(
        rate_within(rate, 16.0 * MIB, 0.3),
        "rate {:.1} MiB/s, want 16 ±{:.0}%",
        rate / MIB,
        30.0 * slack()
    );
    h.wait_line("ready", Duration::from_secs(20));
}
