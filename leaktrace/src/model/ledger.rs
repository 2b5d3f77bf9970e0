//! The host memory ledger: MemTotal accounted for, part by part, each with
//! a growth rate like a process, and the sentences an on-call engineer
//! needs when a part that no process owns grows ("tmpfs /dev/shm grew
//! 2.0 GiB in 40 s, held by no process"). Pure code over
//! `host::ledger::Reading`s; docs/ledger.md says where each number comes
//! from.
use std::collections::{BTreeMap, VecDeque};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{fmt::bytes, host::ledger::Reading};

/// How far back growth is measured.
pub const WINDOW_SECS: f64 = 120.0;
/// A part that grew at least this much, at least this fast, in the window
/// is a finding.
pub const FINDING_BYTES: u64 = 64 << 20;
pub const FINDING_RATE: f64 = 256.0 * 1024.0;
/// tmpfs mounts and slab caches listed (the biggest).
pub const TOP_MOUNTS: usize = 10;
pub const TOP_CACHES: usize = 10;

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct LedgerPart {
    /// free, process_anon, page_cache, shmem, shmem_unmapped,
    /// slab_reclaimable, slab_unreclaimable, kernel_stack, page_tables,
    /// vmalloc, percpu, hugetlb, unexplained.
    pub name: String,
    pub bytes: u64,
    /// Over the last WINDOW_SECS (0 until there are two readings).
    pub growth_bytes_per_sec: f64,
    /// Memory that processes' RSS already counts (anon, page cache).
    pub held_by_processes: bool,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct LedgerItem {
    /// A tmpfs mount point or a slab cache name (capped, any bytes).
    pub name: String,
    pub bytes: u64,
    pub growth_bytes_per_sec: f64,
}

#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct Ledger {
    pub ts_ms: u64,
    pub mem_total_bytes: u64,
    pub parts: Vec<LedgerPart>,
    /// The biggest tmpfs mounts by used bytes (shmem by mount), and how
    /// many were not listed or not read.
    pub tmpfs: Vec<LedgerItem>,
    pub tmpfs_not_listed: usize,
    /// SysV shared memory: segments and bytes, and those no process has
    /// attached.
    pub sysv_shm_segments: u64,
    pub sysv_shm_bytes: u64,
    pub sysv_shm_unattached_bytes: u64,
    /// The biggest slab caches.
    pub slab_caches: Vec<LedgerItem>,
    /// Deleted files still open in a tmpfs or memfd (the newest walk of
    /// the descriptors, at most 90 s old), biggest first.
    #[serde(default)]
    pub held_deleted: Vec<HeldDeleted>,
    /// That walk stopped at its bound (host::held_deleted::MAX_FDS links).
    #[serde(default)]
    pub held_deleted_truncated: bool,
    /// What grew that no process holds, in words (escaped by the sinks).
    pub findings: Vec<String>,
}

/// A deleted file that a process still holds open: its pages stay until
/// the last descriptor closes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct HeldDeleted {
    pub pid: u32,
    pub comm: String,
    pub path: String,
    /// The tmpfs mount, or "memfd".
    pub mount: String,
    pub bytes: u64,
}

/// A walk's results are shown this long.
const HELD_KEEP_S: f64 = 90.0;

/// Readings of the last WINDOW_SECS, reduced to named values.
#[derive(Default)]
pub struct LedgerHistory {
    past: VecDeque<(f64, BTreeMap<String, u64>)>,
    /// The newest walk for deleted files held open, and when.
    held: Option<(f64, crate::host::held_deleted::Scan)>,
}

