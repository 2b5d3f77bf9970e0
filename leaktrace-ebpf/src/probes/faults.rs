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
    helpers::generated::bpf_probe_read_user,
    macros::{btf_tracepoint, map, perf_event, tracepoint},
    maps::{LruHashMap, RingBuf, StackTrace},
    programs::{tracing::StackIdContext, BtfTracePointContext, PerfEventContext, TracePointContext},
};
use leaktrace_common::{counter, FaultStackKey, StackCopy, STACK_COPY_BYTES, STACK_COPY_CHUNK};

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
        let _ = record_stack(ctx, tgid);
    }
}

/// Copies of the top of suspects' user stacks, for CFI unwinding in user
/// space (see `StackCopy`). 4 MiB holds about 250 copies between two drains.
#[map]
pub static STACK_COPIES: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Counts one sampled fault under its user stack. Returns the stack id and
/// the stack's sample count after this one.
#[inline(always)]
fn record_stack<C: StackIdContext>(ctx: &C, tgid: u32) -> Option<(u32, u64)> {
    let Ok(id) = ctx.get_stackid(&FAULT_STACK_IDS, BPF_F_USER_STACK) else {
        bump(counter::STACKS_LOST);
        return None;
    };
    let key = FaultStackKey {
        tgid,
        stack_id: id as u32,
    };
    match FAULT_STACKS.get_ptr_mut(&key) {
        // SAFETY: map value pointer, valid while the program runs.
        Some(c) => unsafe {
            *c += 1;
            Some((id as u32, *c))
        },
        None => {
            if FAULT_STACKS.insert(&key, &1, 0).is_err() {
                bump(counter::STACKS_LOST);
                return None;
            }
            Some((id as u32, 1))
        }
    }
}

/// Sends the sampled user registers and the top of the user stack to user
/// space. Only for faults taken in user mode: there the perf event's regs
/// are the user's.
#[inline(always)]
fn copy_stack(ctx: &PerfEventContext, tgid: u32, stack_id: u32) {
    let Some((ip, sp, bp)) = user_regs(ctx) else {
        return;
    };
    let Some(mut entry) = STACK_COPIES.reserve::<StackCopy>(0) else {
        bump(counter::STACK_COPIES_LOST);
        return;
    };
    let p = entry.as_mut_ptr();
    let base = sp & !(STACK_COPY_CHUNK as u64 - 1);
    let mut len = 0u32;
    // SAFETY: `p` points to the reserved record, valid until submit; every
    // write stays inside it (i < chunks, so the chunk ends within `data`).
    unsafe {
        (*p).tgid = tgid;
        (*p).stack_id = stack_id;
        (*p).ip = ip;
        (*p).sp = sp;
        (*p).bp = bp;
        (*p).base = base;
        (*p)._pad = 0;
        let data = (*p).data.as_mut_ptr();
        let mut i = 0usize;
        while i < STACK_COPY_BYTES / STACK_COPY_CHUNK {
            let off = i * STACK_COPY_CHUNK;
            let r = bpf_probe_read_user(
                data.add(off) as *mut _,
                STACK_COPY_CHUNK as u32,
                (base + off as u64) as *const _,
            );
            if r != 0 {
                break;
            }
            len += STACK_COPY_CHUNK as u32;
            i += 1;
        }
        (*p).len = len;
    }
    entry.submit(0);
}

/// The sampled instruction, stack and frame pointers, when the fault was
/// taken in user mode (only then are the perf event's regs the user's).
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn user_regs(ctx: &PerfEventContext) -> Option<(u64, u64, u64)> {
    use aya_ebpf::EbpfContext as _;
    let regs = ctx.as_ptr() as *const aya_ebpf::bindings::pt_regs;
    // SAFETY: a perf_event program's context starts with the sampled
    // pt_regs (bpf_perf_event_data.regs); reads of it are checked by the
    // verifier.
    let (ip, sp, bp, cs) = unsafe { ((*regs).rip, (*regs).rsp, (*regs).rbp, (*regs).cs) };
    (cs & 3 == 3).then_some((ip, sp, bp))
}

/// On arm64 the stack copies are not made: user space unwinds them with
/// the x86_64 CFI rules only. Fault stacks there are the kernel's
/// frame-pointer walk (arm64 code keeps frame records by its ABI).
#[cfg(not(bpf_target_arch = "x86_64"))]
#[inline(always)]
fn user_regs(_ctx: &PerfEventContext) -> Option<(u64, u64, u64)> {
    None
}

/// One sampled page fault of a suspect's thread (the perf event's sample
/// period does the 1-in-N). The stack itself is copied the 1st, 2nd, 4th,
/// 8th... time its frame-pointer stack is seen: every distinct stack gets
/// copies, and the copy cost grows with the log of the samples.
#[perf_event]
pub fn fault_sample(ctx: PerfEventContext) -> u32 {
    let tgid = current_tgid();
    let id = match record_stack(&ctx, tgid) {
        Some((id, n)) => {
            if n.is_power_of_two() {
                copy_stack(&ctx, tgid, id);
            }
            id
        }
        None => u32::MAX,
    };
    super::python::sample(tgid, id);
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
