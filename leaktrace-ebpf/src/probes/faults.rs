//! Page faults: `exceptions:page_fault_user`, counted per process in the
//! kernel. Nothing per fault goes to user space.
use aya_ebpf::{
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};

use super::{current_tgid, slot_stats};

#[inline(always)]
fn count_fault() {
    if let Some(e) = slot_stats(current_tgid()) {
        // SAFETY: this CPU's value in PROC_STATS, valid while the program runs.
        unsafe { (*e).faults += 1 };
    }
}

#[btf_tracepoint(function = "page_fault_user")]
pub fn page_fault_user_btf(_ctx: BtfTracePointContext) -> i32 {
    count_fault();
    0
}

#[tracepoint]
pub fn page_fault_user_tp(_ctx: TracePointContext) -> u32 {
    count_fault();
    0
}
