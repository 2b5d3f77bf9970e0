//! Allocation stalls: direct reclaim and memcg reclaim (vmscan
//! *_reclaim_begin/_end). Time in reclaim is added to the process's
//! counters (watch's reclaim_stall_ms_per_sec, like bcc's drsnoop but
//! aggregated in the kernel); an episode that touches an OOM report's time
//! is also sent to the OOM ring buffer, so the incident can name the tasks
//! the OOM stalled.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use leaktrace_common::{OomKind, ReclaimStallRecord, MAX_PROCS};

use super::{
    lifecycle::{add_to_current, LifeCounter},
    oom::{emit, header, OOM_CLOCK},
};

/// Thread -> when its current reclaim began.
#[map]
static RECLAIM_BEGIN: LruHashMap<u32, u64> = LruHashMap::with_max_entries(MAX_PROCS, 0);

/// A reclaim that began or ended within this long after an OOM report
/// started is reported as a stall of that OOM.
const OOM_WINDOW_NS: u64 = 2_000_000_000;

fn begin() -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = RECLAIM_BEGIN.insert(&tid, &now, 0);
    0
}

fn clock(i: u32) -> u64 {
    OOM_CLOCK.get(i).copied().unwrap_or(0)
}

fn end(memcg: bool) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    // SAFETY: plain lookup, value copied out.
    let Some(start) = (unsafe { RECLAIM_BEGIN.get(&tid) }).copied() else {
        return 0;
    };
    let _ = RECLAIM_BEGIN.remove(&tid);
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let dur = now.saturating_sub(start);
    add_to_current(LifeCounter::ReclaimNs, dur);
    let (oom_start, oom_end) = (clock(0), clock(1));
    let in_report = oom_start > oom_end && now.saturating_sub(oom_start) < 30_000_000_000;
    let near_start = oom_start != 0 && now >= oom_start && now - oom_start < OOM_WINDOW_NS;
    if in_report || near_start {
        emit(&ReclaimStallRecord {
            hdr: header(OomKind::ReclaimStall, tid),
            begin_ns: start,
            end_ns: now,
            memcg: memcg as u32,
            _pad: 0,
        });
    }
    0
}

#[tracepoint]
pub fn direct_reclaim_begin(_ctx: TracePointContext) -> u32 {
    begin()
}

#[tracepoint]
pub fn direct_reclaim_end(_ctx: TracePointContext) -> u32 {
    end(false)
}

#[tracepoint]
pub fn memcg_reclaim_begin(_ctx: TracePointContext) -> u32 {
    begin()
}

#[tracepoint]
pub fn memcg_reclaim_end(_ctx: TracePointContext) -> u32 {
    end(true)
}
