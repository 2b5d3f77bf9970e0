//! Copy-on-write copying in a fork pool (seed 003), against the real kernel:
//! the workers rewrite the pages they inherited, so their RSS stays flat
//! while the memcg grows. leaktrace must show the workers and the group as
//! `growing` at the memcg's rate, and size the group by its Pss, not by a
//! sum of RSS. Run serially, as root.
use std::time::{Duration, Instant};

use leaktrace_tests::*;
use serde_json::Value;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const CHILDREN: usize = 4;
const POOL_MIB: u64 = 640;
const COPY_MIB_PER_SEC: f64 = 8.0;
/// Each worker copies for this long (240 MiB of the 640), then holds: the
/// rest stays shared.
const COPY_SECS: f64 = 30.0;

/// The memcg's usage now (v1 memory.usage_in_bytes, v2 memory.current).
fn usage(cg: &MemCg) -> u64 {
    let file = if cg.version == 1 {
        "memory.usage_in_bytes"
    } else {
        "memory.current"
    };
    let text = std::fs::read_to_string(cg.dir.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{file}: {text:?}: {e}"))
}

/// The Pss line of /proc/<pid>/smaps_rollup, in bytes.
fn pss(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).expect("smaps_rollup");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("Pss:")?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .expect("a Pss line")
        * 1024
}

fn group(sample: &Value, leader: u32) -> Option<Value> {
    sample["groups"]
        .as_array()?
        .iter()
        .find(|g| g["leader_pid"] == leader)
        .cloned()
}

#[test]
fn a_pool_copying_inherited_pages_is_growing_and_sized_by_pss() {
    require_root();
    let w = Watch::start(&[]);
    // Room for the pool and every copy: it must not OOM.
    let cg = MemCg::new("cowpool", (POOL_MIB * (CHILDREN as u64 + 2)) << 20);
    let (n, mib, rate, secs) = (
        CHILDREN.to_string(),
        POOL_MIB.to_string(),
        COPY_MIB_PER_SEC.to_string(),
        COPY_SECS.to_string(),
    );
    let mut pool = Proc::spawn(&mut cg.command(&[HELPER, "cowpool", &n, &mib, &rate, &secs]));
    let before = pool.wait_line("ready", Duration::from_secs(30));
    let ready_at = Instant::now();
    let kids = pool_children(&before);
    assert_eq!(kids.len(), CHILDREN);
    let leader = pool.pid();

    check_pool(&w, &cg, leader, &kids, ready_at, (COPY_MIB_PER_SEC * MIB, 0.25), COPY_SECS);
    drop(pool);
    drop(cg);
    assert!(w.stop().success());
}

/// seed 003 with the real thing: a Python parent builds a list of 10
/// million floats (about 330 MiB), then a `ProcessPoolExecutor` forks 4
/// workers that walk its first half. Reading an object writes its
/// reference count, so each worker copies the pages it walks: 128k
/// floats/s is 4 MiB/s of float pages per worker (a float takes a 32-byte
/// block: pymalloc aligns to 16), for 40 s; the
/// second half stays shared.
const POOL_PY: &str = r#"
import sys, time, os
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
N, RATE, WORKERS = 10_485_760, 131_072, 4
data = [float(i) for i in range(N)]

def walk(k):
    t0, i, step = time.monotonic(), 0, RATE // 20
    while i < N // 2:
        for j in range(i, min(i + step, N // 2)):
            x = data[j]
        i += step
        d = t0 + i / RATE - time.monotonic()
        if d > 0:
            time.sleep(d)
    time.sleep(3600)

if __name__ == "__main__":
    with ProcessPoolExecutor(WORKERS, mp_context=mp.get_context("fork")) as ex:
        futs = [ex.submit(walk, k) for k in range(WORKERS)]
        time.sleep(0.5)
        print("ready", flush=True)
        for f in futs:
            f.result()
"#;

#[test]
fn a_python_process_pool_walking_a_shared_list_is_growing_and_sized_by_pss() {
    require_root();
    let w = Watch::start(&[]);
    let cg = MemCg::new("pypool", 3 << 30);
    let mut pool = Proc::spawn(&mut cg.command(&["python3", "-c", POOL_PY]));
    pool.wait_line("ready", Duration::from_secs(60));
    let ready_at = Instant::now();
    let leader = pool.pid();
    let kids: Vec<u32> = cg
        .pids()
        .into_iter()
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next()?.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(leader)
        })
        .collect();
    assert_eq!(kids.len(), 4, "the pool's workers: {kids:?}");
    let per_worker = 131_072.0 * 32.0;
    check_pool(&w, &cg, leader, &kids, ready_at, (per_worker, 0.25), 40.0);
    drop(pool);
    drop(cg);
    assert!(w.stop().success());
}

