//! JIT frames named from a perf map: a Node.js script leaking `Buffer`s in a
//! named function (`leakBuffers`) inside a memcg runs under `record`.
//! - With `node --perf-basic-prof` node writes /tmp/perf-PID.map; the bundle,
//!   written before the OOM kill, names `leakBuffers` in stacks.txt,
//!   stacks.folded, stacks.raw.json and profile.pb.gz, and meta.json says
//!   node with the perf map found.
//! - Without the flag, meta.json says node and how to get the names.
//!
//! Installs Debian's nodejs if missing.
use std::{path::Path, time::Duration};

use leaktrace_tests::*;

const MB: u64 = 1 << 20;

/// 4 MiB every 100 ms, each page written from JavaScript: the faults are
/// taken in `leakBuffers`' own (JIT-compiled) code.
const SCRIPT: &str = r#"'use strict';
const kept = [];
function leakBuffers(n) {
  for (let i = 0; i < n; i++) {
    const b = Buffer.allocUnsafeSlow(1 << 20);
    for (let j = 0; j < b.length; j += 4096) b[j] = i & 255;
    kept.push(b);
  }
}
console.log('ready');
setInterval(() => leakBuffers(4), 100);
"#;

/// Removes node's /tmp/perf-PID.map (node never does), even on failure.
struct PerfMapFile(std::path::PathBuf);

impl Drop for PerfMapFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn meta_of(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap()
}

/// Runs the script with `flags` in a 256 MiB memcg under `record`.
/// `until_oom`: wait for the OOM kill and the bundle before it; else the
/// first bundle. Returns the bundle's meta.json, and its directory (kept
/// under `out`).
fn run_node(out: &Path, flags: &[&str], until_oom: bool) -> (Value, std::path::PathBuf) {
    let node = ensure_package("node", "nodejs");
    let script = out.join("leak_buffers.js");
    std::fs::write(&script, SCRIPT).unwrap();
    let rec = Record::start(&out.join("rec"), &["--interval", "0.5"]);
    let cg = MemCg::new("nodeleak", 256 * MB);
    let mut argv: Vec<&str> = vec![node.to_str().unwrap()];
    argv.extend(flags);
    argv.push(script.to_str().unwrap());
    // In `out`: V8 also writes an isolate-*.log into its working
    // directory, which goes with the TempDir.
    let mut h = Proc::spawn(cg.command(&argv).current_dir(out));
    let pid = h.pid();
    let _map = PerfMapFile(format!("/tmp/perf-{pid}.map").into());
    h.wait_line("ready", Duration::from_secs(30));
    let dir = if until_oom {
        let st = h.wait();
        assert!(!st.success(), "the leaker must be OOM-killed");
        let (inc, ev, dir) = rec.incident_and_bundle(pid);
        eprintln!("evidence: {ev}");
        let meta = meta_of(&dir);
        assert!(
            meta["ts_ms"].as_u64().unwrap() < inc["ts_ms"].as_u64().unwrap(),
            "bundle {} before the kill {}",
            meta["ts_ms"],
            inc["ts_ms"]
        );
        dir
    } else {
        rec.bundle_of(pid, Duration::from_secs(60)).1
    };
    drop(h);
    drop(cg);
    assert!(rec.stop().success());
    let meta = meta_of(&dir);
    eprintln!("meta.language_runtime: {}", meta["language_runtime"]);
    (meta, dir)
}

#[test]
fn perf_map_names_the_javascript_function() {
    require_root();
    let out = TempDir::new("stacks-node");
    let (meta, dir) = run_node(&out.0, &["--perf-basic-prof"], true);
    let rt = &meta["language_runtime"];
    assert_eq!(rt["name"], "node", "{rt}");
    assert_eq!(rt["perf_map"]["status"], "found", "{rt}");
    assert!(rt["anon_frames_named"].as_u64().unwrap() > 0, "{rt}");
    let stacks = std::fs::read_to_string(dir.join("stacks.txt")).unwrap();
    eprintln!(
        "stacks.txt:\n{}",
        stacks.lines().take(20).collect::<Vec<_>>().join("\n")
    );
    assert!(
        stacks.contains("leakBuffers"),
        "stacks.txt does not name leakBuffers"
    );
    let folded = std::fs::read_to_string(dir.join("stacks.folded")).unwrap();
    eprintln!(
        "stacks.folded (first 3 lines):\n{}",
        folded.lines().take(3).collect::<Vec<_>>().join("\n")
    );
    // The function holds most of the sampled faults.
    let count = |l: &str| {
        l.rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total: u64 = folded.lines().map(count).sum();
    let named: u64 = folded
        .lines()
        .filter(|l| l.contains("leakBuffers"))
        .map(count)
        .sum();
    assert!(
        named * 2 > total,
        "leakBuffers has {named} of {total} sampled faults"
    );
    let raw = std::fs::read_to_string(dir.join("stacks.raw.json")).unwrap();
    assert!(
        raw.contains("leakBuffers"),
        "stacks.raw.json does not name leakBuffers"
    );
    check_profile(&dir, "leakBuffers");
}

#[test]
fn without_the_flag_meta_says_node_and_how_to_name_frames() {
    require_root();
    let out = TempDir::new("stacks-node-noflag");
    let (meta, dir) = run_node(&out.0, &[], false);
    let rt = &meta["language_runtime"];
    assert_eq!(rt["name"], "node", "{rt}");
    assert_eq!(rt["perf_map"]["status"], "absent", "{rt}");
    assert!(
        rt["hint"].as_str().unwrap_or("").contains("--perf-basic-prof"),
        "{rt}"
    );
    let stacks = std::fs::read_to_string(dir.join("stacks.txt")).unwrap();
    assert!(!stacks.contains("leakBuffers"));
}
