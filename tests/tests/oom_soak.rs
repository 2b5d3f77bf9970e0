//! leaktrace survives the OOMs it records: its own oom_score_adj, and its
//! memory across 20 consecutive memcg OOMs. In its own test binary so the
//! burst runs after the other OOM tests (the kernel rate-limits OOM reports
//! to 10 per 5 s; a burst would suppress their reports).
use std::time::Duration;

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

#[test]
fn survives_and_stays_small_across_20_ooms() {
    require_root();
    let w = Watch::start(&["--interval", "0.5"]);
    let lt = w.pid();
    // Its own protection from the OOM killer.
    let status = w.lines().into_iter().find(|v| v["type"] == "status").unwrap();
    let adj: i32 = std::fs::read_to_string(format!("/proc/{lt}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        status["oom_score_adj"]["effective"], adj,
        "status line tells the truth"
    );
    if has_cap_sys_resource() {
        assert_eq!(adj, -1000);
    } else {
        // Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this machine
        // drops even for root: leaktrace must say so rather than pretend.
        eprintln!(
            "CAP_SYS_RESOURCE missing: leaktrace's oom_score_adj is {adj}, not -1000 (warning checked)"
        );
        assert_eq!(status["oom_score_adj"]["requested"], -1000);
        assert!(status["oom_score_adj"]["error"].is_string());
    }

    let rss = || status_bytes(lt, "VmRSS");
    let cg = MemCg::new("soak", 32 * MB);
    // Warm-up OOM so that one-time allocations are not counted as growth.
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "grow", "128", "1", "1"]));
    h.wait();
    wait_incident(&w, h.pid(), Duration::from_secs(20));
    let before = rss();
    let mut victims = Vec::new();
    for _ in 0..20 {
        let mut h = Proc::spawn(&mut cg.command(&[HELPER, "grow", "128", "1", "1"]));
        let st = h.wait();
        assert!(!st.success(), "helper must be OOM-killed");
        victims.push(h.pid());
    }
    for pid in &victims {
        wait_incident(&w, *pid, Duration::from_secs(30));
    }
    let after = rss();
    // Only our victims: OOMs elsewhere on the host do not count.
    let incidents = w
        .lines()
        .iter()
        .filter(|v| v["type"] == "oom_kill" && victims.iter().any(|p| v["victim"]["pid"] == *p))
        .count();
    eprintln!(
        "leaktrace VmRSS before {} MiB, after 20 OOMs {} MiB; {} incidents",
        before / MB,
        after / MB,
        incidents
    );
    assert_eq!(
        incidents, 20,
        "every kill is an incident, even with rate-limited reports"
    );
    assert!(
        after < before + 24 * MB,
        "leaktrace grew from {before} to {after} bytes"
    );
    assert!(after < 128 * MB, "leaktrace RSS {after}");
    for v in w
        .lines()
        .iter()
        .filter(|v| v["type"] == "oom_kill" && victims.iter().any(|p| v["victim"]["pid"] == *p))
    {
        assert_eq!(v["lost_events"], 0, "{}", v["summary"]);
    }
}
