//! Reading the kernel-side aggregates. The programs aggregate per process and
//! per CPU; this module samples the maps once per interval and merges CPUs.
use anyhow::{Context, Result};
use aya::{
    maps::{MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    Ebpf,
};

/// The OOM ring buffer, read by the watch loop.
pub fn take_oom_events(ebpf: &mut Ebpf) -> Result<RingBuf<MapData>> {
    Ok(RingBuf::try_from(
        ebpf.take_map("OOM_EVENTS").context("map OOM_EVENTS missing")?,
    )?)
}
use leaktrace_common::{counter, CpuSlot, ProcStats, RSS_MEMBERS};
use std::collections::HashMap;

/// One process's counters, merged across CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// Newest value of each RSS counter in bytes; None if never seen.
    pub rss: [Option<i64>; RSS_MEMBERS],
    pub faults: u64,
    pub forks: u64,
    pub rss_events: u64,
    pub reclaim_ns: u64,
}

/// For each counter, the value from the CPU that saw it last; event counts
/// are summed.
#[allow(clippy::needless_range_loop)] // parallel arrays indexed by counter
pub fn merge(per_cpu: &[ProcStats]) -> Merged {
    let mut m = Merged::default();
    let mut newest = [0u64; RSS_MEMBERS];
    for s in per_cpu {
        for i in 0..RSS_MEMBERS {
            if s.rss_ts_ns[i] != 0 && s.rss_ts_ns[i] >= newest[i] {
                newest[i] = s.rss_ts_ns[i];
                m.rss[i] = Some(s.rss_bytes[i]);
            }
        }
        m.faults += s.faults;
        m.forks += s.forks;
        m.rss_events += s.rss_events;
        m.reclaim_ns += s.reclaim_ns;
    }
    m
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Counters {
    pub rss_unattributed: u64,
    pub rss_bad_member: u64,
    pub read_failed: u64,
    pub insert_failed: u64,
    pub exit_removed: u64,
    pub oom_lost: u64,
}

/// Merges the map's per-CPU values with the per-CPU slots (the slots hold
/// what has not been flushed into the map yet). The slot of a CPU may
/// belong to a process that has no map entry yet.
pub fn merge_with_slots(map: Vec<(u32, Vec<ProcStats>)>, slots: &[CpuSlot]) -> Vec<(u32, Merged)> {
    let mut by_tgid: HashMap<u32, Vec<ProcStats>> = map.into_iter().collect();
    for s in slots.iter().filter(|s| s.valid == 1) {
        by_tgid.entry(s.tgid).or_default().push(s.stats);
    }
    by_tgid.into_iter().map(|(t, v)| (t, merge(&v))).collect()
}

pub struct KernelMaps {
    stats: PerCpuHashMap<MapData, u32, ProcStats>,
    slots: PerCpuArray<MapData, CpuSlot>,
    counters: PerCpuArray<MapData, u64>,
}

impl KernelMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let stats = PerCpuHashMap::try_from(ebpf.take_map("PROC_STATS").context("map PROC_STATS missing")?)?;
        let counters = PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("map COUNTERS missing")?)?;
        let slots = PerCpuArray::try_from(ebpf.take_map("CPU_SLOT").context("map CPU_SLOT missing")?)?;
        Ok(Self {
            stats,
            slots,
            counters,
        })
    }

    /// All processes in the map. Entries that vanish while iterating (a
    /// process exiting) are skipped, not errors.
    pub fn snapshot(&self, out: &mut Vec<(u32, Merged)>) {
        out.clear();
        let map: Vec<(u32, Vec<ProcStats>)> = self
            .stats
            .iter()
            .filter_map(|item| item.ok())
            .map(|(tgid, values)| (tgid, values.iter().copied().collect()))
            .collect();
        let slots: Vec<CpuSlot> = self
            .slots
            .get(&0, 0)
            .map(|v| v.iter().copied().collect())
            .unwrap_or_default();
        out.extend(merge_with_slots(map, &slots));
    }

    pub fn keys(&self) -> Vec<u32> {
        self.stats.keys().filter_map(|k| k.ok()).collect()
    }

    pub fn remove(&mut self, tgid: u32) {
        let _ = self.stats.remove(&tgid);
    }

    pub fn counters(&self) -> Counters {
        let get = |i: u32| -> u64 { self.counters.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0) };
        Counters {
            rss_unattributed: get(counter::RSS_UNATTRIBUTED),
            rss_bad_member: get(counter::RSS_BAD_MEMBER),
            read_failed: get(counter::READ_FAILED),
            insert_failed: get(counter::INSERT_FAILED),
            exit_removed: get(counter::EXIT_REMOVED),
            oom_lost: get(counter::OOM_LOST),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_value_wins_and_counts_sum() {
        let mut a = ProcStats::default();
        let mut b = ProcStats::default();
        a.rss_bytes[1] = 100;
        a.rss_ts_ns[1] = 10;
        b.rss_bytes[1] = 300;
        b.rss_ts_ns[1] = 20;
        b.rss_bytes[0] = 7;
        b.rss_ts_ns[0] = 5;
        a.faults = 3;
        b.faults = 4;
        let m = merge(&[a, b]);
        assert_eq!(m.rss[1], Some(300));
        assert_eq!(m.rss[0], Some(7));
        assert_eq!(m.rss[2], None);
        assert_eq!(m.faults, 7);
        // Order of CPUs does not matter.
        assert_eq!(merge(&[b, a]), m);
    }

    #[test]
    fn slots_merge_into_map_values() {
        let mut in_map = ProcStats::default();
        in_map.rss_bytes[1] = 100;
        in_map.rss_ts_ns[1] = 10;
        in_map.faults = 5;
        let mut newer = ProcStats::default();
        newer.rss_bytes[1] = 150;
        newer.rss_ts_ns[1] = 11;
        newer.faults = 2;
        let slots = [
            CpuSlot {
                tgid: 7,
                valid: 1,
                stats: newer,
                ..Default::default()
            },
            CpuSlot {
                tgid: 9,
                valid: 1,
                stats: newer,
                ..Default::default()
            },
            CpuSlot {
                tgid: 8,
                valid: 0,
                stats: newer,
                ..Default::default()
            },
        ];
        let mut out = merge_with_slots(vec![(7, vec![in_map, ProcStats::default()])], &slots);
        out.sort_by_key(|(t, _)| *t);
        assert_eq!(out.len(), 2, "invalid slot ignored: {out:?}");
        assert_eq!(out[0].0, 7);
        assert_eq!(out[0].1.rss[1], Some(150));
        assert_eq!(out[0].1.faults, 7);
        assert_eq!(out[1].0, 9, "a slot alone is a process too");
    }
}
