//! OOM kills: the kernel's own report (printk:console, captured in the
//! context of the task printing it), the victim (oom:mark_victim), the kill
//! signal, the OOM reaper and the victim's exit.
//!
//! Report lines and reclaim stalls go to `OOM_EVENTS`, a ring buffer used
//! for nothing else. A console line is only sent while its task is
//! printing an OOM report (from "<comm> invoked oom-killer:" to "...
//! Killed process ..."), or when the line itself is OOM-specific ("Killed
//! process", "oom_reaper:"), so a printk flood elsewhere cannot crowd OOM
//! data out. The victim, the kill, the reaper and the victim's exit go to
//! `OOM_CRIT`, a small ring of their own, so that a task dump of
//! thousands of lines cannot push them out either. Every failed reserve is
//! counted (`OOM_LOST`, `OOM_CRIT_LOST`).
use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf,
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, TracePointContext},
    EbpfContext,
};
use leaktrace_common::{
    counter, line_flag, Life, MarkVictimRecord, OomHeader, OomKind, OomLine, SigkillRecord, OOM_LINE_HEADER,
    OOM_TEXT_LEN,
};

use super::{bump, global, PROC_LIFE};

/// Report lines (variable-size `OomLine` records, about 150 bytes each)
/// and reclaim stalls (`ReclaimStallRecord`s): about 14,000 lines.
#[map]
pub static OOM_EVENTS: RingBuf = RingBuf::with_byte_size(2 * 1024 * 1024, 0);

/// Where a report line is built before its used bytes go on the ring.
#[map]
static LINE_SCRATCH: PerCpuArray<OomLine> = PerCpuArray::with_max_entries(1, 0);

/// Victims, kills, reaper and exits only: about 400 records.
#[map]
pub static OOM_CRIT: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Threads currently printing an OOM report -> when the report started.
/// LRU, and an entry older than MAX_REPORT_NS is expired when it is next
/// looked at, so a report that never reached "Killed process" cannot keep
/// a slot for ever.
#[map]
static OOM_ACTIVE: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1024, 0);

/// [0]: when the last OOM report started; [1]: when the last one ended.
/// Read by the reclaim hooks to decide whether a stall belongs to an OOM.
#[map]
pub static OOM_CLOCK: Array<u64> = Array::with_max_entries(2, 0);

fn set_clock(i: u32, v: u64) {
    if let Some(p) = OOM_CLOCK.get_ptr_mut(i) {
        // SAFETY: element of an array map, valid while the program runs; a
        // racing writer on another CPU only changes which recent time wins.
        unsafe { *p = v };
    }
}

/// OOM victims (tgid) -> when they were marked, to report their exit.
#[map]
pub static OOM_VICTIMS: HashMap<u32, u64> = HashMap::with_max_entries(1024, 0);

/// oom:mark_victim offsets: pid, total_vm, anon_rss, file_rss, shmem_rss,
/// uid, pgtables, oom_score_adj (u64::MAX = field absent).
#[no_mangle]
static TP_MV_OFFS: [u64; 8] = [8, 16, 24, 32, 40, 48, 56, 64];
#[no_mangle]
static TP_CONSOLE_MSG_OFF: u64 = 8;
/// signal:signal_generate: sig, pid, result.
#[no_mangle]
static TP_SIG_OFFS: [u64; 3] = [8, 36, 44];
#[no_mangle]
static TP_REAP_PID_OFF: u64 = 8;

/// A report that never ends (should not happen) stops being followed.
const MAX_REPORT_NS: u64 = 30_000_000_000;
const PEEK: usize = 64;
const SIGKILL: u32 = 9;

fn global_at<const N: usize>(v: &[u64; N], i: usize) -> u64 {
    // SAFETY: reading an element of a static array; `i < N` is checked.
    if i < N {
        unsafe { core::ptr::read_volatile(&v[i]) }
    } else {
        u64::MAX
    }
}

