//! Page faults: `exceptions:page_fault_user`, counted per process in the
//! kernel. Nothing per fault goes to user space. For suspects (processes
//! the loader marked in `SUSPECTS`), 1 in N faults also records the user
//! stack, so that an evidence bundle can say where the memory is touched.
use aya_ebpf::{
    macros::{btf_tracepoint, map, tracepoint},
    maps::{LruHashMap, StackTrace},
    programs::{tracing::StackIdContext, BtfTracePointContext, TracePointContext},
};
use leaktrace_common::FaultStackKey;

use super::{current_tgid, slot_for, suspect_period};

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
        if let Ok(id) = ctx.get_stackid(&FAULT_STACK_IDS, BPF_F_USER_STACK) {
            let key = FaultStackKey {
                tgid,
                stack_id: id as u32,
            };
            // SAFETY: map value pointer, valid while the program runs.
            match FAULT_STACKS.get_ptr_mut(&key) {
                Some(c) => unsafe { *c += 1 },
                None => {
                    let _ = FAULT_STACKS.insert(&key, &1, 0);
                }
            }
        }
    }
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
