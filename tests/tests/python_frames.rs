//! Python code named where the memory is taken: CPython services leaking
//! in a short function between long sleeps, in a memcg, under `record`.
//! The bundle written before the OOM kill names the function, its file and
//! line, from the frames the kernel read at the sampled faults (not from a
//! snapshot of the process when the bundle was written, which shows the
//! sleep). Debian 12's python3.11, a non-main thread, Debian 13's
//! python3.13 (a debootstrap root), the older versions this machine has
//! (pyenv builds, when present), and a gunicorn worker.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use leaktrace_tests::*;

const MB: u64 = 1 << 20;

/// Leaks 4 MiB per call in a function that runs for a few ms, then the
/// loop sleeps: a snapshot almost always shows the sleep.
const SHORT_LEAK: &str = r#"import time
keep = []

def leak_briefly():
    keep.append(b"\x01" * (4 << 20))  # the leak

def main():
    print("ready", flush=True)
    while True:
        leak_briefly()
        time.sleep(0.15)

main()
"#;

/// The same, in a worker thread while the main thread sleeps.
const THREAD_LEAK: &str = r#"import threading, time
keep = []

def leak_briefly():
    keep.append(b"\x01" * (4 << 20))  # the leak

def worker():
    while True:
        leak_briefly()
        time.sleep(0.15)

t = threading.Thread(target=worker, name="leaker", daemon=True)
t.start()
print("ready", flush=True)
while True:
    time.sleep(1)
"#;

/// The line of `marker` in `script` (1-based).
fn line_of(script: &str, marker: &str) -> usize {
    script.lines().position(|l| l.contains(marker)).expect("marker") + 1
}

/// What the bundle of one OOM-killed Python leaker says.
struct PyBundle {
    stacks_txt: String,
    folded: String,
    meta: Value,
}

/// Runs `argv` in a 256 MiB memcg under `record` until it is OOM-killed,
/// and returns its bundle (written before the kill).
/// `profile_fn`: a function `go tool pprof -top profile.pb.gz` must list.
fn bundle_of_killed(tag: &str, argv: &[&str], profile_fn: Option<&str>) -> PyBundle {
    let out = TempDir::new(tag);
    let rec = Record::start(&out.0.join("rec"), &["--interval", "0.5"]);
    let cg = MemCg::new(tag, 256 * MB);
    let mut h = Proc::spawn(&mut cg.command(argv));
    let pid = h.pid();
    let st = h.wait();
    assert!(!st.success(), "the leaker must be OOM-killed");
    let (inc, _ev, dir) = rec.incident_and_bundle(pid);
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    assert!(
        meta["ts_ms"].as_u64().unwrap() < inc["ts_ms"].as_u64().unwrap(),
        "bundle {} before the kill {}",
        meta["ts_ms"],
        inc["ts_ms"]
    );
    if let Some(f) = profile_fn {
        check_profile(&dir, f);
    }
    let b = PyBundle {
        stacks_txt: std::fs::read_to_string(dir.join("stacks.txt")).unwrap(),
        folded: std::fs::read_to_string(dir.join("stacks.folded")).unwrap(),
        meta,
    };
    eprintln!("meta.python: {}", b.meta["python"]);
    eprintln!(
        "stacks.txt (head):\n{}",
        b.stacks_txt.lines().take(16).collect::<Vec<_>>().join("\n")
    );
    assert!(rec.stop().success());
    b
}

/// The bundle names `func (file:line)` in stacks.txt (first among the
/// Python functions) and in stacks.folded, under `caller`, and that
/// function holds most of the Python-attributed samples.
fn assert_names(b: &PyBundle, version_prefix: &str, func: &str, file: &str, line: usize, caller: &str) {
    let kf = &b.meta["python"]["kernel_frames"];
    assert!(
        kf["version"].as_str().unwrap_or("").starts_with(version_prefix),
        "interpreter version: {kf}"
    );
    assert!(kf["samples"].as_u64().unwrap_or(0) > 0, "Python samples: {kf}");
    let want = format!("{func} ({file}:{line})");
    let top = b
        .stacks_txt
        .lines()
        .skip_while(|l| !l.starts_with("== Python functions"))
        .nth(1)
        .unwrap_or("");
    assert!(top.ends_with(&want), "first Python function is {want}: {top:?}");
    let (mut leak, mut python) = (0u64, 0u64);
    let mut under_caller = false;
    for l in b.folded.lines() {
        let (stack, n) = l.rsplit_once(' ').expect("frames COUNT");
        let n: u64 = n.parse().expect("count");
        if stack.contains(".py:") {
            python += n;
        }
        if stack.contains(&want) {
            leak += n;
            under_caller |=
                stack.contains(&format!("{caller} ({file}:")) && stack.find(caller) < stack.find(func);
        }
    }
    assert!(
        under_caller,
        "stacks.folded has {caller} above {want}:\n{}",
        b.folded
    );
    assert!(
        leak * 2 > python,
        "{want} holds most Python samples: {leak} of {python}\n{}",
        b.folded
    );
}

