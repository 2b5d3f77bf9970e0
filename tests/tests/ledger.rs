//! The host memory ledger names memory that no process holds: a tmpfs
//! filled by a process that then exits, and a million empty files (slab).
use std::{process::Command, time::Duration};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

fn ledger_of(s: &Value) -> Option<&Value> {
    s.get("ledger").filter(|l| !l.is_null())
}

#[test]
fn a_filled_tmpfs_held_by_no_process_is_named() {
    require_root();
    let t = Tmpfs::mount("ltest-ledger", "1g");
    let mnt = t.dir.0.canonicalize().unwrap();
    let w = Watch::start(&["--interval", "1"]);
    w.wait_for(Duration::from_secs(30), "a first ledger", |l| {
        l.iter().any(|s| ledger_of(s).is_some())
    });
    // 600 MiB written by a process that then exits.
    let st = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=600", "status=none"])
        .arg(format!("of={}", mnt.join("blob").display()))
        .status()
        .unwrap();
    assert!(st.success());
    let name = mnt.to_string_lossy().into_owned();
    w.wait_for(Duration::from_secs(40), "the tmpfs finding", |l| {
        l.iter().filter_map(ledger_of).any(|led| {
            led["findings"].as_array().is_some_and(|f| {
                f.iter()
                    .any(|x| x.as_str().unwrap_or("").contains(&format!("tmpfs {name} grew")))
            })
        })
    });
    let led = w
        .samples()
        .iter()
        .rev()
        .find_map(|s| ledger_of(s).cloned())
        .unwrap();
    eprintln!("ledger findings: {}", led["findings"]);
    let m = led["tmpfs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} in the ledger's tmpfs: {}", led["tmpfs"]));
    let b = m["bytes"].as_u64().unwrap();
    assert!(within(b as f64, (600 * MB) as f64, 0.10), "size within 10%: {b}");
    let f = led["findings"].to_string();
    assert!(f.contains("mapped by no process"), "held by no process: {f}");
    let parts = led["parts"].as_array().unwrap();
    let total: u64 = parts
        .iter()
        .filter(|p| p["name"] != "shmem_unmapped")
        .map(|p| p["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total,
        led["mem_total_bytes"].as_u64().unwrap(),
        "parts add up to MemTotal"
    );
    drop(w);
}

#[test]
fn a_million_files_show_as_slab_growth_with_the_caches_named() {
    require_root();
    let t = Tmpfs::mount("ltest-files", "64m");
    let w = Watch::start(&["--interval", "1"]);
    w.wait_for(Duration::from_secs(30), "a first ledger", |l| {
        l.iter().any(|s| ledger_of(s).is_some())
    });
    let out = Command::new(HELPER)
        .args(["files", t.dir.0.to_str().unwrap(), "1000000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    w.wait_for(Duration::from_secs(40), "the slab finding", |l| {
        l.iter()
            .filter_map(ledger_of)
            .any(|led| led["findings"].to_string().contains("grew"))
    });
    let led = w
        .samples()
        .iter()
        .rev()
        .find_map(|s| {
            ledger_of(s)
                .filter(|l| l["findings"].to_string().contains("slab grew"))
                .cloned()
        })
        .expect("a slab finding");
    let f = led["findings"].to_string();
    eprintln!("ledger findings: {f}");
    assert!(
        f.contains("shmem_inode_cache") || f.contains("dentry"),
        "the largest caches named: {f}"
    );
    drop(w);
    // The files go with the mount; the slab is freed on umount.
    drop(t);
}

