//! What a kill sets off (seed 000: the worker and the feeds process both
//! died). A parent forks an idle worker and a leaking one; when the leaker
//! is OOM-killed, the parent ends the idle one (SIGTERM) and exits 0. The
//! incident lists those exits, and its summary says so.
use std::time::Duration;

use leaktrace_tests::*;

const MB: u64 = 1 << 20;

const POOL: &str = r#"import os, signal, sys, time
def leak():
    keep = []
    while True:
        keep.append(b"\x01" * (8 << 20))
        time.sleep(0.05)
def idle():
    while True:
        time.sleep(1)
kids = []
for role in ("idle", "leak"):
    pid = os.fork()
    if pid == 0:
        time.sleep(1)
        leak() if role == "leak" else idle()
        os._exit(0)
    kids.append(pid)
print("ready", flush=True)
dead, status = os.wait()
time.sleep(0.3)
for k in kids:
    if k != dead:
        os.kill(k, signal.SIGTERM)
        os.waitpid(k, 0)
time.sleep(0.3)
sys.exit(0)
"#;

#[test]
fn the_exits_a_kill_sets_off_are_in_the_incident() {
    require_root();
    let dir = TempDir::new("aftermath");
    let script = dir.0.join("pool.py");
    std::fs::write(&script, POOL).unwrap();
    let w = Watch::start(&["--interval", "0.5"]);
    let cg = MemCg::new("aftermath", 192 * MB);
    let mut parent = Proc::spawn(&mut cg.command(&["/usr/bin/python3", script.to_str().unwrap()]));
    parent.wait_line("ready", Duration::from_secs(20));
    let ppid = parent.pid();
    let kids: Vec<u32> = std::fs::read_to_string(format!("/proc/{ppid}/task/{ppid}/children"))
        .unwrap()
        .split_whitespace()
        .filter_map(|k| k.parse().ok())
        .collect();
    assert_eq!(kids.len(), 2, "two workers: {kids:?}");
    let (idle, leaker) = (kids[0], kids[1]);
    let inc = wait_incident(&w, leaker, Duration::from_secs(60));
    let st = parent.wait();
    assert_eq!(
        st.code(),
        Some(0),
        "the parent exits 0 after ending the other worker"
    );
    eprintln!("summary: {}", inc["summary"]);
    eprintln!("after_kill_exits: {}", inc["after_kill_exits"]);
    let exits = inc["after_kill_exits"].as_array().expect("after_kill_exits");
    let of = |pid: u32| {
        exits
            .iter()
            .find(|e| e["pid"] == pid)
            .unwrap_or_else(|| panic!("{pid} in {exits:?}"))
    };
    let i = of(idle);
    assert_eq!(i["relation"], "sibling");
    assert_eq!(i["signal"], "SIGTERM");
    let p = of(ppid);
    assert_eq!(p["relation"], "parent");
    assert_eq!(p["exit_code"], 0);
    assert!(
        i["after_s"].as_f64().unwrap() < p["after_s"].as_f64().unwrap(),
        "in order"
    );
    let s = inc["summary"].as_str().unwrap();
    assert!(
        s.contains(&format!("the kill of {leaker} was followed by the exits of"))
            && s.contains(&format!("its parent {ppid} (exit 0")),
        "{s}"
    );
}
