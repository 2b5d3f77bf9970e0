//! Shared helpers and maps used by several hook families.

pub mod capability;
pub mod faults;
pub mod lifecycle;
pub mod rss;

use aya_ebpf::{
    macros::map,
    maps::{LruPerCpuHashMap, PerCpuArray},
};
use leaktrace_common::{counter, ProcStats, MAX_PROCS};

/// Per-process aggregate, keyed by tgid. Per-CPU so that the page-fault path
/// never bounces a cache line between CPUs; LRU so that it stays bounded even
/// if an exit is missed.
#[map]
pub static PROC_STATS: LruPerCpuHashMap<u32, ProcStats> =
    LruPerCpuHashMap::with_max_entries(MAX_PROCS, 0);

/// Global loss/health counters, see `leaktrace_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::NUM, 0);

#[inline(always)]
pub fn bump(idx: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: the pointer comes from a per-CPU array lookup for this CPU;
        // BPF programs do not migrate or get preempted by another program on
        // the same CPU while running, so this is the only writer.
        unsafe { *c += 1 };
    }
}

/// Reads a global set by the loader. `read_volatile` keeps the compiler from
/// folding the default value in; the loader overrides it before loading.
#[inline(always)]
pub fn global(v: &u64) -> u64 {
    // SAFETY: `v` is a reference to a static, always valid to read.
    unsafe { core::ptr::read_volatile(v) }
}

/// This CPU's slot for `tgid`, inserting a zeroed one if the process is new.
#[inline(always)]
pub fn stats_entry(tgid: u32) -> Option<*mut ProcStats> {
    if let Some(p) = PROC_STATS.get_ptr_mut(&tgid) {
        return Some(p);
    }
    let zero = ProcStats::default();
    if PROC_STATS.insert(&tgid, &zero, 0).is_err() {
        bump(counter::INSERT_FAILED);
        return None;
    }
    PROC_STATS.get_ptr_mut(&tgid)
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32
}
