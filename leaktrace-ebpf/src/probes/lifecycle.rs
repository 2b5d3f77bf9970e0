//! Process lifecycle: fork, exec and exit. These fire once per process
//! event, never per page fault.
//!
//! `PROC_LIFE` keeps, per process, when its current image was born (fork,
//! or exec) and its RSS then, its argv at exec, its forks and its time in
//! reclaim. The task iterator reads it every interval. When a process that
//! grew dies, or an OOM victim dies, its life goes to user space on the
//! `EXITS` ring, so a process that was born, grew and died between two
//! samples is still seen (stress-ng's bigheap children live half a second).
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_user_buf},
    macros::{btf_tracepoint, map, tracepoint},
    maps::{LruHashMap, RingBuf},
    programs::{BtfTracePointContext, TracePointContext},
};
use leaktrace_common::{
    counter, exit_reason, life_flag, off, ExitRecord, Life, AFTER_KILL_NS, ARGS_LEN, EXIT_MIN_GROWTH_PAGES,
};

use super::{
    bump, current_tgid, drop_slot, global,
    kread::{leader_start, memcg_id, o, resident, rss_pages, Mem, Probe},
    life_entry, EXITED, PROC_LIFE, PROC_STATS,
};

#[no_mangle]
static TP_EXIT_GROUP_DEAD_OFF: u64 = u64::MAX;
#[no_mangle]
static TP_NEWTASK_FLAGS_OFF: u64 = 32;

const CLONE_THREAD: u64 = 0x0001_0000;

/// Lives of processes that grew and died, see `leaktrace_common::ExitRecord`:
/// about 1,000 records; the sampling thread drains it at least every 100 ms.
#[map]
pub static EXITS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// After an OOM victim dies: its memcg, and its parent and two more
/// ancestors, each -> until when (ns) the exits around them are sent.
#[map]
static AFTER_KILL_MEMCG: LruHashMap<u64, u64> = LruHashMap::with_max_entries(256, 0);
#[map]
static AFTER_KILL_TGID: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1024, 0);

/// The victim is dying: watch the processes around it for a while.
#[inline(always)]
fn watch_after_kill(task: u64) {
    // SAFETY: no preconditions.
    let until = unsafe { bpf_ktime_get_ns() } + AFTER_KILL_NS;
    let memcg = memcg_id::<Probe>(task);
    if memcg != 0 {
        let _ = AFTER_KILL_MEMCG.insert(&memcg, &until, 0);
    }
    let mut t = task;
    for _ in 0..3 {
        t = Probe::u64(t, o(off::TASK_REAL_PARENT));
        let tgid = Probe::u32(t, o(off::TASK_TGID));
        if tgid <= 1 {
            break;
        }
        let _ = AFTER_KILL_TGID.insert(&tgid, &until, 0);
    }
}

/// Is this exit around a recent OOM kill (see `watch_after_kill`)?
#[inline(always)]
fn after_kill(task: u64, tgid: u32) -> bool {
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let live = |v: Option<&u64>| v.is_some_and(|u| *u > now);
    let ppid = Probe::u32(Probe::u64(task, o(off::TASK_REAL_PARENT)), o(off::TASK_TGID));
    let memcg = memcg_id::<Probe>(task);
    // SAFETY: plain lookups, values copied out.
    unsafe {
        live(AFTER_KILL_TGID.get(&tgid))
            || live(AFTER_KILL_TGID.get(&ppid))
            || (memcg != 0 && live(AFTER_KILL_MEMCG.get(&memcg)))
    }
}

/// The current task as an integer kernel pointer.
#[inline(always)]
fn current_task() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_get_current_task() }
}

