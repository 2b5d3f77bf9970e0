//! `record --metrics`: OpenMetrics by the book, checked with a strict
//! parser (Debian's python3-prometheus-client) and Prometheus's promtool
//! (Debian's prometheus), and the alert rules and dashboard that ship in
//! contrib/ checked against a real scrape.
use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::Duration,
};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;
/// A scrape that asks for OpenMetrics, as Prometheus does (without it,
/// leaktrace serves the text format 0.0.4).
const GET_OM: &str = "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A python3 module from a Debian package, installed if missing.
fn ensure_python_module(module: &str, package: &str) {
    let has = || {
        Command::new("/usr/bin/python3")
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has() {
        return;
    }
    eprintln!("installing {package} (Debian package) for this test");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        assert!(install(), "apt-get install {package} failed");
    }
    assert!(has(), "python3 cannot import {module} after installing {package}");
}

/// Parses `text` with prometheus_client's OpenMetrics parser, which
/// rejects anything the format does not allow; returns its error if any.
fn strict_parse(text: &str) -> Result<String, String> {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
fams = list(text_string_to_metric_families(sys.stdin.read()))
print(len(fams))
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// (family name, type) from the `# TYPE` lines.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("# TYPE ")?.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

/// A scrape during a memcg OOM: a strict OpenMetrics parse passes; every
/// counter sample ends in _total; no label is a pid; cgroup series are
/// bounded by --metrics-top; the kill is counted under its cgroup; an
/// unknown path gets 404.
#[test]
fn metrics_are_openmetrics_by_the_book() {
    require_root();
    ensure_python_module("prometheus_client", "python3-prometheus-client");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = TempDir::new("metrics-book");
    let rec = Record::start(
        &out.0,
        &[
            "--interval",
            "0.5",
            "--metrics",
            &addr,
            "--metrics-top",
            "2",
            "--bpf-stats",
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let cg = MemCg::new("metrics", 64 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "grow", "64", "3", "3"]));
    let pid = h.pid();
    h.wait();
    rec.wait_for(Duration::from_secs(20), "the incident", |l| {
        l.iter()
            .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
    });
    std::thread::sleep(Duration::from_secs(1));
    let (code, body) = http(&addr, GET_OM);
    assert_eq!(code, 200);
    match strict_parse(&body) {
        Ok(n) => eprintln!("strict OpenMetrics parse: {n} families"),
        Err(e) => panic!("not OpenMetrics: {e}\n{body}"),
    }
    assert!(body.trim_end().ends_with("# EOF"));
    let fams = families(&body);
    for (name, kind) in &fams {
        if kind != "counter" {
            continue;
        }
        for l in body
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(name.as_str()))
        {
            let sample = l.split(['{', ' ']).next().unwrap();
            assert!(
                sample == format!("{name}_total") || sample == format!("{name}_created"),
                "counter sample {sample} of {name} does not end in _total"
            );
        }
    }
    assert!(!body.contains("pid=\""), "a pid label:\n{body}");
    let cgroup_series = body
        .lines()
        .filter(|l| l.starts_with("leaktrace_cgroup_rss_bytes{"))
        .count();
    assert!(
        (1..=2).contains(&cgroup_series),
        "cgroup series {cgroup_series}, --metrics-top 2"
    );
    let kill = format!("leaktrace_oom_kills_total{{cgroup=\"{}\"", cg.path);
    assert!(
        value(&body, &kill).is_some_and(|v| v >= 1.0),
        "{kill} missing:\n{body}"
    );
    assert!(value(&body, "leaktrace_last_oom_kill_timestamp_seconds").is_some_and(|v| v > 1.7e9));
    assert!(body.contains("leaktrace_build_info{version=\""), "{body}");
    assert!(body.contains("leaktrace_hook_live{hook=\"sampler\"} 1"), "{body}");
    assert!(body.contains("leaktrace_lost_events_total{kind=\"oom_ring\"}"));
    assert!(
        body.lines()
            .any(|l| l.starts_with("leaktrace_bpf_runs_total{program=") && !l.ends_with(" 0")),
        "--bpf-stats gives run counts:\n{body}"
    );
    assert_eq!(http(&addr, "GET / HTTP/1.1").0, 404);
    assert_eq!(http(&addr, "GET /metrics/x HTTP/1.1").0, 404);
    assert!(rec.stop().success());
}

/// Metric names in a PromQL expression: identifiers starting leaktrace_.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("leaktrace_") {
        let start = i + pos;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        out.insert(expr[start..end].to_string());
        i = end;
    }
    out
}

/// contrib/alerts.yml passes `promtool check rules`, the dashboard is
/// valid JSON, and every metric either names exists in a real scrape.
#[test]
fn alert_rules_and_dashboard_check_out_against_a_real_scrape() {
    require_root();
    let promtool = ensure_package("promtool", "prometheus");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = root.join("contrib/alerts.yml");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("contrib/grafana-dashboard.json")).unwrap())
            .unwrap();
    let mut names = metric_names(&std::fs::read_to_string(&rules).unwrap());
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            names.extend(metric_names(t["expr"].as_str().unwrap()));
        }
    }
    assert!(names.len() >= 8, "{names:?}");

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let tmp = TempDir::new("metrics-rules");
    let rec = Record::start(&tmp.0, &["--interval", "0.5", "--metrics", &addr, "--bpf-stats"]);
    // A wrong victim, so every series exists: a large flat sibling that
    // the OOM killer prefers (oom_score_adj 1000) next to a grower.
    let cg = MemCg::new("rules", 256 * MB);
    let mut sib = Proc::spawn(&mut cg.command(&[HELPER, "step", "150", "0", "60"]));
    sib.wait_line("ready", Duration::from_secs(10));
    std::fs::write(format!("/proc/{}/oom_score_adj", sib.pid()), "1000").unwrap();
    let mut g = Proc::spawn(&mut cg.command(&[HELPER, "grow", "16", "20", "5"]));
    std::thread::sleep(Duration::from_secs(3));
    let (_, before) = http(&addr, GET_OM);
    let sib_pid = sib.pid();
    sib.wait();
    rec.wait_for(Duration::from_secs(30), "the wrong-victim incident", |l| {
        l.iter()
            .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == sib_pid)
    });
    let inc = rec
        .events()
        .into_iter()
        .find(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == sib_pid)
        .unwrap();
    assert_eq!(inc["victim_was_top_grower"], false, "{}", inc["summary"]);
    std::thread::sleep(Duration::from_secs(1));
    let (_, body) = http(&addr, GET_OM);
    assert!(
        value(&body, "leaktrace_oom_wrong_victim_total{").is_some_and(|v| v >= 1.0),
        "{body}"
    );
    // The same series in the text format (no Accept header, as promtool's
    // users fetch it), for promtool's linter below.
    let (_, text) = http(&addr, "GET /metrics HTTP/1.1");
    let _ = g.child.kill();
    assert!(rec.stop().success());
    let fams: BTreeSet<String> = families(&before)
        .into_iter()
        .chain(families(&body))
        .flat_map(|(n, kind)| {
            if kind == "counter" {
                vec![format!("{n}_total")]
            } else {
                vec![n]
            }
        })
        .collect();
    let missing: Vec<&String> = names.iter().filter(|n| !fams.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "named in contrib/ but not exported: {missing:?}\nexported: {fams:?}"
    );
    // promtool's own linter on the text-format scrape taken above.
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    lint.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = lint.wait_with_output().unwrap();
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!(
        "promtool check metrics: {}",
        if problems.trim().is_empty() {
            "clean"
        } else {
            problems.trim()
        }
    );
    assert!(o.status.success(), "{problems}");
}
