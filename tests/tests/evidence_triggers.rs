//! Evidence that does not wait for a limit or a cool-down: a bundle
//! written before any fault of its process was sampled is followed by a
//! second one as soon as samples arrive; a slow leak far from any limit
//! gets a bundle once it has grown for --sustained-growth seconds.
use std::{process::Command, time::Duration};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");

#[test]
fn a_bundle_without_samples_gets_a_follow_up_with_them() {
    require_root();
    let out = TempDir::new("follow-up");
    // Idle for 6 s, then 20 MiB/s for 40 s (the same pid throughout).
    let h =
        Proc::spawn(Command::new("/bin/sh").args(["-c", &format!("sleep 6; exec {HELPER} grow 20 40 30")]));
    let pid = h.pid();
    let rec = Record::start(
        &out.0.join("rec"),
        &["--interval", "0.5", "--evidence-pid", &pid.to_string()],
    );
    rec.wait_for(Duration::from_secs(60), "two evidence events", |l| {
        l.iter()
            .filter(|v| v["type"] == "evidence" && v["pid"] == pid)
            .count()
            >= 2
    });
    let evs: Vec<Value> = rec
        .events()
        .into_iter()
        .filter(|v| v["type"] == "evidence" && v["pid"] == pid)
        .collect();
    eprintln!("evidence events: {evs:?}");
    assert_eq!(evs[0]["reason"], "pid");
    let first = std::fs::read_to_string(format!("{}/stacks.txt", evs[0]["dir"].as_str().unwrap())).unwrap();
    assert!(
        first.contains("# no samples"),
        "the first bundle had none:\n{first}"
    );
    assert_eq!(evs[1]["reason"], "stacks-follow-up", "{}", evs[1]);
    let dir = evs[1]["dir"].as_str().expect("second bundle written");
    let folded = std::fs::read_to_string(format!("{dir}/stacks.folded")).unwrap();
    let samples: u64 = folded
        .lines()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert!(samples >= 8, "the follow-up has the samples: {samples}\n{folded}");
    assert!(
        evs[1]["ts_ms"].as_u64().unwrap() - evs[0]["ts_ms"].as_u64().unwrap() < 60_000,
        "within a minute, not after the cool-down"
    );
    assert!(rec.stop().success());
    drop(h);
}

/// About 1 MiB/s with no memcg limit (the host's MemTotal is far away):
/// time-to-limit never fires, the sustained-growth rule does, with stacks,
/// and leaktrace writes no bundle about itself.
#[test]
fn a_slow_leak_far_from_any_limit_gets_a_bundle() {
    require_root();
    let out = TempDir::new("slow-leak");
    let rec = Record::start(
        &out.0.join("rec"),
        &["--interval", "0.5", "--sustained-growth", "20"],
    );
    let t0 = std::time::Instant::now();
    let h = Proc::spawn(Command::new(HELPER).args(["leak", "1", "90"]));
    let pid = h.pid();
    let (ev, dir) = rec.bundle_of(pid, Duration::from_secs(75));
    let took = t0.elapsed().as_secs_f64();
    eprintln!("after {took:.1} s: {ev}");
    assert_eq!(ev["reason"], "sustained-growth", "{ev}");
    // Trend detection takes some seconds, then 20 s of growth.
    assert!(took >= 20.0, "not before 20 s of growth: {took}");
    let folded = std::fs::read_to_string(dir.join("stacks.folded")).unwrap();
    assert!(
        folded.contains("leak_into_cache"),
        "sampled from half the time on, so the bundle names the leak:\n{folded}"
    );
    let me = rec.pid();
    assert!(
        !rec.events()
            .iter()
            .any(|v| v["type"] == "evidence" && v["pid"] == me),
        "no bundle about leaktrace itself"
    );
    assert!(rec.stop().success());
    drop(h);
}

/// A pool whose members each take one step and stay flat: no process
/// grows for long, but the pool does (recycled workers, seed 001's
/// gunicorn). A Python parent forks a worker every second, each holding
/// 4 MiB. The pool gets a sustained-growth bundle naming the pool.
const POOL_STEPS_PY: &str = r#"
import os, time, signal
print("ready", flush=True)
kids = []
for i in range(80):
    pid = os.fork()
    if pid == 0:
        b = bytearray(4 << 20)
        time.sleep(600)
        os._exit(0)
    kids.append(pid)
    time.sleep(1)
time.sleep(600)
"#;

