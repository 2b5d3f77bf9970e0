//! RSS counters: `kmem:rss_stat`.
//!
//! Two variants of the same hook; the loader attaches the first that works:
//! - `rss_stat_btf` (tp_btf): gets the `mm_struct *` and the counter index,
//!   maps the mm to its owning process through `mm->owner->tgid`, and reads
//!   the counter itself. Offsets come from the running kernel's BTF via
//!   globals. Cheapest, and attributes `curr=0` events (another task's mm,
//!   e.g. reclaim or fork copying page tables) correctly.
//! - `rss_stat_tp` (classic tracepoint): reads mm_id/curr/member/size from
//!   the trace record. The mm_id -> tgid mapping is learnt from `curr=1`
//!   events; `curr=0` events for an mm not yet seen are counted as
//!   unattributed.
use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map, tracepoint},
    maps::LruHashMap,
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::warn;
use leaktrace_common::{counter, MAX_PROCS, RSS_MEMBERS};

use super::{bump, current_tgid, global, slot_stats};

#[no_mangle]
static MM_OWNER_OFF: u64 = 0;
#[no_mangle]
static TASK_TGID_OFF: u64 = 0;
#[no_mangle]
static MM_RSS_OFF: u64 = 0;
#[no_mangle]
static RSS_STRIDE: u64 = 0;
#[no_mangle]
static RSS_COUNT_OFF: u64 = 0;
#[no_mangle]
static PAGE_SHIFT: u64 = 12;
#[no_mangle]
static TP_RSS_MM_ID_OFF: u64 = 8;
#[no_mangle]
static TP_RSS_CURR_OFF: u64 = 12;
#[no_mangle]
static TP_RSS_MEMBER_OFF: u64 = 16;
#[no_mangle]
static TP_RSS_SIZE_OFF: u64 = 24;

/// Classic-path only: mm_id (hashed mm pointer) -> tgid, learnt from curr=1.
#[map]
static MM_OWNERS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(MAX_PROCS, 0);

#[inline(always)]
fn record(tgid: u32, member: usize, bytes: i64) {
    let Some(e) = slot_stats(tgid) else {
        return;
    };
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: `e` points at this CPU's value in PROC_STATS, valid for the
    // duration of the program. Constant indices only: a computed index,
    // even masked, can reach the verifier without its bounds (the compiler
    // drops the mask once it has proven the range on another register).
    unsafe {
        match member {
            0 => {
                (*e).rss_bytes[0] = bytes;
                (*e).rss_ts_ns[0] = now;
            }
            1 => {
                (*e).rss_bytes[1] = bytes;
                (*e).rss_ts_ns[1] = now;
            }
            2 => {
                (*e).rss_bytes[2] = bytes;
                (*e).rss_ts_ns[2] = now;
            }
            _ => {
                (*e).rss_bytes[3] = bytes;
                (*e).rss_ts_ns[3] = now;
            }
        }
        (*e).rss_events += 1;
    }
}

/// Same as `rss_stat_btf`, but with direct loads through the BTF-typed
/// `mm_struct *` instead of bpf_probe_read_kernel calls. The offsets are
/// read-only globals, which the verifier treats as constants, so it checks
/// every load against the kernel's own struct layout (a wrong offset is a
/// load-time rejection, not a wrong number) and emits plain loads. This is
/// the cheapest variant; kernels whose verifier refuses it fall back to
/// `rss_stat_btf`.
#[btf_tracepoint(function = "rss_stat")]
pub fn rss_stat_btf_direct(ctx: BtfTracePointContext) -> i32 {
    let mm: *const u8 = ctx.arg(0);
    let member: u64 = ctx.arg(1);
    let member = member as i32;
    let base = global(&MM_RSS_OFF) + global(&RSS_COUNT_OFF);
    let stride = global(&RSS_STRIDE);
    // SAFETY: see above; the verifier validates each load against BTF and
    // turns a faulting load into a zero read.
    let (owner, pages) = unsafe {
        let owner =
            core::ptr::read_volatile(mm.wrapping_add(global(&MM_OWNER_OFF) as usize) as *const *const u8);
        // One constant offset per branch: BTF-typed loads need constants.
        let pages = match member {
            0 => core::ptr::read_volatile(mm.wrapping_add(base as usize) as *const i64),
            1 => core::ptr::read_volatile(mm.wrapping_add((base + stride) as usize) as *const i64),
            2 => core::ptr::read_volatile(mm.wrapping_add((base + 2 * stride) as usize) as *const i64),
            3 => core::ptr::read_volatile(mm.wrapping_add((base + 3 * stride) as usize) as *const i64),
            _ => {
                bump(counter::RSS_BAD_MEMBER);
                return 0;
            }
        };
        (owner, pages)
    };
    if owner.is_null() {
        bump(counter::RSS_UNATTRIBUTED);
        return 0;
    }
    // SAFETY: as above; `owner` is a BTF-typed task_struct pointer.
    let tgid = unsafe {
        core::ptr::read_volatile(owner.wrapping_add(global(&TASK_TGID_OFF) as usize) as *const i32)
    };
    record(tgid as u32, member as usize, pages << global(&PAGE_SHIFT));
    0
}

