//! OOM stalls, reclaim stalls and `leaktrace doctor`, on the real kernel.
//! Tests that change printk restore it in a guard; cgroups are removed by
//! their guards; everything runs serially (cargo xtask test).
use std::{process::Command, time::Duration};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

fn oom_once(w: &Watch, tag: &str) -> Value {
    let cg = MemCg::new(tag, 64 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "grow", "64", "3", "3"]));
    h.wait();
    wait_incident(w, h.pid(), Duration::from_secs(20))
}

/// Test 1: with console_loglevel 8 the report is mostly console time; at
/// the default level 4 the console is a small share. Compare, not absolute.
#[test]
fn console_level_decides_the_report_time() {
    require_root();
    let w = Watch::start(&["--interval", "1"]);
    let quiet = {
        let _g = PrintkGuard::set("4 4 1 7");
        oom_once(&w, "quiet")
    };
    // The kernel rate-limits OOM reports (10 per 5 s); stay well clear.
    std::thread::sleep(Duration::from_secs(1));
    let loud = {
        let _g = PrintkGuard::set("8 4 1 7");
        oom_once(&w, "loud")
    };
    let share = |i: &Value| {
        let s = &i["stall"];
        let (c, r) = (
            s["console_ms"].as_f64().unwrap(),
            s["report_ms"].as_f64().unwrap(),
        );
        eprintln!("report_ms={r:.3} console_ms={c:.3} diagnosis: {}", s["diagnosis"]);
        c / r
    };
    let (q, l) = (share(&quiet), share(&loud));
    assert!(
        l > 0.5,
        "at console_loglevel 8 the console should be most of the report: {l:.2}"
    );
    assert!(
        q < 0.5,
        "at console_loglevel 4 the console should be a small share: {q:.2}"
    );
    assert!(l > q);
    assert!(loud["stall"]["report_ms"].as_f64().unwrap() > quiet["stall"]["report_ms"].as_f64().unwrap());
    assert!(
        loud["stall"]["diagnosis"]
            .as_str()
            .unwrap()
            .contains("writing to console ttyS0"),
        "{}",
        loud["stall"]
    );
    assert_eq!(
        loud["stall"]["console_loglevel"], 8,
        "levels as they were when the report started"
    );
    assert!(loud["stall"]["dump_tasks_ms"].as_f64().is_some());
}

/// Test 2: several tasks allocating in one memcg when it OOMs: the others
/// are named as stalled.
///
/// The three allocate 100 MiB each at once, so all three are charging
/// when the 128 MiB memcg runs out: a paced workload (16 MiB/s in 1 MiB
/// chunks) left the others asleep between chunks at the moment of the OOM
/// in one fresh-clone run, and nothing had stalled them.
#[test]
fn other_allocators_are_named_as_stalled() {
    require_root();
    let w = Watch::start(&["--interval", "0.5"]);
    let cg = MemCg::new("stall", 128 * MB);
    let mut hs: Vec<Proc> = (0..3)
        .map(|_| Proc::spawn(&mut cg.command(&[HELPER, "step", "100", "0", "60"])))
        .collect();
    let pids: Vec<u32> = hs.iter().map(|h| h.pid()).collect();
    w.wait_for(Duration::from_secs(30), "an OOM in the memcg", |l| {
        l.iter()
            .any(|v| v["type"] == "oom_kill" && pids.iter().any(|p| v["victim"]["pid"] == *p))
    });
    // Let the incident settle, then look.
    let inc = w
        .lines()
        .into_iter()
        .find(|v| v["type"] == "oom_kill" && pids.iter().any(|p| v["victim"]["pid"] == *p))
        .unwrap();
    let st = &inc["stall"];
    eprintln!("stall: {st}");
    let victim = inc["victim"]["pid"].as_u64().unwrap() as u32;
    let invoker = inc["invoker"]["pid"].as_u64().unwrap() as u32;
    assert!(st["stalled_tasks_count"].as_u64().unwrap() >= 1, "{st}");
    let named: Vec<u32> = st["stalled_tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pid"].as_u64().unwrap() as u32)
        .collect();
    let others: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| *p != victim && *p != invoker)
        .collect();
    assert!(
        named.iter().any(|p| others.contains(p)),
        "stalled {named:?} should include one of {others:?}"
    );
    for t in st["stalled_tasks"].as_array().unwrap() {
        assert_eq!(t["comm"], "lt-helper", "{t}");
        assert!(t["stalled_ms"].as_f64().unwrap() > 0.0);
    }
    for h in hs.iter_mut() {
        let _ = h.child.kill();
    }
}

/// Test 3 (real part): doctor --json on this machine.
#[test]
fn doctor_json_describes_this_machine() {
    require_root();
    let out = Command::new(leaktrace_bin())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let code = out.status.code().unwrap();
    assert!(
        code == 0 || code == 2,
        "exit {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("doctor --json is one JSON object");
    eprintln!("doctor: {}", serde_json::to_string(&r["console_risk"]).unwrap());
    assert_eq!(r["exit_code"], code);
    let checks = r["checks"].as_array().unwrap();
    let find = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
            .clone()
    };
    assert!(find("consoles")["detail"].as_str().unwrap().contains("ttyS0"));
    let kprobe = find("kprobe");
    assert_ne!(kprobe["status"], "ok", "kprobes are off on this kernel: {kprobe}");
    assert!(kprobe["detail"].as_str().unwrap().contains("unavailable"));
    assert_eq!(find("data path")["status"], "ok");
    assert!(find("data path")["detail"]
        .as_str()
        .unwrap()
        .starts_with("iterator"));
    assert!(find("sampler")["detail"].as_str().unwrap().contains("iter/task"));
    assert_eq!(find("oom-victim")["status"], "ok");
    assert!(r["console_risk"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["console"] == "ttyS0"));
    // The exit code follows the warnings.
    assert_eq!(code == 2, r["warnings"].as_u64().unwrap() > 0);
}

/// Test 4: drsnoop-like. A helper whose page cache does not fit its memcg
/// spends time in memcg reclaim, and watch shows it per process.
#[test]
fn reclaim_stall_shows_per_process() {
    require_root();
    let w = Watch::start(&["--interval", "1"]);
    let cg = MemCg::new("reclaim", 32 * MB);
    let file = format!(
        "{}/pagecache-{}.bin",
        env!("CARGO_TARGET_TMPDIR"),
        std::process::id()
    );
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "pagecache", &file, "128", "8"]));
    let pid = h.pid();
    h.wait_line("ready", Duration::from_secs(60));
    w.wait_samples(4);
    let best = w
        .samples()
        .iter()
        .filter_map(|s| row(s, pid))
        .map(|r| r["reclaim_stall_ms_per_sec"].as_f64().unwrap())
        .fold(0.0, f64::max);
    eprintln!("max reclaim_stall_ms_per_sec for the helper: {best:.3}");
    assert!(
        best > 0.0,
        "no reclaim stall seen for a process reading 128 MiB through a 32 MiB memcg"
    );
    let _ = h.child.kill();
    let _ = std::fs::remove_file(&file);
}