/// Writes the script and returns its canonical path (the one the
/// interpreter reports as co_filename).
fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.canonicalize().unwrap()
}

#[test]
fn python311_short_leak_is_named_with_its_line() {
    require_root();
    let dir = TempDir::new("pyk-scripts");
    let s = write_script(&dir.0, "short_leak.py", SHORT_LEAK);
    let b = bundle_of_killed(
        "pyk311",
        &["/usr/bin/python3", s.to_str().unwrap()],
        Some("leak_briefly"),
    );
    let line = line_of(SHORT_LEAK, "# the leak");
    assert_names(&b, "3.11", "leak_briefly", s.to_str().unwrap(), line, "main");
    // Mixed: the interpreter's native frames below, memset's above.
    let mixed = b.folded.lines().find(|l| l.contains("leak_briefly (")).unwrap();
    assert!(
        mixed.contains("Py_RunMain;") || mixed.contains("_start;"),
        "native root frames: {mixed}"
    );
    assert!(
        mixed.contains("memset"),
        "native leaf frames after the Python ones: {mixed}"
    );
}

#[test]
fn python_leak_in_a_thread_is_named() {
    require_root();
    let dir = TempDir::new("pyk-thread");
    let s = write_script(&dir.0, "thread_leak.py", THREAD_LEAK);
    let b = bundle_of_killed("pykthr", &["/usr/bin/python3", s.to_str().unwrap()], None);
    let line = line_of(THREAD_LEAK, "# the leak");
    assert_names(&b, "3.11", "leak_briefly", s.to_str().unwrap(), line, "worker");
}

/// Debian 13's python3.13 in a debootstrap root under target/tmp (made
/// once, 24 s and about 260 MB, then reused).
fn trixie_root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/trixie-python");
    if root.join("usr/bin/python3.13").exists() {
        return root;
    }
    let debootstrap = ensure_package("debootstrap", "debootstrap");
    let _ = std::fs::remove_dir_all(&root);
    eprintln!("debootstrap: Debian 13 with python3.13 into {}", root.display());
    let st = Command::new(debootstrap)
        .args(["--variant=minbase", "--include=python3.13", "trixie"])
        .arg(&root)
        .status()
        .expect("debootstrap");
    assert!(st.success(), "debootstrap trixie failed");
    root
}

#[test]
fn python313_from_debian_13_is_named() {
    require_root();
    let root = trixie_root();
    let inside = "/tmp/leaktrace-short-leak.py";
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::write(root.join(&inside[1..]), SHORT_LEAK).unwrap();
    let chroot = ensure_package("chroot", "coreutils");
    let b = bundle_of_killed(
        "pyk313",
        &[
            chroot.to_str().unwrap(),
            root.to_str().unwrap(),
            "/usr/bin/python3.13",
            inside,
        ],
        None,
    );
    let _ = std::fs::remove_file(root.join(&inside[1..]));
    let line = line_of(SHORT_LEAK, "# the leak");
    assert_names(&b, "3.13", "leak_briefly", inside, line, "main");
    assert_eq!(
        b.meta["python"]["kernel_frames"]["offsets"], "_Py_DebugOffsets",
        "3.13 is walked with its own debug offsets"
    );
}