/// A memcg OOM whose memory is mostly a tmpfs file that no process holds
/// (issue 20): the incident reads the kernel's own "Memory cgroup stats"
/// block, names shmem as the part a kill cannot free, and sizes it within
/// 10%.
#[test]
fn an_oom_in_a_memcg_full_of_shmem_says_so() {
    require_root();
    let t = Tmpfs::mount("ltest-oomshm", "1g");
    let mnt = t.dir.0.canonicalize().unwrap();
    let w = Watch::start(&["--interval", "1"]);
    let cg = MemCg::new("oomshm", 256 * MB);
    // 180 MiB written into the tmpfs from inside the memcg: charged to it
    // as shmem, and held by no process once dd exits.
    let st = cg
        .command(&["dd", "if=/dev/zero", "bs=1M", "count=180", "status=none"])
        .arg(format!("of={}", mnt.join("blob").display()))
        .status()
        .unwrap();
    assert!(st.success());
    let mut g = Proc::spawn(&mut cg.command(&[HELPER, "grow", "64", "4", "5"]));
    g.wait();
    let inc = wait_incident(&w, g.pid(), Duration::from_secs(30));
    let m = &inc["memory_at_oom"];
    eprintln!("summary: {}\nmemory_at_oom: {m}\nlines: {}", inc["summary"], inc["report_lines"]);
    assert_eq!(m["scope"], "memcg", "{m}");
    let shm = m["shmem_bytes"].as_u64().unwrap_or_else(|| panic!("no shmem_bytes: {m}"));
    assert!(within(shm as f64, (180 * MB) as f64, 0.10), "shmem {shm}: {m}");
    let anon = m["anon_bytes"].as_u64().unwrap();
    assert!(anon < 100 * MB, "the grower's anon, killed at the limit: {m}");
    let s = inc["summary"].as_str().unwrap();
    assert!(s.contains("% shmem (tmpfs or shared memory)"), "{s}");
    drop(cg);
    drop(t);
    assert!(w.stop().success());
}

/// A deleted file still held open in a tmpfs (issue 20): `ls` no longer
/// shows it and no process maps it, but its 200 MiB stay. The ledger names
/// the file, the process that holds it and its size within 10%.
#[test]
fn a_deleted_file_held_open_is_named_with_its_holder() {
    require_root();
    let t = Tmpfs::mount("ltest-held", "1g");
    let mnt = t.dir.0.canonicalize().unwrap();
    let blob = mnt.join("held-blob");
    let st = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=200", "status=none"])
        .arg(format!("of={}", blob.display()))
        .status()
        .unwrap();
    assert!(st.success());
    // Opens it as fd 3, deletes it, and holds it while it sleeps.
    let mut holder = Proc::spawn(
        Command::new("/bin/sh")
            .args(["-c", "exec 3< \"$0\"; rm \"$0\"; echo ready; exec sleep 120"])
            .arg(&blob),
    );
    holder.wait_line("ready", Duration::from_secs(10));
    assert!(!blob.exists());
    let w = Watch::start(&["--interval", "1"]);
    let pid = holder.pid();
    w.wait_for(Duration::from_secs(60), "the held file in the ledger", |l| {
        l.iter().filter_map(ledger_of).any(|led| {
            led["held_deleted"]
                .as_array()
                .is_some_and(|h| h.iter().any(|f| f["pid"] == pid))
        })
    });
    let led = w
        .samples()
        .iter()
        .rev()
        .find_map(|s| ledger_of(s).cloned().filter(|l| l["held_deleted"].as_array().is_some_and(|h| !h.is_empty())))
        .unwrap();
    let f = led["held_deleted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["pid"] == pid)
        .unwrap()
        .clone();
    eprintln!("held: {f}\nfindings: {}", led["findings"]);
    assert_eq!(f["path"], blob.to_str().unwrap(), "{f}");
    assert_eq!(f["mount"], mnt.to_str().unwrap(), "{f}");
    assert_eq!(f["comm"], "sleep", "{f}");
    let b = f["bytes"].as_u64().unwrap();
    assert!(within(b as f64, (200 * MB) as f64, 0.10), "size within 10%: {b}");
    let text = led["findings"].to_string();
    assert!(
        text.contains("deleted files still open hold") && text.contains(&format!("open in pid {pid} (sleep)")),
        "{text}"
    );
    drop(holder);
    drop(t);
    assert!(w.stop().success());
}