/// Eight bytes of `b` at `p`, little endian. Every call site passes a
/// constant `p` (the `any_at!` macro unrolls the positions), so these are
/// fixed-offset stack reads with no loop for the verifier to walk; byte
/// loads because the verifier requires aligned stack access.
#[inline(always)]
fn word_at(b: &[u8; PEEK], p: usize) -> u64 {
    (b[p] as u64)
        | (b[p + 1] as u64) << 8
        | (b[p + 2] as u64) << 16
        | (b[p + 3] as u64) << 24
        | (b[p + 4] as u64) << 32
        | (b[p + 5] as u64) << 40
        | (b[p + 6] as u64) << 48
        | (b[p + 7] as u64) << 56
}

const fn w(s: &[u8; 8]) -> u64 {
    u64::from_le_bytes(*s)
}

/// True if any of the listed positions holds `$a` followed by `$b`.
macro_rules! any_at {
    ($buf:expr, $a:expr, $b:expr, [$($p:literal),*]) => {
        false $(|| (word_at($buf, $p) == $a && word_at($buf, $p + 8) == $b))*
    };
}

/// "<comm> invoked oom-killer:": comm has 1 to 15 characters.
#[inline(always)]
fn is_invoked(b: &[u8; PEEK]) -> bool {
    any_at!(
        b,
        w(b" invoked"),
        w(b" oom-kil"),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    )
}

/// "<message>: Killed process <pid> (<comm>) ...": the messages the kernel
/// uses ("Out of memory (oom_kill_allocating_task)" is the longest) put it
/// within the first 49 bytes.
#[inline(always)]
fn any_killed(b: &[u8; PEEK]) -> bool {
    // Only the first word is checked at each position; "Killed p" is
    // specific enough in a kernel log line.
    macro_rules! k {
        ($($p:literal),*) => { false $(|| word_at(b, $p) == w(b"Killed p"))* };
    }
    k!(
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
        28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48
    )
}

/// "oom_reaper: reaped process ..."
#[inline(always)]
fn is_reaper(b: &[u8; PEEK]) -> bool {
    word_at(b, 0) == w(b"oom_reap") && word_at(b, 8) & 0x00ff_ffff == u64::from_le_bytes(*b"er:\0\0\0\0\0")
}

/// The header of a record about `target`, made by the current task now.
#[inline(always)]
pub(super) fn header(kind: OomKind, target: u32) -> OomHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    OomHeader {
        kind: kind as u32,
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        target,
        // SAFETY: no preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// Sends a small fixed-size record on the report ring (reclaim stalls).
pub fn emit<T: 'static>(rec: &T) {
    if OOM_EVENTS.output::<T>(rec, 0).is_err() {
        bump(counter::OOM_LOST);
    }
}

/// Sends a small fixed-size record (kill, reaper, exit, oom_control, lock
/// held) on the small ring.
pub(super) fn emit_crit<T: 'static>(rec: T) {
    let Some(mut entry) = OOM_CRIT.reserve::<T>(0) else {
        bump(counter::OOM_CRIT_LOST);
        return;
    };
    entry.write(rec);
    entry.submit(0);
}

/// Did printk strip a newline from this text? printk_sprint() formats into
/// the record buffer, drops a trailing '\n' from the count, then memmoves
/// the text over a "\001<level>" prefix if there was one, moving only the
/// counted bytes. So after the text there is either the '\n' (no prefix),
/// or the NUL terminator (no prefix, no newline), or two stale bytes and
/// then the '\n' or NUL (prefix). NEWLINE, 0 (a fragment that the next
/// pr_cont continues) or NEWLINE_UNKNOWN.
#[inline(always)]
fn newline_after(text: *const u8, len: usize) -> u32 {
    // SAFETY: reads 3 bytes just after the text inside printk's record
    // buffer; a fault is reported as unknown.
    match unsafe { bpf_probe_read_kernel(text.wrapping_add(len) as *const [u8; 3]) } {
        Ok([b'\n', _, _]) => line_flag::NEWLINE,
        Ok([0, _, _]) => 0,
        Ok([_, _, b'\n']) => line_flag::NEWLINE,
        Ok(_) => 0,
        Err(_) => line_flag::NEWLINE_UNKNOWN,
    }
}