/// Adds to a counter of the current process's life (forks, reclaim time).
#[inline(always)]
pub fn add_to_current(field: LifeCounter, v: u64) {
    let task = current_task();
    let Some(l) = life_entry(current_tgid(), leader_start::<Probe>(task)) else {
        return;
    };
    // SAFETY: map value pointer, valid while the program runs. Two threads
    // of one process finishing a fork or a reclaim at the same instant on
    // two CPUs can lose one update (the BPF target has no 64-bit atomic
    // add in stable core); these are rates for display, not accounting.
    unsafe {
        match field {
            LifeCounter::Forks => (*l).forks += v,
            LifeCounter::ReclaimNs => (*l).reclaim_ns += v,
        }
    }
    super::iter::invalidate(current_tgid());
}

pub enum LifeCounter {
    Forks,
    ReclaimNs,
}

/// A new process (not a thread): its birth RSS is the RSS of its fresh
/// mm (the pages it shares copy-on-write with its parent count, as in
/// /proc), and it inherits its parent's argv until it execs.
#[btf_tracepoint(function = "task_newtask")]
pub fn task_newtask_btf(ctx: BtfTracePointContext) -> i32 {
    let task: u64 = ctx.arg(0);
    let flags: u64 = ctx.arg(1);
    if flags & CLONE_THREAD != 0 {
        return 0;
    }
    add_to_current(LifeCounter::Forks, 1);
    let child = Probe::u32(task, o(off::TASK_TGID));
    // A new process with this tgid: its counters are its own.
    let _ = EXITED.remove(&child);
    let mm = Probe::u64(task, o(off::TASK_MM));
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(l) = life_entry(child, Probe::u64(task, o(off::TASK_START_TIME))) else {
        return 0;
    };
    let parent = PROC_LIFE.get_ptr_mut(&current_tgid());
    // SAFETY: map value pointers, valid while the program runs.
    unsafe {
        (*l).birth_ns = now;
        (*l).birth_rss_pages = resident(&rss_pages::<Probe>(mm));
        (*l).flags |= life_flag::FORKED;
        if let Some(p) = parent {
            // A parent that exec'd before leaktrace started (a pool's
            // master, a shell) has no argv kept yet: it is read now, once
            // (ARGS_READ, even when it comes back empty or faults),
            // from the parent's own memory (current is the parent), so
            // that a child killed before any sample still has a command
            // line.
            if (*p).flags & life_flag::ARGS_READ == 0 {
                read_args(current_task(), &mut *p);
            }
            (*l).args = (*p).args;
            (*l).args_len = (*p).args_len;
            // Until it execs, the child's argv is its parent's.
            (*l).flags |= (*p).flags & life_flag::ARGS_READ;
        }
    }
    0
}

/// Copies the first ARGS_LEN bytes of the current task's argv into `l`.
/// `task` must be the current task: its user memory is read.
#[inline(always)]
fn read_args(task: u64, l: &mut Life) {
    let mm = Probe::u64(task, o(off::TASK_MM));
    let (start, end) = (
        Probe::u64(mm, o(off::MM_ARG_START)),
        Probe::u64(mm, o(off::MM_ARG_END)),
    );
    l.args_len = 0;
    l.flags |= life_flag::ARGS_READ;
    let n = end.saturating_sub(start);
    let n = if n > ARGS_LEN as u64 { ARGS_LEN } else { n as usize };
    if let Some(dst) = l.args.get_mut(..n) {
        // SAFETY: the copy is bounded by ARGS_LEN and reads the current
        // task's memory; a fault leaves args_len at 0.
        if start != 0 && unsafe { bpf_probe_read_user_buf(start as *const u8, dst) }.is_ok() {
            l.args_len = n as u32;
        }
    }
}

/// Fallback without tp_btf: forks are counted, births are not known.
#[tracepoint]
pub fn task_newtask_tp(ctx: TracePointContext) -> u32 {
    // SAFETY: offset read from this kernel's tracefs format.
    let flags = unsafe { ctx.read_at::<u64>(global(&TP_NEWTASK_FLAGS_OFF) as usize) }.unwrap_or(0);
    if flags & CLONE_THREAD == 0 {
        add_to_current(LifeCounter::Forks, 1);
    }
    0
}

