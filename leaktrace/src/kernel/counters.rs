//! The kernel programs' loss and health counters (`COUNTERS`, per CPU).
//! Every drop in the kernel is counted here, and every count is shown.
use anyhow::{Context, Result};
use aya::{
    maps::{MapData, PerCpuArray},
    Ebpf,
};
use leaktrace_common::counter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Counters {
    pub rss_unattributed: u64,
    pub rss_bad_member: u64,
    pub read_failed: u64,
    pub insert_failed: u64,
    pub exit_removed: u64,
    /// OOM report lines that did not fit in their ring.
    pub oom_lost: u64,
    /// Victim/kill/reaper/exit events that did not fit in their ring.
    pub oom_crit_lost: u64,
    /// Exit records of short-lived growers that did not fit in their ring.
    pub exits_lost: u64,
    pub life_insert_failed: u64,
    pub oom_active_full: u64,
    pub oom_active_expired: u64,
    pub stacks_lost: u64,
    pub iter_write_failed: u64,
    /// User stack copies (CFI unwinding) that did not fit in their ring.
    pub stack_copies_lost: u64,
    /// Python stacks (frames or counts) that did not fit in their ring or map.
    pub py_stacks_lost: u64,
    /// Sampled faults of a CPython suspect whose thread was not found in
    /// the interpreter's thread list.
    pub py_thread_missed: u64,
    /// RSS counts of an exited process not put back into the per-process
    /// map (its mm torn down later, or a late flush from another CPU).
    pub exited_dropped: u64,
}

pub struct CountersMap(PerCpuArray<MapData, u64>);

impl CountersMap {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Self(PerCpuArray::try_from(
            ebpf.take_map("COUNTERS").context("map COUNTERS missing")?,
        )?))
    }

    pub fn read(&self) -> Counters {
        let get = |i: u32| -> u64 { self.0.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0) };
        Counters {
            rss_unattributed: get(counter::RSS_UNATTRIBUTED),
            rss_bad_member: get(counter::RSS_BAD_MEMBER),
            read_failed: get(counter::READ_FAILED),
            insert_failed: get(counter::INSERT_FAILED),
            exit_removed: get(counter::EXIT_REMOVED),
            oom_lost: get(counter::OOM_LOST),
            oom_crit_lost: get(counter::OOM_CRIT_LOST),
            exits_lost: get(counter::EXITS_LOST),
            life_insert_failed: get(counter::LIFE_INSERT_FAILED),
            oom_active_full: get(counter::OOM_ACTIVE_FULL),
            oom_active_expired: get(counter::OOM_ACTIVE_EXPIRED),
            stacks_lost: get(counter::STACKS_LOST),
            iter_write_failed: get(counter::ITER_WRITE_FAILED),
            stack_copies_lost: get(counter::STACK_COPIES_LOST),
            py_stacks_lost: get(counter::PY_STACKS_LOST),
            py_thread_missed: get(counter::PY_THREAD_MISSED),
            exited_dropped: get(counter::EXITED_DROPPED),
        }
    }
}