/// The other versions with a table (3.8, 3.9, 3.10, 3.12), where this
/// machine has them (pyenv builds with a shared libpython: the embedded
/// case). A version that is not installed is said, not failed.
#[test]
fn python_versions_from_the_table_are_named() {
    require_root();
    let dir = TempDir::new("pyk-versions");
    let s = write_script(&dir.0, "short_leak.py", SHORT_LEAK);
    let line = line_of(SHORT_LEAK, "# the leak");
    let mut ran = 0;
    for v in ["3.8", "3.9", "3.10", "3.12"] {
        let bin = std::fs::read_dir("/root/.pyenv/versions")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{v}.")))
            })
            .map(|p| p.join(format!("bin/python{v}")))
            .find(|p| p.exists());
        let Some(bin) = bin else {
            eprintln!("CPython {v}: not installed here (no /root/.pyenv/versions/{v}.*), not tested");
            continue;
        };
        eprintln!("CPython {v}: {}", bin.display());
        let b = bundle_of_killed(
            &format!("pyk{}", v.replace('.', "")),
            &[bin.to_str().unwrap(), s.to_str().unwrap()],
            Some("leak_briefly"),
        );
        assert_names(&b, v, "leak_briefly", s.to_str().unwrap(), line, "main");
        ran += 1;
    }
    eprintln!("{ran} table versions tested");
}

/// A WSGI app whose request handler keeps every upload-sized buffer.
const APP: &str = r#"keep = []

def handle_upload(environ):
    body = b"\x02" * (3 << 20)  # the leak
    keep.append(body)
    return [b"ok\n"]

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return handle_upload(environ)
"#;

/// The first child of `pid` (a gunicorn worker of its master).
fn child_of(pid: u32, timeout: Duration) -> u32 {
    let deadline = Instant::now() + timeout;
    loop {
        let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(k) = kids.split_whitespace().next().and_then(|k| k.parse().ok()) {
            return k;
        }
        assert!(Instant::now() < deadline, "gunicorn started no worker");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One request; a refused or cut connection (the worker being replaced)
/// is fine.
fn poke(addr: &str) {
    use std::io::{Read, Write};
    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /upload HTTP/1.0\r\nHost: x\r\n\r\n");
        let _ = s.read_to_end(&mut Vec::new());
    }
}

#[test]
fn gunicorn_worker_handler_is_named() {
    require_root();
    let gunicorn = ensure_package("gunicorn", "gunicorn");
    let dir = TempDir::new("pyk-gunicorn");
    write_script(&dir.0, "leakapp.py", APP);
    let app_dir = dir.0.canonicalize().unwrap();
    let out = TempDir::new("pyk-gunicorn-rec");
    let rec = Record::start(&out.0.join("rec"), &["--interval", "0.5"]);
    let cg = MemCg::new("pykgun", 256 * MB);
    let port = 20000 + std::process::id() % 20000;
    let bind = format!("127.0.0.1:{port}");
    let mut cmd = cg.command(&[
        gunicorn.to_str().unwrap(),
        "--chdir",
        app_dir.to_str().unwrap(),
        "-w",
        "1",
        "-b",
        &bind,
        "leakapp:application",
    ]);
    let _master = Proc::spawn(&mut cmd);
    let worker = child_of(_master.pid(), Duration::from_secs(20));
    // Requests on loopback, a few per second, until the worker is killed
    // (bounded: at most 2 minutes).
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && std::path::Path::new(&format!("/proc/{worker}")).exists() {
        poke(&bind);
        std::thread::sleep(Duration::from_millis(100));
        if cg.oom_kills() > 0 {
            break;
        }
    }
    let (_inc, _ev, bdir) = rec.incident_and_bundle(worker);
    let stacks = std::fs::read_to_string(bdir.join("stacks.txt")).unwrap();
    let folded = std::fs::read_to_string(bdir.join("stacks.folded")).unwrap();
    eprintln!(
        "stacks.txt (head):\n{}",
        stacks.lines().take(14).collect::<Vec<_>>().join("\n")
    );
    let file = app_dir.join("leakapp.py");
    let want = format!(
        "handle_upload ({}:{})",
        file.display(),
        line_of(APP, "# the leak")
    );
    let top = stacks
        .lines()
        .skip_while(|l| !l.starts_with("== Python functions"))
        .nth(1)
        .unwrap_or("");
    assert!(top.ends_with(&want), "first Python function is {want}: {top:?}");
    assert!(
        folded
            .lines()
            .any(|l| l.contains("application (") && l.contains(&want)),
        "the handler under the WSGI entry point in stacks.folded:\n{folded}"
    );
    assert!(rec.stop().success());
}