/// A new image: its birth is now, its RSS now is its birth RSS, and its
/// argv (the first ARGS_LEN bytes) is kept for when /proc is too late.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let task = current_task();
    let tgid = current_tgid();
    let Some(l) = life_entry(tgid, leader_start::<Probe>(task)) else {
        return 0;
    };
    let mm = Probe::u64(task, o(off::TASK_MM));
    let signal = Probe::u64(task, o(off::TASK_SIGNAL));
    // SAFETY: map value pointer, valid while the program runs.
    unsafe {
        (*l).birth_ns = bpf_ktime_get_ns();
        (*l).birth_rss_pages = resident(&rss_pages::<Probe>(mm));
        (*l).maxrss_at_exec = Probe::u64(signal, o(off::SIG_MAXRSS));
        (*l).flags |= life_flag::EXECED;
        read_args(task, &mut *l);
    }
    0
}

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
        let victim = super::oom::victim_exited(tgid);
        drop_slot(tgid);
        // SAFETY: no preconditions.
        let _ = EXITED.insert(&tgid, &unsafe { bpf_ktime_get_ns() }, 0);
        if PROC_STATS.remove(&tgid).is_ok() {
            bump(counter::EXIT_REMOVED);
        }
        life_ends(tgid, victim);
    }
    0
}

/// Sends the life of a process that grew, was an OOM victim or died
/// around one, and forgets it.
#[inline(always)]
fn life_ends(tgid: u32, oom_victim: bool) {
    let task = current_task();
    let reason = if oom_victim {
        watch_after_kill(task);
        Some(exit_reason::OOM_VICTIM)
    } else if after_kill(task, tgid) {
        Some(exit_reason::AFTER_OOM_KILL)
    } else {
        None
    };
    let Some(l) = PROC_LIFE.get_ptr(&tgid) else {
        if let Some(r) = reason {
            send_exit(task, tgid, None, r);
        }
        return;
    };
    // SAFETY: map value pointer, valid while the program runs.
    let life = unsafe { &*l };
    let signal = Probe::u64(task, o(off::TASK_SIGNAL));
    let maxrss = Probe::u64(signal, o(off::SIG_MAXRSS));
    // After an exec, maxrss started at the old image's peak: only a larger
    // value is this image's own.
    let own_peak = life.flags & life_flag::EXECED == 0 || maxrss > life.maxrss_at_exec;
    let grew = life.birth_ns != 0 && own_peak && maxrss >= life.birth_rss_pages + EXIT_MIN_GROWTH_PAGES;
    match (reason, grew) {
        (Some(r), _) => send_exit(task, tgid, Some(life), r),
        (None, true) => send_exit(task, tgid, Some(life), exit_reason::GREW),
        (None, false) => {}
    }
    let _ = PROC_LIFE.remove(&tgid);
}

#[inline(always)]
fn send_exit(task: u64, tgid: u32, life: Option<&Life>, reason: u32) {
    let Some(mut entry) = EXITS.reserve::<ExitRecord>(0) else {
        bump(counter::EXITS_LOST);
        return;
    };
    let e = entry.as_mut_ptr();
    let signal = Probe::u64(task, o(off::TASK_SIGNAL));
    let parent = Probe::u64(task, o(off::TASK_REAL_PARENT));
    // SAFETY: `e` points at a reserved, exclusively owned record; every
    // field is written before submit.
    unsafe {
        (*e).tgid = tgid;
        (*e).ppid = Probe::u32(parent, o(off::TASK_TGID));
        (*e).exit_ns = bpf_ktime_get_ns();
        (*e).maxrss_pages = Probe::u64(signal, o(off::SIG_MAXRSS));
        (*e).memcg_id = memcg_id::<Probe>(task);
        (*e).exit_code = Probe::u32(task, o(off::TASK_EXIT_CODE));
        (*e).reason = reason;
        (*e).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*e).life = match life {
            Some(l) => *l,
            None => Life::default(),
        };
    }
    entry.submit(0);
}