#[btf_tracepoint(function = "rss_stat")]
pub fn rss_stat_btf(ctx: BtfTracePointContext) -> i32 {
    match try_rss_stat_btf(&ctx) {
        Ok(()) => 0,
        Err(_) => {
            bump(counter::READ_FAILED);
            0
        }
    }
}

fn try_rss_stat_btf(ctx: &BtfTracePointContext) -> Result<(), i64> {
    // TP_PROTO(struct mm_struct *mm, int member[, long count])
    let mm: *const u8 = ctx.arg(0);
    let member: u64 = ctx.arg(1);
    let member = member as i32;
    if member < 0 || member as usize >= RSS_MEMBERS {
        bump(counter::RSS_BAD_MEMBER);
        warn!(ctx, "rss_stat: unexpected counter index {}", member);
        return Ok(());
    }
    // SAFETY: bpf_probe_read_kernel copes with any address; the offsets are
    // the running kernel's, taken from its BTF by the loader.
    let owner: *const u8 = unsafe {
        bpf_probe_read_kernel(mm.wrapping_add(global(&MM_OWNER_OFF) as usize) as *const *const u8)?
    };
    if owner.is_null() {
        bump(counter::RSS_UNATTRIBUTED);
        return Ok(());
    }
    // SAFETY: as above.
    let tgid: i32 =
        unsafe { bpf_probe_read_kernel(owner.wrapping_add(global(&TASK_TGID_OFF) as usize) as *const i32)? };
    let off = global(&MM_RSS_OFF) + (member as u64) * global(&RSS_STRIDE) + global(&RSS_COUNT_OFF);
    // SAFETY: as above.
    let pages: i64 = unsafe { bpf_probe_read_kernel(mm.wrapping_add(off as usize) as *const i64)? };
    record(tgid as u32, member as usize, pages << global(&PAGE_SHIFT));
    Ok(())
}

#[tracepoint]
pub fn rss_stat_tp(ctx: TracePointContext) -> u32 {
    match try_rss_stat_tp(&ctx) {
        Ok(()) => 0,
        Err(_) => {
            bump(counter::READ_FAILED);
            0
        }
    }
}

fn try_rss_stat_tp(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: the offsets are this kernel's, read from the tracefs format file.
    let (mm_id, curr, member, size) = unsafe {
        (
            ctx.read_at::<u32>(global(&TP_RSS_MM_ID_OFF) as usize)?,
            ctx.read_at::<u32>(global(&TP_RSS_CURR_OFF) as usize)?,
            ctx.read_at::<i32>(global(&TP_RSS_MEMBER_OFF) as usize)?,
            ctx.read_at::<i64>(global(&TP_RSS_SIZE_OFF) as usize)?,
        )
    };
    if member < 0 || member as usize >= RSS_MEMBERS {
        bump(counter::RSS_BAD_MEMBER);
        return Ok(());
    }
    let tgid = if curr != 0 {
        let tgid = current_tgid();
        // SAFETY: plain lookup; the value is copied out immediately.
        let known = unsafe { MM_OWNERS.get(&mm_id) }.copied();
        if known != Some(tgid) {
            let _ = MM_OWNERS.insert(&mm_id, &tgid, 0);
        }
        tgid
    } else {
        // SAFETY: as above.
        match unsafe { MM_OWNERS.get(&mm_id) } {
            Some(t) => *t,
            None => {
                bump(counter::RSS_UNATTRIBUTED);
                return Ok(());
            }
        }
    };
    record(tgid, member as usize, size);
    Ok(())
}