#[test]
fn a_pool_that_grows_by_new_members_gets_a_bundle() {
    require_root();
    let out = TempDir::new("pool-steps");
    let rec = Record::start(
        &out.0.join("rec"),
        &["--interval", "0.5", "--sustained-growth", "20"],
    );
    let mut p = Proc::spawn(Command::new("python3").args(["-c", POOL_STEPS_PY]));
    p.wait_line("ready", Duration::from_secs(20));
    let leader = p.pid();
    // Declared after `p`, so dropped before it: the workers are killed,
    // then the parent.
    let _kids = KillChildren(leader);
    rec.wait_for(Duration::from_secs(75), "a bundle for the pool", |l| {
        l.iter().any(|v| {
            v["type"] == "evidence"
                && v["reason"] == "sustained-growth"
                && v["detail"].as_str().unwrap_or("").contains(&format!("its pool (leader {leader} "))
        })
    });
    let ev: Vec<_> = rec
        .events()
        .into_iter()
        .filter(|v| v["type"] == "evidence" && v["reason"] == "sustained-growth")
        .collect();
    eprintln!("{ev:?}");
    let pool: Vec<_> = ev
        .iter()
        .filter(|v| v["detail"].as_str().unwrap_or("").contains("its pool"))
        .collect();
    assert_eq!(pool.len(), 1, "one bundle per pool per cool-down: {pool:?}");
    assert!(pool[0]["dir"].is_string(), "{}", pool[0]);
    // The bundle is about a member of the pool.
    let pid = pool[0]["pid"].as_u64().unwrap() as u32;
    let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next()?.split_whitespace().nth(1)?.parse::<u32>().ok());
    assert!(pid == leader || ppid == Some(leader), "{pid} is in the pool of {leader}");
    assert!(rec.stop().success());
}

/// Kills the pool's workers when the test ends, also when it fails: they
/// outlive their parent otherwise.
struct KillChildren(u32);

impl Drop for KillChildren {
    fn drop(&mut self) {
        for k in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(c) = k.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let pp = std::fs::read_to_string(format!("/proc/{c}/stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next()?.split_whitespace().nth(1)?.parse::<u32>().ok());
            if pp == Some(self.0) {
                // SAFETY: killing a child of the test's own pool.
                unsafe { libc::kill(c, libc::SIGKILL) };
            }
        }
    }
}

/// Issue 21 item 9: real memory pressure past the PSI threshold. A memcg
/// at its limit rereads a file twice its size (reclaim stalls, counted in
/// the host's PSI) while a second member grows. The PSI trigger must name
/// that grower: not leaktrace, not the rereader (which does not grow),
/// no other process. The other triggers are off (the memcg is
/// full, so time-to-limit cannot fire; rss-pct stays far; no
/// sustained-growth), so a bundle here is the PSI trigger's. Host only:
/// vm-test's guests have no disk, and page cache on a tmpfs cannot be
/// reclaimed.
#[test]
fn memory_pressure_names_the_grower_of_the_full_memcg() {
    require_root();
    let out = TempDir::new("psi");
    let cg = MemCg::new("psi", 64 << 20);
    let file = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("psi-{}.dat", std::process::id()));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _file = Remove(file.clone());
    let rec = Record::start(
        &out.0.join("rec"),
        &[
            "--interval",
            "0.5",
            "--psi-full",
            "0.1",
            "--sustained-growth",
            "0",
            "--time-to-limit",
            "0.01",
        ],
    );
    let mut reader = Proc::spawn(&mut cg.command(&[HELPER, "pagecache", file.to_str().unwrap(), "128", "90"]));
    reader.wait_line("ready", Duration::from_secs(60));
    let grower = Proc::spawn(&mut cg.command(&[HELPER, "grow", "1", "40", "60"]));
    let (gpid, rpid) = (grower.pid(), reader.pid());
    let psi = || std::fs::read_to_string("/proc/pressure/memory").unwrap_or_default();
    eprintln!("PSI when the grower started:\n{}", psi());
    rec.wait_for(Duration::from_secs(60), "a PSI bundle", |l| {
        l.iter().any(|v| v["type"] == "evidence" && v["reason"] == "psi")
    });
    eprintln!("PSI at the bundle:\n{}", psi());
    let evs: Vec<Value> = rec
        .events()
        .into_iter()
        .filter(|v| v["type"] == "evidence")
        .collect();
    for e in &evs {
        eprintln!("evidence: pid {} reason {} {}", e["pid"], e["reason"], e["detail"]);
    }
    let first = evs.iter().find(|v| v["reason"] == "psi").unwrap();
    assert_eq!(first["pid"], gpid, "the memcg's grower, not the rereader {rpid}: {first}");
    // Every PSI bundle is the grower's; nothing at all about the rereader
    // or leaktrace. (Another process of the host may cross a trigger of
    // its own: that is not this test's business.)
    let me = rec.pid();
    for e in &evs {
        if e["reason"] == "psi" {
            assert_eq!(e["pid"], gpid, "a PSI bundle about another process: {e}");
        }
        assert!(e["pid"] != rpid && e["pid"] != me, "a bundle about {}: {e}", e["pid"]);
    }
    assert!(rec.stop().success());
    drop(grower);
}
