//! Process lifecycle: forks are counted per parent, and a process's entry is
//! removed when its thread group dies so that the maps stay bounded.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use leaktrace_common::counter;

use super::{bump, current_tgid, drop_slot, global, slot_stats, PROC_STATS};

#[no_mangle]
static TP_EXIT_GROUP_DEAD_OFF: u64 = u64::MAX;
#[no_mangle]
static TP_NEWTASK_FLAGS_OFF: u64 = 32;

const CLONE_THREAD: u64 = 0x0001_0000;

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    let (tgid, pid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    let off = global(&TP_EXIT_GROUP_DEAD_OFF);
    let group_dead = if off != u64::MAX {
        // SAFETY: offset read from this kernel's tracefs format.
        unsafe { ctx.read_at::<u8>(off as usize) }
            .map(|v| v != 0)
            .unwrap_or(pid == tgid)
    } else {
        // Older kernels: approximate with the leader's exit; the loader's
        // sweep removes whatever this misses.
        pid == tgid
    };
    if group_dead {
        super::oom::victim_exited(tgid);
        drop_slot(tgid);
        if PROC_STATS.remove(&tgid).is_ok() {
            bump(counter::EXIT_REMOVED);
        }
    }
    0
}

#[tracepoint]
pub fn task_newtask(ctx: TracePointContext) -> u32 {
    // SAFETY: offset read from this kernel's tracefs format.
    let flags = unsafe { ctx.read_at::<u64>(global(&TP_NEWTASK_FLAGS_OFF) as usize) }.unwrap_or(0);
    if flags & CLONE_THREAD == 0 {
        if let Some(e) = slot_stats(current_tgid()) {
            // SAFETY: this CPU's value in PROC_STATS, valid while the program runs.
            unsafe { (*e).forks += 1 };
        }
    }
    0
}
