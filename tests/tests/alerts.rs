//! contrib/alerts.yml against Prometheus itself (Debian's `prometheus`
//! package, installed when missing): `promtool check rules`, the rule unit
//! tests in contrib/alerts.test.yml, `promtool check metrics` on a real
//! scrape, and a real Prometheus scraping a real recorder that fires
//! LeaktraceOomKill for the first OOM kill in a new memcg.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn contrib(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(file)
}

fn promtool(args: &[&str], path: Option<&Path>, stdin: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(ensure_package("promtool", "prometheus"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = path {
        cmd.arg(p);
    }
    let mut child = cmd.spawn().expect("spawning promtool");
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The shipped rules load, and their unit tests pass: the first kill and
/// the first wrong victim in a cgroup fire, one host of two going away
/// fires for that host only, a healthy iterator-path host fires nothing.
#[test]
fn shipped_rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, said) = promtool(&["check", "rules"], Some(&contrib("alerts.yml")), None);
    eprintln!("promtool check rules: {}", said.trim());
    assert!(ok, "{said}");
    let (ok, said) = promtool(&["test", "rules"], Some(&contrib("alerts.test.yml")), None);
    eprintln!("promtool test rules: {}", said.trim());
    assert!(ok, "{said}");
}

/// A scrape that asks for the text format (no Accept header, as curl and
/// promtool send) passes `promtool check metrics` with no lint at all;
/// one that asks for OpenMetrics gets OpenMetrics.
#[test]
fn a_text_scrape_passes_promtool_check_metrics() {
    require_root();
    let addr = format!("127.0.0.1:{}", free_port());
    let out = TempDir::new("alerts-lint");
    let rec = Record::start(&out.0, &["--interval", "0.5", "--metrics", &addr]);
    std::thread::sleep(Duration::from_secs(2));
    let (code, text) = http(&addr, "GET /metrics HTTP/1.1");
    assert_eq!(code, 200);
    assert!(!text.contains("# EOF"), "the text format has no # EOF:\n{text}");
    assert!(
        text.contains("# TYPE leaktrace_oom_report_seconds_total counter"),
        "{text}"
    );
    let (ok, said) = promtool(&["check", "metrics"], None, Some(&text));
    eprintln!(
        "promtool check metrics: {}",
        if said.trim().is_empty() {
            "clean"
        } else {
            said.trim()
        }
    );
    assert!(ok, "promtool check metrics failed:\n{said}\n{text}");
    assert!(said.trim().is_empty(), "lint: {said}");
    let (code, om) = http(
        &addr,
        "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0",
    );
    assert_eq!(code, 200);
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    assert!(rec.stop().success());
}

/// `prometheus` on loopback with its data in a temp dir; killed and
/// reaped on drop (the TempDir holding its data goes after it).
struct Prometheus {
    _proc: Proc,
    addr: String,
    _dir: TempDir,
}

impl Prometheus {
    /// Scrapes `target` every second as job "leaktrace" and evaluates the
    /// shipped rules every second. LeaktraceOomKill has no `for:`, so the
    /// shipped file is used as it is.
    fn start(target: &str) -> Self {
        let bin = ensure_package("prometheus", "prometheus");
        let dir = TempDir::new("alerts-prometheus");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: leaktrace\n    static_configs:\n      - targets: ['{target}']\n",
            contrib("alerts.yml").display()
        );
        std::fs::write(dir.0.join("prometheus.yml"), config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
        let proc = Proc::spawn(
            Command::new(bin)
                .arg(format!(
                    "--config.file={}",
                    dir.0.join("prometheus.yml").display()
                ))
                .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .stderr(log),
        );
        Self {
            _proc: proc,
            addr,
            _dir: dir,
        }
    }

    /// GET of an API path; its JSON, or None while Prometheus is not up.
    fn api(&self, path: &str) -> Option<Value> {
        std::net::TcpStream::connect(&self.addr).ok()?;
        let (code, body) = http(&self.addr, &format!("GET {path} HTTP/1.0"));
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// Polls `f` every 500 ms until it holds or `timeout` passes.
    fn wait(&self, timeout: Duration, what: &str, f: impl Fn(&Self) -> bool) -> Duration {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}\nprometheus log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        start.elapsed()
    }
}

/// The alerts named `name` that are firing, from Prometheus' own API.
fn firing(p: &Prometheus, name: &str) -> Vec<Value> {
    p.api("/api/v1/alerts")
        .and_then(|v| v["data"]["alerts"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
        .collect()
}

/// A real Prometheus scraping a real recorder: the first OOM kill in a
/// memcg that did not exist before fires LeaktraceOomKill for that cgroup
/// (the kill counter is born at 1 there).
#[test]
fn prometheus_fires_the_kill_alert_for_the_first_kill_in_a_cgroup() {
    require_root();
    let target = format!("127.0.0.1:{}", free_port());
    let out = TempDir::new("alerts-real");
    let rec = Record::start(&out.0, &["--interval", "0.5", "--metrics", &target]);
    let prom = Prometheus::start(&target);
    let took = prom.wait(Duration::from_secs(60), "the leaktrace target up", |p| {
        p.api("/api/v1/query?query=up%7Bjob%3D%22leaktrace%22%7D")
            .is_some_and(|v| v["data"]["result"][0]["value"][1] == "1")
    });
    eprintln!("prometheus scrapes leaktrace after {took:?}");
    assert!(firing(&prom, "LeaktraceOomKill").is_empty());

    let cg = MemCg::new("alerts", 64 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "grow", "64", "3", "3"]));
    let pid = h.pid();
    h.wait();
    rec.wait_for(Duration::from_secs(20), "the incident", |l| {
        l.iter()
            .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
    });
    let killed = Instant::now();
    let took = prom.wait(Duration::from_secs(90), "LeaktraceOomKill firing", |p| {
        firing(p, "LeaktraceOomKill")
            .iter()
            .any(|a| a["labels"]["cgroup"] == cg.path.as_str())
    });
    eprintln!(
        "LeaktraceOomKill firing for {} {:.1} s after the incident line ({took:?} of polling)",
        cg.path,
        killed.elapsed().as_secs_f64()
    );
    // A healthy host on the iterator path: LeaktraceHookDown is not even
    // pending (its expression is empty), and the hook label reaches
    // Prometheus as `hook` (a target label named `job` would be renamed).
    let alerts = prom.api("/api/v1/alerts").unwrap();
    assert!(!alerts.to_string().contains("LeaktraceHookDown"), "{alerts}");
    let sampler = prom
        .api("/api/v1/query?query=leaktrace_hook_live%7Bhook%3D%22sampler%22%7D")
        .unwrap();
    assert_eq!(sampler["data"]["result"][0]["value"][1], "1", "{sampler}");
    assert!(firing(&prom, "LeaktraceHostDown").is_empty());
    drop(prom);
    assert!(rec.stop().success());
}
