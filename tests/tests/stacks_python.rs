//! Python stacks in a bundle: a CPython script leaking in a named function
//! inside a memcg is OOM-killed under `record`; the bundle, written before
//! the kill, holds py-spy's dump naming the function and its file:line,
//! and stacks.folded / stacks.raw.json beside stacks.txt. Then
//! `report --symbolize` symbolizes the bundle from stacks.raw.json alone.
//! Installs py-spy (PyPI) under target/tmp if it is not there.
use std::{path::PathBuf, process::Command, time::Duration};

use leaktrace_tests::*;

const MB: u64 = 1 << 20;

/// Debian's CPython (the version this machine documents), else python3.
fn python() -> PathBuf {
    let p = PathBuf::from("/usr/bin/python3");
    if p.exists() {
        p
    } else {
        ensure_package("python3", "python3")
    }
}

/// py-spy, installed with pip into target/tmp/py-spy if missing.
fn ensure_py_spy() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/py-spy");
    let bin = dir.join("bin/py-spy");
    if bin.exists() {
        return bin;
    }
    eprintln!("installing py-spy (PyPI) into {}", dir.display());
    let pip = |py: &str| {
        Command::new(py)
            .args(["-m", "pip", "install", "-q", "--target"])
            .arg(&dir)
            .arg("py-spy")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !pip("python3") && !pip("/usr/bin/python3") {
        ensure_package("pip3", "python3-pip");
        assert!(pip("/usr/bin/python3"), "pip install py-spy failed");
    }
    assert!(bin.exists(), "py-spy not at {} after pip install", bin.display());
    bin
}

const SCRIPT: &str = r#"import time
buf = []

def fetch_big_file():
    chunk = bytearray(b"\x01") * (4 << 20)
    buf.append(chunk)
    time.sleep(0.2)

def main():
    print("ready", flush=True)
    while True:
        fetch_big_file()

main()
"#;

#[test]
fn python_bundle_names_the_leaking_function_and_line() {
    require_root();
    let py_spy = ensure_py_spy();
    let out = TempDir::new("stacks-python");
    let script = out.0.join("leak_fetch.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let rec = Record::start(
        &out.0.join("rec"),
        &["--interval", "0.5", "--py-spy", py_spy.to_str().unwrap()],
    );
    let cg = MemCg::new("pyleak", 256 * MB);
    let py = python();
    let mut h = Proc::spawn(&mut cg.command(&[py.to_str().unwrap(), script.to_str().unwrap()]));
    let pid = h.pid();
    let st = h.wait();
    assert!(!st.success(), "the leaker must be OOM-killed");
    let (inc, ev, dir) = rec.incident_and_bundle(pid);
    eprintln!("evidence: {ev}");
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    eprintln!("meta.python: {}", meta["python"]);
    eprintln!("meta.stack_files: {}", meta["stack_files"]);
    assert!(
        meta["ts_ms"].as_u64().unwrap() < inc["ts_ms"].as_u64().unwrap(),
        "bundle {} before the kill {}",
        meta["ts_ms"],
        inc["ts_ms"]
    );
    assert_eq!(meta["python"]["tool"], "py-spy", "{}", meta["python"]);
    assert_eq!(meta["python"]["status"], "ok", "{}", meta["python"]);
    let pys = std::fs::read_to_string(dir.join("python_stacks.txt")).expect("python_stacks.txt");
    eprintln!("python_stacks.txt:\n{pys}");
    let named = pys.lines().any(|l| {
        l.trim_start().starts_with("fetch_big_file (leak_fetch.py:")
            && l.trim_end().ends_with(')')
            && l.rsplit(':')
                .next()
                .unwrap()
                .trim_end_matches(')')
                .parse::<u32>()
                .is_ok()
    });
    assert!(
        named,
        "python_stacks.txt does not name fetch_big_file (leak_fetch.py:LINE)"
    );
    for f in ["python_stacks.txt", "stacks.folded", "stacks.raw.json"] {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "{f}");
    }
    // The native stacks, folded: root first, "frames COUNT" per line.
    let folded = std::fs::read_to_string(dir.join("stacks.folded")).unwrap();
    eprintln!(
        "stacks.folded (first 3 lines):\n{}",
        folded.lines().take(3).collect::<Vec<_>>().join("\n")
    );
    assert!(!folded.is_empty(), "no folded stacks");
    for l in folded.lines() {
        let (stack, n) = l.rsplit_once(' ').expect("frames COUNT");
        assert!(n.parse::<u64>().is_ok(), "count in {l}");
        assert!(!stack.is_empty() && !stack.chars().any(|c| c.is_control()), "{l}");
    }
    // stacks.raw.json: interpreter frames with its build-id and offsets.
    let raw: Value = serde_json::from_slice(&std::fs::read(dir.join("stacks.raw.json")).unwrap()).unwrap();
    let maps = raw["mappings"].as_array().unwrap();
    eprintln!("stacks.raw.json mappings: {maps:?}");
    assert!(
        maps.iter()
            .any(|m| m["path"].as_str().unwrap_or("").contains("python3")
                && m["build_id"].as_str().is_some_and(|b| b.len() >= 16)),
        "the interpreter's mapping with its build-id: {maps:?}"
    );
    let with_off = raw["stacks"][0]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["file_offset"].is_u64() && f["mapping"].is_u64())
        .count();
    assert!(
        with_off > 0,
        "frames with mapping and file offset: {}",
        raw["stacks"][0]
    );
    // Offline: symbolized from stacks.raw.json only (the binaries are here).
    let o = Command::new(leaktrace_bin())
        .args(["report", "--symbolize"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    eprintln!(
        "report --symbolize (first 25 lines):\n{}",
        text.lines().take(25).collect::<Vec<_>>().join("\n")
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("found /usr/bin/python3"),
        "the interpreter found by build-id"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("(python3.11+0x") && !l.contains(" ?? ")),
        "an interpreter frame symbolized offline"
    );
    // The HTML report shows the Python stacks of the bundle.
    let html = out.0.join("report.html");
    let o = Command::new(leaktrace_bin())
        .arg("report")
        .arg(out.0.join("rec"))
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let h = std::fs::read_to_string(&html).unwrap();
    assert!(
        h.contains("Python stacks, as in python_stacks.txt") && h.contains("fetch_big_file (leak_fetch.py:"),
        "report.html shows the Python stacks"
    );
    assert!(rec.stop().success());
}

