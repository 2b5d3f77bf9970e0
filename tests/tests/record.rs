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
    let (inc, ev, dir) = rec.incident_and_bundle(pid);
    eprintln!("evidence: {ev}");
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
/// with no shell; {comm} keeps only [A-Za-z0-9._-], so shell
/// metacharacters never reach the command.
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
    assert_eq!(argv, vec![pid.to_string(), "x_touch_PWNED".to_string()]);
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

/// Test 3: with a small size limit, events.jsonl rotates and the total stays
/// under the cap. (A single line longer than the limit gets a file of its
/// own: at 8 KiB a summary line on a busy host, about 9 KiB, did.)
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
            "32K",
            "--max-files",
            "3",
        ],
    );
    std::thread::sleep(Duration::from_secs(6));
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
        assert!(*s <= 32768, "a file is over the limit: {sizes:?}");
    }
    assert!(sizes.iter().sum::<u64>() <= 3 * 32768);
    // The rotations are gzip files that zcat reads back whole.
    let mut names: Vec<String> = files.iter().map(|f| f.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["events.jsonl", "events.jsonl.1.gz", "events.jsonl.2.gz"]);
    let z = Command::new("zcat").arg(out.0.join("events.jsonl.1.gz")).output().unwrap();
    assert!(z.status.success(), "zcat: {}", String::from_utf8_lossy(&z.stderr));
    let text = String::from_utf8(z.stdout).unwrap();
    assert!(text.len() > 16384, "{} bytes decompressed", text.len());
    for l in text.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    }
}

/// Test 3b (issue 22): an incident that rotated into a compressed file is
/// still in `report`, and nothing of the log is left uncompressed or
/// half-written after a clean stop.
#[test]
fn report_reads_an_incident_from_a_compressed_rotation() {
    require_root();
    let out = TempDir::new("record-gz");
    let args = ["--interval", "0.2", "--summary-interval", "0.2", "--max-file-bytes", "16K", "--max-files", "40"];
    let rec = Record::start(&out.0, &args);
    let cg = MemCg::new("gzrot", 64 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "leak", "40", "20"]));
    let pid = h.pid();
    h.wait();
    rec.wait_for(Duration::from_secs(30), "the incident", |l| {
        l.iter().any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
    });
    // Summaries every 0.2 s push it out of events.jsonl within seconds.
    let t0 = std::time::Instant::now();
    let needle = format!("\"pid\":{pid}");
    while std::fs::read_to_string(out.0.join("events.jsonl")).unwrap_or_default().contains(&needle)
        || t0.elapsed() < Duration::from_secs(3)
    {
        assert!(t0.elapsed() < Duration::from_secs(60), "the incident never rotated out");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(rec.stop().success());
    let names: Vec<String> = std::fs::read_dir(&out.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("events.jsonl"))
        .collect();
    eprintln!("files: {names:?}");
    assert!(names.iter().filter(|n| n.ends_with(".gz")).count() >= 2, "{names:?}");
    assert!(
        names.iter().all(|n| n == "events.jsonl" || n.ends_with(".gz")),
        "a rotation left plain or a temp file after a clean stop: {names:?}"
    );
    let o = Command::new(leaktrace_bin()).arg("report").arg(&out.0).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("victim:  pid {pid} (lt-helper)")), "{text}");
    assert!(!text.contains("skipped"), "{text}");
}

/// Test 5: `leaktrace report` reads a real recording: the text on stdout,
/// or with --html (and nothing on stdout) a page that renders in headless
/// chromium with the timeline, the incident's chart against the memcg
/// limit and the flame graph of its bundle.
#[test]
fn report_text_and_html_in_chromium() {
    require_root();
    let out = TempDir::new("record-report");
    let rec_dir = out.0.join("rec");
    let rec = Record::start(&rec_dir, &["--interval", "0.5", "--summary-interval", "0.5"]);
    let cg = MemCg::new("report", 128 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "leak", "40", "20"]));
    let pid = h.pid();
    h.wait();
    rec.wait_for(Duration::from_secs(30), "the incident", |l| {
        l.iter()
            .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
    });
    assert!(rec.stop().success());

    // Without --html: the text report on stdout.
    let o = Command::new(leaktrace_bin())
        .arg("report")
        .arg(&rec_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    eprintln!("{text}");
    assert!(
        text.contains(&format!("victim:  pid {pid} (lt-helper)")),
        "{text}"
    );
    assert!(
        text.contains("right victim: yes (it was the process that grew the most)"),
        "{text}"
    );
    assert!(
        text.contains("leak_into_cache"),
        "the report shows the bundle's top stack:\n{text}"
    );

    // With --html alone: the page, "wrote" on stderr, nothing on stdout.
    let html = out.0.join("report.html");
    let o = Command::new(leaktrace_bin())
        .arg("report")
        .arg(&rec_dir)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.stdout.is_empty(),
        "stdout with --html: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrote "));
    // --text adds the text report back.
    let o = Command::new(leaktrace_bin())
        .arg("report")
        .arg(&rec_dir)
        .args(["--text", "--html"])
        .arg(out.0.join("again.html"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("victim:  pid {pid} (lt-helper)")));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.to_ascii_lowercase().contains("<script"),
        "no script in the page"
    );

    let url = format!("file://{}", html.display());
    let dom = chromium(&["--dump-dom", &url], &out.0.join("profile"));
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("class=\"timeline\""),
        "no timeline in the rendered DOM"
    );
    assert!(
        dom.contains("<a href=\"#incident-1\"><g class=\"timeline-mark\""),
        "the timeline does not link the incident"
    );
    assert!(
        dom.contains(&format!("id=\"incident-1\" data-victim-pid=\"{pid}\"")),
        "incident missing from the rendered DOM"
    );
    assert!(dom.contains("class=\"limit-line\""), "the memcg limit not drawn");
    assert!(dom.matches("class=\"tick y\"").count() >= 3, "no byte ticks");
    assert!(dom.matches("class=\"tick x\"").count() >= 3, "no time ticks");
    assert!(
        dom.contains("class=\"series victim\""),
        "the victim's RSS not drawn"
    );
    assert!(dom.contains("class=\"oom-marker\""), "OOM moment not marked");
    assert!(dom.contains("class=\"flame\""), "no flame graph");
    assert!(
        dom.matches("<g class=\"frame\">").count() >= 3,
        "a flame graph without frames"
    );
    assert!(
        dom.contains("<title>all \u{2014}") && dom.contains("leak_into_cache \u{2014} "),
        "the flame graph names the leaking function: {}",
        dom.match_indices("<title>")
            .map(|(i, _)| &dom[i..(i + 80).min(dom.len())])
            .take(12)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let shot = out.0.join("report.png");
    let _ = chromium(
        &[
            "--window-size=1100,1400",
            "--hide-scrollbars",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
        &out.0.join("profile2"),
    );
    assert!(
        std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false),
        "no screenshot"
    );
    // LEAKTRACE_KEEP_REPORT=docs/report-example.png keeps the screenshot
    // (and the page next to it, as .html) for the README.
    if let Ok(keep) = std::env::var("LEAKTRACE_KEEP_REPORT") {
        let _ = std::fs::copy(&shot, &keep);
        let _ = std::fs::copy(&html, format!("{keep}.html"));
    }
}