/// Decides whether a log line belongs to an OOM report and sends it.
/// `knows_newline`: `text` is printk's own buffer (tp_btf), so the bytes
/// after it tell whether the line ended (see `newline_after`).
fn console_line(text: *const u8, len: usize, knows_newline: bool) {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let mut peek = [0u8; PEEK];
    let n = if len < PEEK { len } else { PEEK };
    // Only the line's own bytes: the rest stays zero so that it cannot match.
    let Some(dst) = peek.get_mut(..n) else { return };
    // SAFETY: reads at most PEEK bytes of the log text; a fault is an error.
    if unsafe { bpf_probe_read_kernel_buf(text, dst) }.is_err() {
        return;
    }
    // SAFETY: plain lookup, value copied out.
    let mut active = match unsafe { OOM_ACTIVE.get(&tid) }.copied() {
        Some(start) if now.wrapping_sub(start) < MAX_REPORT_NS => true,
        Some(_) => {
            let _ = OOM_ACTIVE.remove(&tid);
            bump(counter::OOM_ACTIVE_EXPIRED);
            false
        }
        None => false,
    };
    let starts = !active && is_invoked(&peek);
    if starts {
        if OOM_ACTIVE.insert(&tid, &now, 0).is_err() {
            bump(counter::OOM_ACTIVE_FULL);
        }
        set_clock(0, now);
        active = true;
    }
    let killed = any_killed(&peek);
    let reaper = is_reaper(&peek);
    if !(active || killed || reaper) {
        return;
    }
    if killed && active {
        // The last line of a report.
        let _ = OOM_ACTIVE.remove(&tid);
        set_clock(1, now);
    }
    let Some(e) = LINE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch record, valid while the program runs; the
    // copy length is bounded by the text buffer.
    let n = unsafe {
        (*e).head.hdr = header(OomKind::Console, 0);
        (*e).head.hdr.ts_ns = now;
        let nl = if knows_newline {
            newline_after(text, len)
        } else {
            line_flag::NEWLINE_UNKNOWN
        };
        (*e).head.flags = nl | if starts { line_flag::STARTS } else { 0 };
        let n = if len < OOM_TEXT_LEN { len } else { OOM_TEXT_LEN };
        (*e).head.len = 0;
        if let Some(dst) = (*e).text.get_mut(..n) {
            if bpf_probe_read_kernel_buf(text, dst).is_ok() {
                (*e).head.len = n as u32;
            }
        }
        (*e).head.len as usize
    };
    // Only the header and the line's own bytes go on the ring.
    let size = OOM_LINE_HEADER + (n & (OOM_TEXT_LEN * 2 - 1)).min(OOM_TEXT_LEN);
    // SAFETY: `e` points at size_of::<OomLine>() bytes, and `size` is at
    // most that (checked above, in a form the verifier can follow).
    let bytes = unsafe { core::slice::from_raw_parts(e as *const u8, size) };
    if OOM_EVENTS.output::<[u8]>(bytes, 0).is_err() {
        bump(counter::OOM_LOST);
    }
}

/// printk:console as a BTF tracepoint: TP_PROTO(const char *text, size_t len).
#[btf_tracepoint(function = "console")]
pub fn console_btf(ctx: BtfTracePointContext) -> i32 {
    let text: *const u8 = ctx.arg(0);
    let len: u64 = ctx.arg(1);
    console_line(text, len as usize, true);
    0
}

/// printk:console as a classic tracepoint (`msg` is a __data_loc string).
#[tracepoint]
pub fn console_tp(ctx: TracePointContext) -> u32 {
    // SAFETY: offset read from this kernel's tracefs format.
    let Ok(loc) = (unsafe { ctx.read_at::<u32>(global(&TP_CONSOLE_MSG_OFF) as usize) }) else {
        return 0;
    };
    let (off, len) = ((loc & 0xffff) as usize, (loc >> 16) as usize);
    // __data_loc lengths include the trailing NUL.
    let len = len.saturating_sub(1);
    console_line((ctx.as_ptr() as *const u8).wrapping_add(off), len, false);
    0
}