/// Without py-spy the bundle says so: python_stacks.txt and meta.json name
/// the missing tool and the install hint. (A sleeping interpreter, bundled
/// on demand with --evidence-pid: no OOM needed.)
#[test]
fn python_bundle_without_py_spy_says_how_to_get_it() {
    require_root();
    let out = TempDir::new("stacks-python-nospy");
    let script = out.0.join("idle.py");
    std::fs::write(
        &script,
        "import time\ndef wait_here():\n    print('ready', flush=True)\n    time.sleep(120)\nwait_here()\n",
    )
    .unwrap();
    let py = python();
    let mut h = Proc::spawn(Command::new(&py).arg(&script));
    h.wait_line("ready", Duration::from_secs(10));
    let pid = h.pid();
    let missing = out.0.join("no-such-py-spy");
    let rec = Record::start(
        &out.0.join("rec"),
        &[
            "--interval",
            "0.5",
            "--evidence-pid",
            &pid.to_string(),
            "--py-spy",
            missing.to_str().unwrap(),
        ],
    );
    let (_, dir) = rec.bundle_of(pid, Duration::from_secs(20));
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    eprintln!("meta.python: {}", meta["python"]);
    assert_eq!(meta["python"]["status"], "missing");
    assert_eq!(meta["python"]["install_hint"], "pip install py-spy");
    assert!(meta["python"]["tool"].is_null());
    assert_eq!(meta["python"]["file"], "python_stacks.txt");
    let pys = std::fs::read_to_string(dir.join("python_stacks.txt")).unwrap();
    eprintln!("python_stacks.txt:\n{pys}");
    assert!(pys.contains("pip install py-spy"), "{pys}");
    assert!(rec.stop().success());
}

/// A script whose file name carries terminal escapes and a bidi override:
/// py-spy prints it, python_stacks.txt must show it escaped, never raw.
#[test]
fn python_stacks_escape_hostile_file_names() {
    require_root();
    let py_spy = ensure_py_spy();
    let out = TempDir::new("stacks-python-hostile");
    let script = out.0.join("evil\x1b]52;c;aGk=\x07\u{202e}yp.py");
    std::fs::write(
        &script,
        "import time\ndef wait_here():\n    print('ready', flush=True)\n    time.sleep(120)\nwait_here()\n",
    )
    .unwrap();
    let mut h = Proc::spawn(Command::new(python()).arg(&script));
    h.wait_line("ready", Duration::from_secs(10));
    let pid = h.pid();
    let rec = Record::start(
        &out.0.join("rec"),
        &[
            "--interval",
            "0.5",
            "--evidence-pid",
            &pid.to_string(),
            "--py-spy",
            py_spy.to_str().unwrap(),
        ],
    );
    let (_, dir) = rec.bundle_of(pid, Duration::from_secs(20));
    let pys = std::fs::read_to_string(dir.join("python_stacks.txt")).unwrap();
    eprintln!("python_stacks.txt:\n{pys}");
    assert!(pys.contains("wait_here ("), "names the function: {pys}");
    for bad in ['\x1b', '\x07', '\u{202e}'] {
        assert!(!pys.contains(bad), "{bad:?} reached python_stacks.txt");
    }
    assert!(pys.contains("\\x1b]52"), "the escape is made visible");
    assert!(rec.stop().success());
}