/// What a pool copying its inherited pages must look like: the memcg grows
/// at `per_worker` per worker; every worker and the group are `growing` at
/// the memcg's rate (within 25%) by USS and Pss; once the copying (from
/// `ready_at`, `copy_secs` long) is over, the group's size is its Pss.
fn check_pool(
    w: &Watch,
    cg: &MemCg,
    leader: u32,
    kids: &[u32],
    ready_at: Instant,
    (per_worker, workload_tol): (f64, f64),
    copy_secs: f64,
) {
    // The copying lasts COPY_SECS. Let the reads (3 s rounds)
    // build a history, then measure the memcg over 12 s while it goes on.
    std::thread::sleep(Duration::from_secs(14).saturating_sub(ready_at.elapsed()));
    let (u0, t0) = (usage(cg), Instant::now());
    std::thread::sleep(Duration::from_secs(12));
    let (u1, dt) = (usage(cg), t0.elapsed().as_secs_f64());
    let memcg_rate = (u1 as f64 - u0 as f64) / dt;
    let s = w.samples().pop().expect("a sample");
    let expect = per_worker * kids.len() as f64;
    eprintln!(
        "memcg grew {:.1} MiB/s (copying {:.1} MiB/s)",
        memcg_rate / MIB,
        expect / MIB
    );
    assert!(
        rate_within(memcg_rate, expect, workload_tol),
        "the memcg must grow by the copies (the workload, not leaktrace)"
    );

    for &k in kids {
        let r = row(&s, k).unwrap_or_else(|| panic!("no row for worker {k}"));
        eprintln!(
            "worker {k}: trend {} growth {:.1} MiB/s of {} rss {:.0} MiB uss {:.0} MiB",
            r["trend"],
            r["growth_bytes_per_sec"].as_f64().unwrap_or(0.0) / MIB,
            r["growth_of"],
            r["rss_bytes"].as_f64().unwrap_or(0.0) / MIB,
            r["uss_bytes"].as_f64().unwrap_or(0.0) / MIB
        );
        assert_eq!(r["trend"], "growing", "worker {k} copies its pages: {r}");
        assert_eq!(r["growth_of"], "uss", "its RSS is flat, its USS grows: {r}");
        let g = r["growth_bytes_per_sec"].as_f64().expect("growth");
        assert!(
            rate_within(g, memcg_rate / kids.len() as f64, 0.25),
            "worker {k}'s rate vs the memcg's share: {r}"
        );
    }
    let g = group(&s, leader).unwrap_or_else(|| panic!("no group led by {leader}: {}", s["groups"]));
    eprintln!("group: {g}");
    assert_eq!(g["members"], kids.len() + 1, "{g}");
    assert_eq!(g["trend"], "growing", "{g}");
    assert_eq!(g["growth_of"], "pss", "{g}");
    let rate = g["growth_bytes_per_sec"].as_f64().expect("group growth");
    assert!(
        rate_within(rate, memcg_rate, 0.25),
        "group {:.1} MiB/s vs memcg {:.1} MiB/s",
        rate / MIB,
        memcg_rate / MIB
    );

    // Once the copying is over, the group's size is its Pss: within 10% of
    // the sum the test reads itself, far below the RSS sum (most of the
    // parent's pages are still shared by all).
    std::thread::sleep(Duration::from_secs_f64(copy_secs + 8.0).saturating_sub(ready_at.elapsed()));
    let mut members = kids.to_vec();
    members.push(leader);
    let truth: u64 = members.iter().map(|&p| pss(p)).sum();
    w.wait_samples(1);
    let s = w.samples().pop().expect("a sample");
    let g = group(&s, leader).expect("the group");
    let shown = g["pss_bytes"]
        .as_f64()
        .unwrap_or_else(|| panic!("no pss_bytes: {g}"));
    let rss_sum = g["rss_bytes"].as_f64().expect("rss_bytes");
    eprintln!(
        "group Pss shown {:.0} MiB, smaps_rollup sum {:.0} MiB, RSS sum {:.0} MiB",
        shown / MIB,
        truth as f64 / MIB,
        rss_sum / MIB
    );
    assert!(within(shown, truth as f64, 0.10), "{g}");
    assert!(
        rss_sum > 1.5 * shown,
        "the RSS sum double counts the shared pages: {g}"
    );
}
