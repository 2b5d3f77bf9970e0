//! Where suspects touch their memory: user stacks of sampled page faults.
//!
//! Default: `fault_sample`, a perf_event program on a software page-fault
//! event that the loader opens only on the threads of a suspect, with a
//! sample period. Other processes pay nothing, not even a hook.
//!
//! Fallback (no perf events, or the per-fault hook path): the
//! `exceptions:page_fault_user` programs, which count every fault per
//! process and, for the processes in `SUSPECTS`, record 1 in N stacks.
use aya_ebpf::{
    macros::{btf_tracepoint, map, perf_event, tracepoint},
    maps::{LruHashMap, StackTrace},
    programs::{tracing::StackIdContext, BtfTracePointContext, PerfEventContext, TracePointContext},
};
use leaktrace_common::{counter, FaultStackKey};

use super::{bump, current_tgid, slot_for, suspect_period};

const BPF_F_USER_STACK: u64 = 256;

#[map]
pub static FAULT_STACK_IDS: StackTrace = StackTrace::with_max_entries(16384, 0);

/// (tgid, stack id) -> sampled faults with that stack.
#[map]
pub static FAULT_STACKS: LruHashMap<FaultStackKey, u64> = LruHashMap::with_max_entries(16384, 0);

#[inline(always)]
fn count_fault<C: StackIdContext>(ctx: &C) {
    let tgid = current_tgid();
    let Some(s) = slot_for(tgid) else { return };
    // SAFETY: this CPU's slot, valid while the program runs.
    let (faults, period) = unsafe {
        (*s).stats.faults += 1;
        let f = (*s).stats.faults;
        if f & 63 == 0 {
            (*s).sample_period = suspect_period(tgid);
        }
        (f, (*s).sample_period)
    };
    if period != 0 && faults % period as u64 == 0 {
        record_stack(ctx, tgid);
    }
}

/// Counts one sampled fault under its user stack.
#[inline(always)]
fn record_stack<C: StackIdContext>(ctx: &C, tgid: u32) {
    let Ok(id) = ctx.get_stackid(&FAULT_STACK_IDS, BPF_F_USER_STACK) else {
        bump(counter::STACKS_LOST);
        return;
    };
    let key = FaultStackKey {
        tgid,
        stack_id: id as u32,
    };
    match FAULT_STACKS.get_ptr_mut(&key) {
        // SAFETY: map value pointer, valid while the program runs.
        Some(c) => unsafe { *c += 1 },
        None => {
            if FAULT_STACKS.insert(&key, &1, 0).is_err() {
                bump(counter::STACKS_LOST);
            }
        }
    }
}

/// One sampled page fault of a suspect's thread (the perf event's sample
/// period does the 1-in-N).
#[perf_event]
pub fn fault_sample(ctx: PerfEventContext) -> u32 {
    record_stack(&ctx, current_tgid());
    0
}

#[btf_tracepoint(function = "page_fault_user")]
pub fn page_fault_user_btf(ctx: BtfTracePointContext) -> i32 {
    count_fault(&ctx);
    0
}

#[tracepoint]
pub fn page_fault_user_tp(ctx: TracePointContext) -> u32 {
    count_fault(&ctx);
    0
}