fn get(m: &BTreeMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

/// The parts of MemTotal, from meminfo and the processes' shmem RSS.
fn parts(r: &Reading, proc_shmem: u64) -> Vec<(&'static str, u64, bool)> {
    let m = &r.meminfo;
    let total = get(m, "MemTotal");
    let shmem = get(m, "Shmem");
    let hugetlb = m
        .get("Hugetlb")
        .copied()
        .unwrap_or_else(|| get(m, "HugePages_Total") * get(m, "Hugepagesize"));
    let mut v = vec![
        ("free", get(m, "MemFree"), false),
        ("process_anon", get(m, "AnonPages"), true),
        (
            "page_cache",
            (get(m, "Cached") + get(m, "Buffers")).saturating_sub(shmem),
            true,
        ),
        ("shmem", shmem, false),
        ("slab_reclaimable", get(m, "SReclaimable"), false),
        ("slab_unreclaimable", get(m, "SUnreclaim"), false),
        ("kernel_stack", get(m, "KernelStack"), false),
        (
            "page_tables",
            get(m, "PageTables") + get(m, "SecPageTables"),
            false,
        ),
        ("vmalloc", get(m, "VmallocUsed"), false),
        ("percpu", get(m, "Percpu"), false),
        ("hugetlb", hugetlb, false),
    ];
    let known: u64 = v.iter().map(|p| p.1).sum();
    v.push(("unexplained", total.saturating_sub(known), false));
    // Shmem that no process maps: at least this much (processes' shmem
    // RSS double counts what several map, so this is a lower bound).
    v.push(("shmem_unmapped", shmem.saturating_sub(proc_shmem), false));
    v
}

impl LedgerHistory {
    /// The ledger of reading `r` at `t` (seconds), with growth against the
    /// oldest reading within the window.
    pub fn update(&mut self, t: f64, ts_ms: u64, r: &Reading, proc_shmem: u64) -> Ledger {
        let ps = parts(r, proc_shmem);
        let mut now: BTreeMap<String, u64> = ps.iter().map(|p| (p.0.to_string(), p.1)).collect();
        let mut mounts = r.tmpfs.clone();
        mounts.sort_by(|a, b| b.1.cmp(&a.1));
        let mut caches = r.slab.clone();
        caches.sort_by(|a, b| b.1.cmp(&a.1));
        for (n, b) in &r.tmpfs {
            now.insert(format!("tmpfs:{n}"), *b);
        }
        // Every cache is remembered (a few hundred), so the one that grew
        // is found even if it was small before.
        for (n, b) in &r.slab {
            now.insert(format!("slab:{n}"), *b);
        }
        while self.past.front().is_some_and(|(t0, _)| t - t0 > WINDOW_SECS) {
            self.past.pop_front();
        }
        let old = self.past.front().cloned();
        self.past.push_back((t, now.clone()));
        let rate = |k: &str| -> f64 {
            match &old {
                Some((t0, m)) if t > *t0 => (get(&now, k) as f64 - get(m, k) as f64) / (t - t0),
                _ => 0.0,
            }
        };
        let item = |prefix: &str, (n, b): &(String, u64)| LedgerItem {
            name: n.clone(),
            bytes: *b,
            growth_bytes_per_sec: rate(&format!("{prefix}{n}")),
        };
        let mut l = Ledger {
            ts_ms,
            mem_total_bytes: get(&r.meminfo, "MemTotal"),
            parts: ps
                .iter()
                .map(|(n, b, held)| LedgerPart {
                    name: n.to_string(),
                    bytes: *b,
                    growth_bytes_per_sec: rate(n),
                    held_by_processes: *held,
                })
                .collect(),
            tmpfs: mounts
                .iter()
                .take(TOP_MOUNTS)
                .map(|m| item("tmpfs:", m))
                .collect(),
            tmpfs_not_listed: mounts.len().saturating_sub(TOP_MOUNTS) + r.tmpfs_not_read,
            sysv_shm_segments: r.sysv.0,
            sysv_shm_bytes: r.sysv.1,
            sysv_shm_unattached_bytes: r.sysv.3,
            slab_caches: caches.iter().take(TOP_CACHES).map(|c| item("slab:", c)).collect(),
            held_deleted: Vec::new(),
            held_deleted_truncated: false,
            findings: Vec::new(),
        };
        if let Some((t0, m)) = &old {
            l.findings = findings(&l, &now, m, t - t0);
        }
        self.add_held(t, r, &mut l);
        l
    }
}

impl LedgerHistory {
    /// The newest walk for deleted files held open, and a finding when they
    /// hold FINDING_BYTES or more: "deleted files still open hold 600.0 MiB
    /// of shmem: /mnt/x/blob 600.0 MiB, open in pid 123 (sleep)".
    fn add_held(&mut self, t: f64, r: &Reading, l: &mut Ledger) {
        if let Some(s) = &r.held {
            self.held = Some((t, s.clone()));
        }
        let Some((_, s)) = self.held.as_ref().filter(|(at, _)| t - at <= HELD_KEEP_S) else {
            return;
        };
        l.held_deleted = s
            .files
            .iter()
            .map(|f| HeldDeleted {
                pid: f.pid,
                comm: f.comm.clone(),
                path: f.path.clone(),
                mount: f.mount.clone(),
                bytes: f.bytes,
            })
            .collect();
        l.held_deleted_truncated = s.truncated;
        let total: u64 = s.files.iter().map(|f| f.bytes).sum();
        if total < FINDING_BYTES {
            return;
        }
        let each: Vec<String> = s
            .files
            .iter()
            .take(3)
            .map(|f| format!("{} {}, open in pid {} ({})", f.path, bytes(f.bytes as f64), f.pid, f.comm))
            .collect();
        l.findings.push(format!(
            "deleted files still open hold {} of shmem: {}",
            bytes(total as f64),
            each.join("; ")
        ));
    }
}

/// Grew enough to say so?
fn grew(now: u64, before: u64, secs: f64) -> Option<u64> {
    let d = now.saturating_sub(before);
    (secs > 0.0 && d >= FINDING_BYTES && d as f64 / secs >= FINDING_RATE).then_some(d)
}

fn findings(
    l: &Ledger,
    now: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
    secs: f64,
) -> Vec<String> {
    let mut out = Vec::new();
    let unmapped = l
        .parts
        .iter()
        .find(|p| p.name == "shmem_unmapped")
        .map_or(0, |p| p.bytes);
    for (k, b) in now.iter().filter(|(k, _)| k.starts_with("tmpfs:")) {
        if let Some(d) = grew(*b, get(before, k), secs) {
            let held = if unmapped >= d / 2 {
                format!("; {} of shmem is mapped by no process", bytes(unmapped as f64))
            } else {
                String::new()
            };
            out.push(format!(
                "tmpfs {} grew {} in {secs:.0} s to {}{held}",
                &k["tmpfs:".len()..],
                bytes(d as f64),
                bytes(*b as f64)
            ));
        }
    }
    let d = |k: &str| get(now, k).saturating_sub(get(before, k));
    let (du, dr) = (d("slab_unreclaimable"), d("slab_reclaimable"));
    if grew(du + dr, 0, secs).is_some() {
        let mut by: Vec<(&str, u64)> = now
            .iter()
            .filter_map(|(k, b)| Some((k.strip_prefix("slab:")?, b.saturating_sub(get(before, k)))))
            .filter(|x| x.1 > 0)
            .collect();
        by.sort_by(|a, b| b.1.cmp(&a.1));
        let names: Vec<String> = by
            .iter()
            .take(3)
            .map(|(n, g)| format!("{n} +{}", bytes(*g as f64)))
            .collect();
        out.push(format!(
            "slab grew {} in {secs:.0} s (SUnreclaim +{}, SReclaimable +{}): {}",
            bytes((du + dr) as f64),
            bytes(du as f64),
            bytes(dr as f64),
            names.join(", ")
        ));
    }
    let tmpfs_said = !out.is_empty() && out[0].starts_with("tmpfs ");
    for part in [
        "shmem_unmapped",
        "page_tables",
        "vmalloc",
        "percpu",
        "kernel_stack",
        "unexplained",
    ] {
        if part == "shmem_unmapped" && tmpfs_said {
            continue;
        }
        if let Some(d) = grew(get(now, part), get(before, part), secs) {
            out.push(format!(
                "{part} grew {} in {secs:.0} s to {}",
                bytes(d as f64),
                bytes(get(now, part) as f64)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(shmem_mib: u64, tmp_mib: u64, dentry_mib: u64) -> Reading {
        let mib = 1u64 << 20;
        let mut r = Reading::default();
        for (k, v) in [
            ("MemTotal", 24576),
            ("MemFree", 20000 - shmem_mib - dentry_mib),
            ("AnonPages", 1000),
            ("Cached", 2000 + shmem_mib),
            ("Shmem", shmem_mib),
            ("SUnreclaim", 100 + dentry_mib),
            ("SReclaimable", 50),
        ] {
            r.meminfo.insert(k.into(), v * mib);
        }
        r.tmpfs = vec![("/dev/shm".into(), 0), ("/mnt/ltest".into(), tmp_mib * mib)];
        r.slab = vec![
            ("dentry".into(), dentry_mib * mib),
            ("kmalloc-64".into(), 10 * mib),
        ];
        r
    }

    #[test]
    fn a_tmpfs_that_no_process_maps_is_a_finding() {
        let mut h = LedgerHistory::default();
        let l0 = h.update(0.0, 0, &reading(0, 0, 0), 0);
        assert!(l0.findings.is_empty());
        let l = h.update(40.0, 40_000, &reading(2048, 2048, 0), 8 << 20);
        assert_eq!(l.tmpfs[0].name, "/mnt/ltest");
        assert_eq!(l.tmpfs[0].bytes, 2048 << 20);
        assert!((l.tmpfs[0].growth_bytes_per_sec - (2048u64 << 20) as f64 / 40.0).abs() < 1.0);
        let f = l.findings.join("\n");
        assert!(
            f.contains("tmpfs /mnt/ltest grew 2.0 GiB in 40 s") && f.contains("mapped by no process"),
            "{f}"
        );
        let sum: u64 = l
            .parts
            .iter()
            .filter(|p| p.name != "shmem_unmapped")
            .map(|p| p.bytes)
            .sum();
        assert_eq!(sum, l.mem_total_bytes, "the parts add up to MemTotal");
    }

    #[test]
    fn deleted_files_held_open_are_named_and_kept_a_while() {
        use crate::host::held_deleted::{HeldFile, Scan};
        let mut h = LedgerHistory::default();
        let mut r = reading(700, 700, 0);
        r.held = Some(Scan {
            files: vec![HeldFile {
                pid: 123,
                comm: "sleep".into(),
                path: "/mnt/ltest/blob".into(),
                mount: "/mnt/ltest".into(),
                bytes: 600 << 20,
            }],
            fds_read: 10,
            truncated: false,
        });
        let l = h.update(0.0, 0, &r, 0);
        assert_eq!(l.held_deleted.len(), 1);
        let f = l.findings.join("\n");
        assert!(
            f.contains("deleted files still open hold 600.0 MiB of shmem: /mnt/ltest/blob 600.0 MiB, open in pid 123 (sleep)"),
            "{f}"
        );
        // The next readings do not walk again: the walk is shown for 90 s.
        let l = h.update(60.0, 60_000, &reading(700, 700, 0), 0);
        assert_eq!(l.held_deleted.len(), 1);
        let l = h.update(100.0, 100_000, &reading(700, 700, 0), 0);
        assert!(l.held_deleted.is_empty());
    }

    #[test]
    fn slab_growth_names_the_caches() {
        let mut h = LedgerHistory::default();
        h.update(0.0, 0, &reading(0, 0, 0), 0);
        let l = h.update(60.0, 60_000, &reading(0, 0, 830), 0);
        let f = l.findings.join("\n");
        assert!(
            f.contains(
                "slab grew 830.0 MiB in 60 s (SUnreclaim +830.0 MiB, SReclaimable +0.0 B): dentry +830.0 MiB"
            ),
            "{f}"
        );
        // Past the window, the old reading is forgotten.
        let l = h.update(60.0 + WINDOW_SECS + 1.0, 1, &reading(0, 0, 830), 0);
        assert!(l.findings.is_empty(), "{:?}", l.findings);
    }
}
