//! The JSON contract (docs/schema/): the checked-in schemas are what the
//! code generates, and real output from real runs (watch --json with a
//! growing process and a memcg OOM, record's events.jsonl, a bundle's
//! meta.json) validates against them. A line whose type has no schema
//! fails. The status line carries schema, host and boot_id; the text
//! table's header an RFC 3339 timestamp.
use std::{collections::BTreeMap, path::PathBuf, process::Command, time::Duration};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/schema")
}

fn files(dir: &std::path::Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

/// (a) The schemas under docs/schema/ are the ones the code generates now:
/// a changed line type without `leaktrace __schemas docs/schema` fails.
#[test]
fn checked_in_schemas_are_current() {
    let out = TempDir::new("contract-schemas");
    let st = Command::new(leaktrace_bin())
        .arg("__schemas")
        .arg(&out.0)
        .status()
        .unwrap();
    assert!(st.success(), "leaktrace __schemas: {st}");
    let fresh = files(&out.0);
    let checked_in = files(&schema_dir());
    assert!(fresh.len() >= 8, "{:?}", fresh.keys());
    assert_eq!(
        fresh.keys().collect::<Vec<_>>(),
        checked_in.keys().collect::<Vec<_>>(),
        "docs/schema/ has other files than the code generates; run `cargo xtask schemas`"
    );
    for (name, text) in &fresh {
        assert!(
            checked_in[name] == *text,
            "docs/schema/{name} is stale; run `cargo xtask schemas` and commit the result"
        );
    }
}

/// The validators, by line type, from the checked-in schemas.
struct Contract {
    by_type: BTreeMap<String, jsonschema::Validator>,
    meta: jsonschema::Validator,
}

impl Contract {
    fn load() -> Self {
        let load = |stem: &str| {
            let p = schema_dir().join(format!("{stem}.schema.json"));
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            jsonschema::validator_for(&v).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let mut by_type = BTreeMap::new();
        for (_, text) in files(&schema_dir()) {
            let v: Value = serde_json::from_str(&text).unwrap();
            if let Some(kind) = v["properties"]["type"]["const"].as_str() {
                by_type.insert(kind.to_string(), load(kind));
            }
        }
        Self {
            by_type,
            meta: load("bundle-meta"),
        }
    }

    /// Validates one line; returns its type. Panics on an unknown type or
    /// a line that breaks its schema, naming the fields.
    fn check_line(&self, what: &str, line: &Value) -> String {
        let kind = line["type"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: a line without a type: {line}"));
        let v = self
            .by_type
            .get(kind)
            .unwrap_or_else(|| panic!("{what}: line type {kind:?} has no schema in docs/schema/"));
        check(v, what, line);
        kind.to_string()
    }
}

fn check(v: &jsonschema::Validator, what: &str, inst: &Value) {
    let errors: Vec<String> = v.iter_errors(inst).map(|e| e.to_string()).take(10).collect();
    assert!(
        errors.is_empty(),
        "{what} breaks its schema:\n  {}\nline: {}",
        errors.join("\n  "),
        &inst.to_string()[..inst.to_string().len().min(4000)]
    );
}

/// Removes the cgroup directories above a MemCg leaf (dropped after it).
struct Parents(Vec<PathBuf>);

impl Drop for Parents {
    fn drop(&mut self) {
        for d in &self.0 {
            for _ in 0..100 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// (b) Real output validates: watch --json and record run side by side
/// while a process in a service's memcg leaks into its limit and is
/// OOM-killed. Every line of both, the bundle's meta.json, and the
/// incident's stall section as an oom_stall line are checked.
#[test]
fn real_output_validates_against_the_schemas() {
    require_root();
    let contract = Contract::load();
    let out = TempDir::new("contract-run");
    let rec = Record::start(
        &out.0.join("rec"),
        &["--interval", "0.5", "--summary-interval", "1"],
    );
    let w = Watch::start_default(&["--interval", "0.5"]);
    // Root cgroup first, so that the guard removes the parents after the
    // MemCg (declared later, dropped first) removed the leaf.
    let top = format!("leaktrace-test-{}-contract", std::process::id());
    let base = PathBuf::from("/sys/fs/cgroup/memory");
    let base = if base.join("memory.limit_in_bytes").exists() {
        base
    } else {
        PathBuf::from("/sys/fs/cgroup")
    };
    let _parents = Parents(vec![base.join(&top).join("system.slice"), base.join(&top)]);
    let cg = MemCg::new("contract/system.slice/lt-contract.service", 256 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "leak", "40", "30"]));
    let pid = h.pid();
    let st = h.wait();
    assert!(!st.success(), "the leaker must be OOM-killed");
    let inc = wait_incident(&w, pid, Duration::from_secs(30));
    rec.wait_for(Duration::from_secs(30), "the incident and a summary", |l| {
        l.iter()
            .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
            && l.iter().any(|v| v["type"] == "summary")
    });
    w.wait_samples(1);
    let watch_lines = w.lines();
    assert!(w.stop().success());
    assert!(rec.stop().success());

    // The status line's new fields.
    let status = &watch_lines[0];
    assert_eq!(status["type"], "status");
    assert_eq!(status["schema"], 1);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(status["host"], host.trim());
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(status["boot_id"], boot.trim());

    // The growing process was seen growing in some sample.
    assert!(
        watch_lines
            .iter()
            .filter(|v| v["type"] == "sample")
            .filter_map(|s| row(s, pid))
            .any(|r| r["trend"] == "growing"),
        "the leaker never showed as growing"
    );

    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, l) in watch_lines.iter().enumerate() {
        *seen
            .entry(format!(
                "watch {}",
                contract.check_line(&format!("watch --json line {i}"), l)
            ))
            .or_default() += 1;
    }
    // events.jsonl read raw: every line must be JSON and have a schema.
    let raw = std::fs::read_to_string(out.0.join("rec/events.jsonl")).unwrap();
    let events: Vec<Value> = raw
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("events.jsonl line {i} is not JSON ({e}): {l}"))
        })
        .collect();
    for (i, l) in events.iter().enumerate() {
        *seen
            .entry(format!(
                "events {}",
                contract.check_line(&format!("events.jsonl line {i}"), l)
            ))
            .or_default() += 1;
    }
    // The incident's stall section, as the oom_stall line would carry it
    // (a notable stall is rare on this machine, the section is not).
    let stall = serde_json::json!({
        "type": "oom_stall",
        "ts_ms": inc["ts_ms"],
        "victim_pid": inc["victim"]["pid"],
        "invoker_pid": inc["invoker"]["pid"],
        "stall": inc["stall"],
    });
    contract.check_line("the incident's stall as an oom_stall line", &stall);

    // The bundle's meta.json, with the process's place (issue 13).
    let ev = events
        .iter()
        .find(|v| v["type"] == "evidence" && v["pid"] == pid && v["dir"].is_string())
        .unwrap_or_else(|| panic!("no bundle for {pid}"));
    let dir = PathBuf::from(ev["dir"].as_str().unwrap());
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    eprintln!("meta.json: {meta}");
    check(&contract.meta, "meta.json", &meta);
    assert_eq!(meta["pid"], pid);
    assert_eq!(meta["unit"], "lt-contract.service");
    assert_eq!(meta["slice"], "system.slice");
    assert!(meta["container_id"].is_null() && meta["pod_uid"].is_null() && meta["runtime"].is_null());
    assert_eq!(inc["victim"]["unit"], "lt-contract.service");

    eprintln!("validated: {seen:?}");
    for want in [
        "watch status",
        "watch sample",
        "watch oom_kill",
        "events status",
        "events oom_kill",
        "events evidence",
        "events summary",
    ] {
        assert!(seen.contains_key(want), "no {want} line was seen: {seen:?}");
    }
    drop(cg);
}

/// The plain-text table's header carries an RFC 3339 UTC timestamp.
#[test]
fn text_header_has_an_rfc3339_timestamp() {
    require_root();
    let o = Command::new(leaktrace_bin())
        .args(["watch", "--interval", "0.5", "--duration", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let header = text
        .lines()
        .find(|l| l.starts_with("--- "))
        .unwrap_or_else(|| panic!("no header in:\n{text}"));
    eprintln!("{header}");
    let ts = header.split(' ').nth(1).unwrap();
    let b = ts.as_bytes();
    assert_eq!(b.len(), 20, "{ts}");
    for (i, c) in b.iter().enumerate() {
        let ok = match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        };
        assert!(ok, "{ts} is not RFC 3339 UTC to the second");
    }
}

/// `doctor --json` is one line of its own type, checked like the others.
#[test]
fn doctor_json_validates() {
    require_root();
    let contract = Contract::load();
    let o = Command::new(leaktrace_bin())
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    assert!(
        matches!(o.status.code(), Some(0) | Some(2)),
        "doctor: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{text}");
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(contract.check_line("doctor --json", &v), "doctor");
}