#[tracepoint]
pub fn oom_mark_victim(ctx: TracePointContext) -> u32 {
    let rd = |i: usize, size: usize| -> u64 {
        let off = global_at(&TP_MV_OFFS, i);
        if off == u64::MAX {
            return 0;
        }
        // SAFETY: offsets read from this kernel's tracefs format.
        unsafe {
            match size {
                2 => ctx
                    .read_at::<i16>(off as usize)
                    .map(|v| v as i64 as u64)
                    .unwrap_or(0),
                4 => ctx.read_at::<u32>(off as usize).map(|v| v as u64).unwrap_or(0),
                _ => ctx.read_at::<u64>(off as usize).unwrap_or(0),
            }
        }
    };
    let pid = rd(0, 4) as u32;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = OOM_VICTIMS.insert(&pid, &now, 0);
    let Some(mut entry) = OOM_CRIT.reserve::<MarkVictimRecord>(0) else {
        bump(counter::OOM_CRIT_LOST);
        return 0;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at a reserved, exclusively owned record, filled
    // field by field (it is too large to build on the BPF stack); the Life
    // copy is exactly one Life, from a PROC_LIFE value.
    unsafe {
        (*e).hdr = header(OomKind::MarkVictim, pid);
        (*e).total_vm_kb = rd(1, 8);
        (*e).anon_rss_kb = rd(2, 8);
        (*e).file_rss_kb = rd(3, 8);
        (*e).shmem_rss_kb = rd(4, 8);
        (*e).uid = rd(5, 4) as u32;
        (*e).pgtables_kb = rd(6, 8);
        (*e).oom_score_adj = rd(7, 2) as i32;
        (*e)._pad = 0;
        match PROC_LIFE.get_ptr(&pid) {
            Some(l) => {
                core::ptr::copy_nonoverlapping(l, &mut (*e).life, 1);
                (*e).has_life = 1;
            }
            None => {
                core::ptr::write_bytes(
                    &mut (*e).life as *mut Life as *mut u8,
                    0,
                    core::mem::size_of::<Life>(),
                );
                (*e).has_life = 0;
            }
        }
    }
    entry.submit(0);
    0
}

fn reap_event(ctx: &TracePointContext, kind: OomKind) -> u32 {
    // SAFETY: offset read from this kernel's tracefs format.
    let pid = unsafe { ctx.read_at::<i32>(global(&TP_REAP_PID_OFF) as usize) }.unwrap_or(0);
    emit_crit(header(kind, pid as u32));
    0
}

#[tracepoint]
pub fn oom_wake_reaper(ctx: TracePointContext) -> u32 {
    reap_event(&ctx, OomKind::WakeReaper)
}

#[tracepoint]
pub fn oom_start_task_reaping(ctx: TracePointContext) -> u32 {
    reap_event(&ctx, OomKind::StartReaping)
}

#[tracepoint]
pub fn oom_finish_task_reaping(ctx: TracePointContext) -> u32 {
    reap_event(&ctx, OomKind::FinishReaping)
}

#[tracepoint]
pub fn oom_skip_task_reaping(ctx: TracePointContext) -> u32 {
    reap_event(&ctx, OomKind::SkipReaping)
}

/// SIGKILLs generated by a task that is printing an OOM report: the kill.
#[tracepoint]
pub fn oom_signal_generate(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets read from this kernel's tracefs format.
    let sig = unsafe { ctx.read_at::<i32>(global_at(&TP_SIG_OFFS, 0) as usize) }.unwrap_or(0);
    if sig as u32 != SIGKILL {
        return 0;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: plain lookup.
    if unsafe { OOM_ACTIVE.get(&tid) }.is_none() {
        return 0;
    }
    // SAFETY: as above.
    let (pid, result) = unsafe {
        (
            ctx.read_at::<i32>(global_at(&TP_SIG_OFFS, 1) as usize)
                .unwrap_or(0),
            ctx.read_at::<i32>(global_at(&TP_SIG_OFFS, 2) as usize)
                .unwrap_or(0),
        )
    };
    emit_crit(SigkillRecord {
        hdr: header(OomKind::Sigkill, pid as u32),
        result,
        _pad: 0,
    });
    0
}

/// Called from the exit hook when a thread group dies; true if it was an
/// OOM victim.
#[inline(always)]
pub fn victim_exited(tgid: u32) -> bool {
    // SAFETY: plain lookup.
    if unsafe { OOM_VICTIMS.get(&tgid) }.is_some() {
        let _ = OOM_VICTIMS.remove(&tgid);
        emit_crit(header(OomKind::VictimExit, tgid));
        true
    } else {
        false
    }
}
