//! Shared helpers and maps used by several hook families.

pub mod capability;
pub mod faults;
pub mod iter;
pub mod kread;
pub mod lifecycle;
pub mod oom;
pub mod oomctl;
pub mod python;
pub mod reclaim;
pub mod rss;

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray},
};
use leaktrace_common::{counter, CpuSlot, Life, ProcStats, MAX_PROCS, RSS_MEMBERS};

/// Per-process aggregate, keyed by tgid. Per-CPU so that the page-fault path
/// never bounces a cache line between CPUs; LRU so that it stays bounded even
/// if an exit is missed.
#[map]
pub static PROC_STATS: LruPerCpuHashMap<u32, ProcStats> = LruPerCpuHashMap::with_max_entries(MAX_PROCS, 0);

/// The per-CPU front of PROC_STATS, see `leaktrace_common::CpuSlot`. A
/// per-CPU array lookup is inlined by the verifier, unlike a hash lookup, so
/// the page-fault path costs a compare and an increment.
#[map]
pub static CPU_SLOT: PerCpuArray<CpuSlot> = PerCpuArray::with_max_entries(1, 0);

/// tgid -> when its last thread exited (bpf_ktime_get_ns). Without it a
/// dead process comes back into PROC_STATS: its mm is often torn down
/// later, by whoever held it last (a /proc reader), and those RSS events
/// name it through `mm->owner`; and a slot of it on another CPU is flushed
/// whenever that CPU next sees another process. For `EXITED_HOLD_NS` no
/// entry is made for it, unless a new process takes the tgid (fork hook).
#[map]
pub static EXITED: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// How long an exited tgid gets no new PROC_STATS entry.
const EXITED_HOLD_NS: u64 = 5_000_000_000;

/// tgid -> its life, see `leaktrace_common::Life`.
#[map]
pub static PROC_LIFE: LruHashMap<u32, Life> = LruHashMap::with_max_entries(MAX_PROCS, 0);

/// This process's entry, created (with `start_ns`) if it has none. A stale
/// entry of an earlier process with the same pid is started over.
#[inline(always)]
pub fn life_entry(tgid: u32, start_ns: u64) -> Option<*mut Life> {
    if let Some(p) = PROC_LIFE.get_ptr_mut(&tgid) {
        // SAFETY: map value pointer, valid while the program runs.
        unsafe {
            if (*p).start_ns == start_ns || start_ns == 0 {
                return Some(p);
            }
        }
    }
    let fresh = Life {
        start_ns,
        ..Life::default()
    };
    if PROC_LIFE.insert(&tgid, &fresh, 0).is_err() {
        bump(counter::LIFE_INSERT_FAILED);
        return None;
    }
    PROC_LIFE.get_ptr_mut(&tgid)
}

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
    // SAFETY: plain lookup, value copied out.
    if let Some(at) = unsafe { EXITED.get(&tgid) }.copied() {
        // SAFETY: no preconditions.
        let now = unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() };
        if now.wrapping_sub(at) < EXITED_HOLD_NS {
            bump(counter::EXITED_DROPPED);
            return None;
        }
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

/// Moves a slot's counters into PROC_STATS (this CPU's value for its tgid).
#[inline(always)]
fn flush(s: *mut CpuSlot) {
    // SAFETY: `s` is this CPU's CPU_SLOT value; `e` this CPU's PROC_STATS
    // value. Both stay valid while the program runs and nothing else on
    // this CPU writes them meanwhile.
    unsafe {
        let Some(e) = stats_entry((*s).tgid) else {
            return;
        };
        let st = &(*s).stats;
        for i in 0..RSS_MEMBERS {
            if st.rss_ts_ns[i] > (*e).rss_ts_ns[i] {
                (*e).rss_bytes[i] = st.rss_bytes[i];
                (*e).rss_ts_ns[i] = st.rss_ts_ns[i];
            }
        }
        (*e).faults += st.faults;
        (*e).rss_events += st.rss_events;
    }
}

/// Processes whose page faults are sampled with their user stack: tgid ->
/// sampling period (1 in N faults). Set by the loader for suspects.
#[map]
pub static SUSPECTS: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

#[inline(always)]
pub fn suspect_period(tgid: u32) -> u32 {
    // SAFETY: plain lookup, value copied out.
    unsafe { SUSPECTS.get(&tgid) }.copied().unwrap_or(0)
}

/// This CPU's slot for `tgid`, flushed first if it belonged to another
/// process.
#[inline(always)]
pub fn slot_for(tgid: u32) -> Option<*mut CpuSlot> {
    let s = CPU_SLOT.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, valid while the program runs.
    unsafe {
        if (*s).valid == 1 && (*s).tgid == tgid {
            return Some(s);
        }
        if (*s).valid == 1 {
            flush(s);
        }
        (*s).tgid = tgid;
        (*s).valid = 1;
        (*s).stats = ProcStats::default();
        (*s).sample_period = suspect_period(tgid);
        Some(s)
    }
}

/// The counters to update for `tgid` on this CPU (see `slot_for`).
#[inline(always)]
pub fn slot_stats(tgid: u32) -> Option<*mut ProcStats> {
    // SAFETY: the slot pointer is valid while the program runs.
    slot_for(tgid).map(|s| unsafe { &mut (*s).stats as *mut ProcStats })
}

/// Forgets this CPU's slot if it belongs to `tgid` (the process exited).
/// Slots on other CPUs are dropped when they are flushed (`EXITED`).
#[inline(always)]
pub fn drop_slot(tgid: u32) {
    if let Some(s) = CPU_SLOT.get_ptr_mut(0) {
        // SAFETY: this CPU's slot, valid while the program runs.
        unsafe {
            if (*s).valid == 1 && (*s).tgid == tgid {
                (*s).valid = 0;
            }
        }
    }
}
