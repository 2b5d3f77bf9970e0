//! `leaktrace record`: evidence bundles before the kill, exec-on-trigger,
//! rotation. Real kernel, real memcg OOMs; run through `cargo xtask test`.
use std::{os::unix::fs::PermissionsExt, process::Command, time::Duration};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

/// Test 1: a process leaking ~40 MiB/s through `leak_into_cache` in a
/// 256 MiB memcg gets a bundle before the OOM kill; stacks.txt names the
/// function; the incident links the bundle.
#[test]
fn bundle_before_the_kill_names_the_leaking_function() {
    require_root();
    let out = TempDir::new("record-leak");
    let rec = Record::start(&out.0, &["--interval", "0.5"]);
    let cg = MemCg::new("leak", 256 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "leak", "40", "30"]));
    let pid = h.pid();
    let st = h.wait();
    assert!(!st.success(), "the leaker must be OOM-killed");
    rec.wait_for(Duration::from_secs(30), "the incident", |l| {
        l.iter()
            .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
    });
    let events = rec.events();
    let inc = events
        .iter()
        .find(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
        .unwrap()
        .clone();
    let ev = events
        .iter()
        .find(|v| v["type"] == "evidence" && v["pid"] == pid)
        .unwrap_or_else(|| panic!("no evidence event for {pid}"))
        .clone();
    eprintln!("evidence: {ev}");
    let dir = std::path::PathBuf::from(ev["dir"].as_str().expect("bundle written"));
    assert_eq!(inc["evidence_dir"], ev["dir"], "the incident links the bundle");
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    assert!(
        meta["ts_ms"].as_u64().unwrap() < inc["ts_ms"].as_u64().unwrap(),
        "bundle {} before incident {}",
        meta["ts_ms"],
        inc["ts_ms"]
    );
    assert_eq!(meta["pid"], pid);
    for f in [
        "meta.json",
        "status",
        "smaps_rollup",
        "cgroup",
        "oom_score",
        "oom_score_adj",
        "limits",
        "timeline.json",
        "stacks.txt",
    ] {
        let m = std::fs::metadata(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
    }
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let stacks = std::fs::read_to_string(dir.join("stacks.txt")).unwrap();
    eprintln!(
        "stacks.txt:\n{}",
        stacks.lines().take(14).collect::<Vec<_>>().join("\n")
    );
    assert!(
        stacks.contains("leak_into_cache"),
        "stacks.txt does not name leak_into_cache:\n{stacks}"
    );
    let st = rec.stop();
    assert!(st.success(), "SIGTERM must flush and exit 0, got {st}");
}

/// Test 2: --exec-on-trigger passes {pid} and {comm} as single arguments,
/// with no shell, even when the comm has shell metacharacters.
#[test]
fn exec_on_trigger_runs_without_a_shell() {
    require_root();
    let out = TempDir::new("record-exec");
    let weird = out.0.join("x;touch PWNED");
    std::os::unix::fs::symlink(HELPER, &weird).unwrap();
    let mut h = Proc::spawn(
        Command::new(&weird)
            .args(["step", "1", "0", "60"])
            .current_dir(&out.0),
    );
    h.wait_line("ready", Duration::from_secs(10));
    let pid = h.pid();
    let argv_file = out.0.join("argv.json");
    let template = format!("{HELPER} argv-dump {} {{pid}} {{comm}}", argv_file.display());
    let rec = Record::start(
        &out.0.join("rec"),
        &[
            "--interval",
            "0.5",
            "--evidence-pid",
            &pid.to_string(),
            "--exec-on-trigger",
            &template,
        ],
    );
    rec.wait_for(Duration::from_secs(20), "the evidence event", |l| {
        l.iter().any(|v| v["type"] == "evidence" && v["pid"] == pid)
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !argv_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the exec command did not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let argv: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&argv_file).unwrap()).unwrap();
    eprintln!("argv received: {argv:?}");
    assert_eq!(argv, vec![pid.to_string(), "x;touch PWNED".to_string()]);
    assert!(!out.0.join("PWNED").exists() && !out.0.join("rec").join("PWNED").exists());
    let ev = rec
        .events()
        .into_iter()
        .find(|v| v["type"] == "evidence" && v["pid"] == pid)
        .unwrap();
    let dir = std::path::PathBuf::from(ev["dir"].as_str().unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dir.join("exec.json").exists() {
        assert!(std::time::Instant::now() < deadline, "exec.json missing");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ex: Value = serde_json::from_slice(&std::fs::read(dir.join("exec.json")).unwrap()).unwrap();
    assert_eq!(ex["exit_code"], 0, "{ex}");
    assert!(rec.stop().success());
}

/// Test 3: with a tiny size limit, events.jsonl rotates and the total stays
/// under the cap.
#[test]
fn event_log_rotates_under_its_cap() {
    require_root();
    let out = TempDir::new("record-rotate");
    let rec = Record::start(
        &out.0,
        &[
            "--interval",
            "0.1",
            "--summary-interval",
            "0.1",
            "--max-file-bytes",
            "8192",
            "--max-files",
            "3",
        ],
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(rec.stop().success());
    let files: Vec<_> = std::fs::read_dir(&out.0)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("events.jsonl"))
        .collect();
    let sizes: Vec<u64> = files.iter().map(|f| f.metadata().unwrap().len()).collect();
    eprintln!(
        "event files: {:?}",
        files
            .iter()
            .map(|f| f.file_name())
            .zip(&sizes)
            .collect::<Vec<_>>()
    );
    assert_eq!(files.len(), 3, "rotated into 3 files");
    for s in &sizes {
        assert!(*s <= 8192, "a file is over the limit: {sizes:?}");
    }
    assert!(sizes.iter().sum::<u64>() <= 3 * 8192);
}
