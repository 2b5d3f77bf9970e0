//! Reading the kernel-side aggregates. The programs aggregate per process and
//! per CPU; this module samples the maps once per interval and merges CPUs.
use anyhow::{Context, Result};
use aya::{
    maps::{MapData, PerCpuArray, PerCpuHashMap},
    Ebpf,
};
use leaktrace_common::{counter, ProcStats, RSS_MEMBERS};

/// One process's counters, merged across CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// Newest value of each RSS counter in bytes; None if never seen.
    pub rss: [Option<i64>; RSS_MEMBERS],
    pub faults: u64,
    pub forks: u64,
    pub rss_events: u64,
}

/// For each counter, the value from the CPU that saw it last; event counts
/// are summed.
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
}

pub struct KernelMaps {
    stats: PerCpuHashMap<MapData, u32, ProcStats>,
    counters: PerCpuArray<MapData, u64>,
}

impl KernelMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let stats = PerCpuHashMap::try_from(
            ebpf.take_map("PROC_STATS")
                .context("map PROC_STATS missing")?,
        )?;
        let counters =
            PerCpuArray::try_from(ebpf.take_map("COUNTERS").context("map COUNTERS missing")?)?;
        Ok(Self { stats, counters })
    }

    /// All processes in the map. Entries that vanish while iterating (a
    /// process exiting) are skipped, not errors.
    pub fn snapshot(&self, out: &mut Vec<(u32, Merged)>) {
        out.clear();
        for item in self.stats.iter() {
            if let Ok((tgid, values)) = item {
                out.push((tgid, merge(&values)));
            }
        }
    }

    pub fn keys(&self) -> Vec<u32> {
        self.stats.keys().filter_map(|k| k.ok()).collect()
    }

    pub fn remove(&mut self, tgid: u32) {
        let _ = self.stats.remove(&tgid);
    }

    pub fn counters(&self) -> Counters {
        let get = |i: u32| -> u64 {
            self.counters
                .get(&i, 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0)
        };
        Counters {
            rss_unattributed: get(counter::RSS_UNATTRIBUTED),
            rss_bad_member: get(counter::RSS_BAD_MEMBER),
            read_failed: get(counter::READ_FAILED),
            insert_failed: get(counter::INSERT_FAILED),
            exit_removed: get(counter::EXIT_REMOVED),
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
}
