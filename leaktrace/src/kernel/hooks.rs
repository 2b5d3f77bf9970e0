//! The fallback data path, for kernels without task iterators (< 5.8) or
//! where the iterator is refused: per-fault hooks (`kmem:rss_stat`,
//! `exceptions:page_fault_user`) aggregate per process and per CPU in the
//! kernel, and this sampler merges those counters once per interval with a
//! scan of /proc for the processes themselves. It costs every page fault
//! a program run and every interval a read of /proc/<pid>/stat per
//! process, which is why it is only the fallback.
use std::collections::HashMap;

use anyhow::{Context, Result};
use aya::{
    maps::{HashMap as AyaHashMap, MapData, PerCpuArray, PerCpuHashMap},
    Ebpf,
};
use leaktrace_common::{CpuSlot, Life, ProcStats, RSS_MEMBERS};

use super::{ProcSample, SampleStats, Sampler};
use crate::host::procfs::{self, ProcErr, StatusRss};

/// One process's counters, merged across CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// Newest value of each RSS counter in bytes; None if never seen.
    pub rss: [Option<i64>; RSS_MEMBERS],
    pub faults: u64,
    pub rss_events: u64,
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
        m.rss_events += s.rss_events;
    }
    m
}

/// Merges the map's per-CPU values with the per-CPU slots (the slots hold
/// what has not been flushed into the map yet). The slot of a CPU may
/// belong to a process that has no map entry yet.
pub fn merge_with_slots(map: Vec<(u32, Vec<ProcStats>)>, slots: &[CpuSlot]) -> HashMap<u32, Merged> {
    let mut by_tgid: HashMap<u32, Vec<ProcStats>> = map.into_iter().collect();
    for s in slots.iter().filter(|s| s.valid == 1) {
        by_tgid.entry(s.tgid).or_default().push(s.stats);
    }
    by_tgid.into_iter().map(|(t, v)| (t, merge(&v))).collect()
}

pub struct HooksSampler {
    stats: PerCpuHashMap<MapData, u32, ProcStats>,
    slots: PerCpuArray<MapData, CpuSlot>,
    life: AyaHashMap<MapData, u32, Life>,
    /// /proc/<pid>/status at discovery, for counters the kernel has not
    /// reported since leaktrace started: pid -> (start time, RSS split).
    baseline: HashMap<u32, (u64, StatusRss)>,
    page: u64,
    tick_ns: u64,
}

impl HooksSampler {
    pub fn take(ebpf: &mut Ebpf, page: u64) -> Result<Self> {
        Ok(Self {
            stats: PerCpuHashMap::try_from(ebpf.take_map("PROC_STATS").context("map PROC_STATS missing")?)?,
            slots: PerCpuArray::try_from(ebpf.take_map("CPU_SLOT").context("map CPU_SLOT missing")?)?,
            life: AyaHashMap::try_from(ebpf.take_map("PROC_LIFE").context("map PROC_LIFE missing")?)?,
            baseline: HashMap::new(),
            page,
            tick_ns: 1_000_000_000 / procfs::clk_tck(),
        })
    }

    fn kernel_counters(&self) -> HashMap<u32, Merged> {
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
        merge_with_slots(map, &slots)
    }
}

impl Sampler for HooksSampler {
    fn name(&self) -> &'static str {
        "hooks"
    }

    fn map_keys(&self) -> Vec<u32> {
        let mut k: Vec<u32> = self.stats.keys().filter_map(|k| k.ok()).collect();
        k.extend(self.life.keys().filter_map(|k| k.ok()));
        k.sort_unstable();
        k.dedup();
        k
    }

    fn sample(&mut self, out: &mut Vec<ProcSample>, live: &mut Vec<u32>) -> Result<SampleStats> {
        let st = self.sample_all(out)?;
        live.clear();
        live.extend(out.iter().map(|p| p.tgid));
        Ok(st)
    }
}

impl HooksSampler {
    fn sample_all(&mut self, out: &mut Vec<ProcSample>) -> Result<SampleStats> {
        let t = std::time::Instant::now();
        out.clear();
        let kernel = self.kernel_counters();
        let mut errors = 0;
        let mut seen = Vec::new();
        for pid in procfs::pids().context("listing /proc")? {
            let st = match procfs::read_stat(pid) {
                Ok(st) => st,
                Err(ProcErr::Gone) => continue,
                Err(ProcErr::Failed(_)) => {
                    errors += 1;
                    continue;
                }
            };
            if st.state == b'Z' || st.state == b'X' {
                continue;
            }
            let start_ns = st.start_time * self.tick_ns;
            let k = kernel.get(&pid);
            let has_kernel_rss = k.is_some_and(|m| m.rss.iter().any(Option::is_some));
            // Kernel threads have no RSS lines in status: skip them.
            let base = match self.baseline.get(&pid) {
                Some((s, b)) if *s == start_ns => Some(*b),
                _ => match procfs::read_status_rss(pid) {
                    Ok(b) => {
                        self.baseline.insert(pid, (start_ns, b));
                        Some(b)
                    }
                    Err(_) if has_kernel_rss => None,
                    Err(_) => continue,
                },
            };
            let b = base.unwrap_or_default();
            let from = |i: usize, dflt: u64| -> u64 {
                k.and_then(|m| m.rss[i]).map(|v| v.max(0) as u64).unwrap_or(dflt)
            };
            let life = self.life.get(&pid, 0).ok();
            let mut comm = [0u8; 16];
            let n = st.comm.len().min(16);
            comm[..n].copy_from_slice(&st.comm[..n]);
            seen.push(pid);
            out.push(ProcSample {
                tgid: pid,
                ppid: st.ppid,
                start_ns,
                comm,
                threads: st.threads,
                rss: [
                    from(0, b.file),
                    from(1, b.anon),
                    from(2, b.swap),
                    from(3, b.shmem),
                ],
                hiwater_bytes: 0,
                total_vm_bytes: 0,
                faults: st.minflt + st.majflt,
                maj_faults: st.majflt,
                memcg_id: 0,
                exec_id: 0,
                forks: life.map(|l| l.forks).unwrap_or(0),
                reclaim_ns: life.map(|l| l.reclaim_ns).unwrap_or(0),
                birth: life
                    .filter(|l| l.birth_ns != 0)
                    .map(|l| (l.birth_ns, l.birth_rss_pages * self.page)),
                oom_score_adj: 0,
                no_mm: false,
                unchanged: false,
            });
        }
        // Forget what belongs to processes that are gone: the baselines
        // here, and the kernel entries an exit hook may have missed.
        seen.sort_unstable();
        self.baseline.retain(|pid, _| seen.binary_search(pid).is_ok());
        for pid in kernel.keys() {
            if seen.binary_search(pid).is_err() {
                let _ = self.stats.remove(pid);
            }
        }
        Ok(SampleStats {
            processes: out.len(),
            pass_ms: t.elapsed().as_secs_f64() * 1000.0,
            errors,
        })
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
        let out = merge_with_slots(vec![(7, vec![in_map, ProcStats::default()])], &slots);
        assert_eq!(out.len(), 2, "invalid slot ignored: {out:?}");
        assert_eq!(out[&7].rss[1], Some(150));
        assert_eq!(out[&7].faults, 7);
        assert!(out.contains_key(&9), "a slot alone is a process too");
    }
}
