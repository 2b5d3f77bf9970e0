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
    let mut h =
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
