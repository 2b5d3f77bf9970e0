//! An incident names its victim by what the victim cannot fake (issue 21):
//! its executable next to a comm it chose, and its pid inside its own PID
//! namespace next to the host's. Real memcg OOM kills, run serially as root.
use std::time::Duration;

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

/// Renames its main thread "systemd" every 10 ms while it grows 50 MiB/s.
const IMPOSTOR_PY: &str = r#"
import ctypes, time
libc = ctypes.CDLL(None)
keep = []
print("ready", flush=True)
while True:
    libc.prctl(15, b"systemd", 0, 0, 0)
    keep.append(bytearray(1 << 20))
    time.sleep(0.02)
"#;

#[test]
fn a_victim_calling_itself_systemd_is_named_by_its_executable() {
    require_root();
    let w = Watch::start(&["--interval", "1"]);
    let cg = MemCg::new("impostor", 256 * MB);
    let mut p = Proc::spawn(&mut cg.command(&["python3", "-c", IMPOSTOR_PY]));
    p.wait_line("ready", Duration::from_secs(20));
    let exe = std::fs::read_link(format!("/proc/{}/exe", p.pid())).unwrap();
    p.wait();
    let inc = wait_incident(&w, p.pid(), Duration::from_secs(30));
    let v = &inc["victim"];
    eprintln!("summary: {}", inc["summary"]);
    assert_eq!(v["comm"], "systemd", "{v}");
    assert_eq!(v["exe"], exe.to_str().unwrap(), "{v}");
    let s = inc["summary"].as_str().unwrap();
    assert!(s.contains(&format!("(systemd, running {})", exe.display())), "{s}");
    drop(cg);
    assert!(w.stop().success());
}

#[test]
fn a_victim_in_a_pid_namespace_is_shown_by_both_pids() {
    require_root();
    let w = Watch::start(&["--interval", "1"]);
    let cg = MemCg::new("pidns", 128 * MB);
    // unshare forks: the helper is pid 1 of the new namespace; 32 MiB/s
    // reaches the limit in about 4 s, after leaktrace has read its /proc.
    let mut u = Proc::spawn(&mut cg.command(&["unshare", "--pid", "--fork", HELPER, "grow", "32", "10", "5"]));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let child = loop {
        let kids: Vec<u32> = cg.pids().into_iter().filter(|&p| p != u.pid()).collect();
        if let Some(&k) = kids.first() {
            break k;
        }
        assert!(std::time::Instant::now() < deadline, "no child of unshare");
        std::thread::sleep(Duration::from_millis(50));
    };
    let st = std::fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
    assert!(st.contains("NSpid:\t") && st.lines().any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")), "{st}");
    u.wait();
    let inc = wait_incident(&w, child, Duration::from_secs(30));
    eprintln!("summary: {}", inc["summary"]);
    assert_eq!(inc["victim"]["ns_pid"], 1, "{}", inc["victim"]);
    let s = inc["summary"].as_str().unwrap();
    assert!(s.contains(&format!("killed pid {child} (")) && s.contains("pid 1 in its namespace"), "{s}");
    drop(cg);
    assert!(w.stop().success());
}
