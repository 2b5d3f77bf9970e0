//! leaktrace's memory at host scale (issue 23): next to 10,000 idle
//! processes, `watch --json --top 20` for 30 s must keep its peak RSS
//! (VmHWM, the kernel's own high-water mark) under 48 MiB. Memory, unlike
//! CPU time, does not depend on what else the machine runs, so this is a
//! bound CI can keep. docs/performance.md has the measured curve.
//! Run through `cargo xtask test` (serially, as root).
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const PROCS: usize = 10_000;
const RUN_S: u64 = 30;
const BOUND_MIB: f64 = 48.0;

/// `lt-helper idle` and its children, in their own process group: on drop
/// (a failed assertion too) the whole group is SIGKILLed and the parent
/// reaped; the children die with it (and by PR_SET_PDEATHSIG) and the
/// kernel's reaper takes them.
struct IdleGroup(Child, usize);

impl IdleGroup {
    fn start(n: usize) -> Self {
        use std::os::unix::process::CommandExt;
        let child = Command::new(HELPER)
            .args(["idle", &n.to_string(), "600"])
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning lt-helper idle");
        let mut g = Self(child, processes());
        let mut line = String::new();
        BufReader::new(g.0.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("reading lt-helper");
        assert_eq!(line.trim(), "ready", "could not start {n} idle processes");
        g
    }
}

impl Drop for IdleGroup {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this test created (its
        // leader is our child, so the group id is its pid).
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
        // Let the children go before the next test counts processes.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && processes() > self.1 + 500 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn processes() -> usize {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
}

/// How many more processes this host allows: pid_max and the cgroup's
/// pids.max, whichever is smaller, minus what runs now.
fn room_for_processes() -> usize {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
    };
    let pid_max = read("/proc/sys/kernel/pid_max").unwrap_or(32_768);
    let threads_max = read("/proc/sys/kernel/threads-max").unwrap_or(usize::MAX);
    let pids_max = ["/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"]
        .iter()
        .find_map(|p| read(p))
        .unwrap_or(usize::MAX);
    pid_max.min(threads_max).min(pids_max).saturating_sub(processes())
}

/// Our child process with this comm.
fn child_named(comm: &str) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok())
        .find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (name == comm && ppid == me).then_some(pid)
        })
}

fn status_kib(pid: u32, key: &str) -> u64 {
    status_bytes(pid, key) / 1024
}

#[test]
fn peak_rss_next_to_10000_idle_processes_stays_under_48_mib() {
    require_root();
    let room = room_for_processes();
    assert!(
        room > PROCS + 1000,
        "this host allows {room} more processes: {PROCS} idle ones do not fit (pid_max, pids.max)"
    );
    let _idle = IdleGroup::start(PROCS);
    let w = Watch::start_default(&["--top", "20", "--interval", "1"]);
    // The kernel keeps 15 bytes of a command's name.
    let bin = leaktrace_bin();
    let name = bin.file_name().and_then(|n| n.to_str()).unwrap_or("leaktrace");
    let pid = child_named(&name[..name.len().min(15)]).expect("leaktrace's pid");
    let t0 = Instant::now();
    let mut worst = (0u64, 0u64);
    let mut seen = 0;
    while t0.elapsed() < Duration::from_secs(RUN_S) {
        std::thread::sleep(Duration::from_secs(1));
        let (rss, hwm) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
        worst = (worst.0.max(rss), worst.1.max(hwm));
        seen = w.sample_count();
    }
    let last = w.samples().pop().expect("samples");
    let total = last["processes_total"].as_u64().unwrap_or(0) as usize;
    let hwm_mib = status_kib(pid, "VmHWM") as f64 / 1024.0;
    eprintln!(
        "scale_memory: {total} processes, {seen} samples in {RUN_S} s, VmHWM {hwm_mib:.1} MiB, \
         largest VmRSS seen {:.1} MiB",
        worst.0 as f64 / 1024.0
    );
    assert!(
        total >= PROCS,
        "leaktrace saw {total} processes, not the {PROCS} idle ones"
    );
    assert!(seen >= RUN_S as usize / 2, "only {seen} samples in {RUN_S} s");
    assert!(
        hwm_mib < BOUND_MIB,
        "peak RSS (VmHWM) {hwm_mib:.1} MiB next to {total} processes: the bound is {BOUND_MIB} MiB \
         (docs/performance.md, \"Memory\")"
    );
    w.stop();
}
