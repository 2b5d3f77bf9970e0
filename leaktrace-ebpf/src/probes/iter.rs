//! The default data path: a BPF task iterator that the loader reads once
//! per interval. It writes one fixed-size binary record per thread group
//! (no text formatting in the kernel) and a small record of fault counts
//! per other thread. Nothing runs between two reads, so its cost does not
//! depend on the page-fault rate.
//!
//! Two programs, one body: `task_iter_direct` loads through BTF-typed
//! pointers, `task_iter_probe` uses bpf_probe_read_kernel (see `kread`).
use core::ffi::c_void;

use aya_ebpf::{
    bindings::seq_file,
    helpers::bpf_seq_write,
    macros::map,
    maps::{Array, PerCpuArray},
};
use leaktrace_common::{
    counter, iter_ctl, life_flag, off, proc_flag, rec_kind, AliveRecord, ProcRecord, Seen, ThreadRecord,
    SEEN_SLOTS,
};

use super::{
    bump,
    kread::{o, rss_pages, Direct, Mem, Probe, PF_KTHREAD},
    PROC_LIFE,
};

/// What was last sent per process, see `leaktrace_common::Seen`. An array:
/// the lookup is a bounds check and an add, no hashing.
#[map]
pub static ITER_SEEN: Array<Seen> = Array::with_max_entries(SEEN_SLOTS, 0);

/// Makes the next pass send a whole record for `tgid` (its forks or
/// reclaim time changed: they are not in the digest).
#[inline(always)]
pub fn invalidate(tgid: u32) {
    if let Some(s) = ITER_SEEN.get_ptr_mut(tgid & (SEEN_SLOTS - 1)) {
        // SAFETY: an element of the array map, valid while the program runs.
        unsafe { (*s).sig = 0 };
    }
}

/// Set by the loader before each pass, see `leaktrace_common::iter_ctl`.
#[map]
pub static ITER_CTL: Array<u64> = Array::with_max_entries(iter_ctl::NUM, 0);

/// Scratch space for one record: too big to build on the 512-byte stack
/// comfortably next to everything else.
#[map]
static ITER_SCRATCH: PerCpuArray<ProcRecord> = PerCpuArray::with_max_entries(1, 0);

#[no_mangle]
#[link_section = "iter/task"]
pub fn task_iter_direct(ctx: *mut c_void) -> i32 {
    visit::<Direct>(ctx)
}

#[no_mangle]
#[link_section = "iter/task"]
pub fn task_iter_probe(ctx: *mut c_void) -> i32 {
    visit::<Probe>(ctx)
}

#[inline(always)]
fn visit<M: Mem>(ctx: *mut c_void) -> i32 {
    // The context is `struct bpf_iter__task { meta; task; }`: two pointers.
    // SAFETY: reading the two pointer-sized context arguments.
    let (meta, task) = unsafe {
        (
            core::ptr::read_volatile(ctx as *const u64),
            core::ptr::read_volatile((ctx as *const u64).add(1)),
        )
    };
    if task == 0 || meta == 0 {
        return 0; // the end-of-iteration call
    }
    // meta->seq: the first member of struct bpf_iter_meta. A direct load,
    // so the verifier knows it is the seq_file bpf_seq_write wants.
    // SAFETY: `meta` is the BTF-typed iterator meta pointer.
    let seq = unsafe { core::ptr::read_volatile(meta as *const *mut seq_file) };
    let flags = M::u32(task, o(off::TASK_FLAGS));
    if flags & PF_KTHREAD != 0 {
        return 0;
    }
    let pid = M::u32(task, o(off::TASK_PID));
    let tgid = M::u32(task, o(off::TASK_TGID));
    if pid != tgid {
        let t = ThreadRecord {
            kind: rec_kind::THREAD,
            tgid,
            min_flt: M::u64(task, o(off::TASK_MIN_FLT)),
            maj_flt: M::u64(task, o(off::TASK_MAJ_FLT)),
        };
        if t.min_flt | t.maj_flt != 0 {
            write(
                seq,
                &t as *const ThreadRecord as *const c_void,
                core::mem::size_of::<ThreadRecord>(),
            );
        }
        return 0;
    }
    let Some(r) = ITER_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let full = ITER_CTL.get(iter_ctl::FULL).copied().unwrap_or(1) != 0;
    // SAFETY: this CPU's scratch record, valid while the program runs;
    // every field is written before the record is copied out.
    unsafe {
        if fill::<M>(task, tgid, &mut *r, full) {
            if !write(seq, r as *const c_void, core::mem::size_of::<ProcRecord>()) {
                // The seq buffer was full: the kernel shows this task
                // again at the next read(), and `fill` already took this
                // record as sent. Forget that, or the retry would say
                // "unchanged" and the change would be lost until the
                // next full pass.
                invalidate(tgid);
            }
        } else {
            let a = AliveRecord {
                kind: rec_kind::ALIVE,
                tgid,
            };
            write(
                seq,
                &a as *const AliveRecord as *const c_void,
                core::mem::size_of::<AliveRecord>(),
            );
        }
    }
    0
}

/// Writes one record; false when the seq buffer had no room (the kernel
/// then shows this same task again at the next read()).
#[inline(always)]
fn write(seq: *mut seq_file, p: *const c_void, len: usize) -> bool {
    // SAFETY: `p` points at `len` readable bytes.
    if unsafe { bpf_seq_write(seq, p, len as u32) } < 0 {
        bump(counter::ITER_WRITE_FAILED);
        return false;
    }
    true
}

/// Mixes one value into a digest (FxHash step): a changed value almost
/// surely changes the digest; a false "unchanged" is corrected by the
/// next full pass.
#[inline(always)]
fn mix(h: u64, v: u64) -> u64 {
    (h.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95)
}

/// Fills the record; false when nothing changed since the record last sent
/// for this process (then only an AliveRecord goes out). The check reads
/// as little as it can (every field is a cache miss on 10,000 processes):
/// the RSS counters, the task's fault counts, its start time and the
/// css_set and parent pointers. Everything else is read only for a whole
/// record; a change to it alone (oom_score_adj, comm, the thread count)
/// shows at the next change or the next full pass. The pointer chases to
/// the memcg and the parent happen only when those pointers changed.
#[inline(always)]
fn fill<M: Mem>(task: u64, tgid: u32, r: &mut ProcRecord, full: bool) -> bool {
    let mm = M::u64(task, o(off::TASK_MM));
    let parent = M::u64(task, o(off::TASK_REAL_PARENT));
    let cgroups = M::u64(task, o(off::TASK_CGROUPS));
    let start_ns = M::u64(task, o(off::TASK_START_TIME));
    let rss = rss_pages::<M>(mm);
    let (min_flt, maj_flt) = (
        M::u64(task, o(off::TASK_MIN_FLT)),
        M::u64(task, o(off::TASK_MAJ_FLT)),
    );
    let mut sig = mix(0, rss[0] as u64);
    sig = mix(sig, rss[1] as u64);
    sig = mix(sig, rss[2] as u64);
    sig = mix(sig, rss[3] as u64);
    sig = mix(sig, min_flt);
    sig = mix(sig, maj_flt);
    // A plain reference the verifier can follow (an Option around it ends
    // up as a flag and a pointer it cannot relate). The array lookup does
    // not fail for an index below its size; if it did, a stack stand-in
    // makes every record whole.
    let mut stand_in = Seen::default();
    let s: &mut Seen = match ITER_SEEN.get_ptr_mut(tgid & (SEEN_SLOTS - 1)) {
        // SAFETY: an element of the array map, valid while the program runs.
        Some(p) => unsafe { &mut *p },
        None => &mut stand_in,
    };
    let known = s.tgid == tgid && s.start_ns == start_ns;
    if known && !full && s.sig == sig && s.cgroups == cgroups && s.parent == parent {
        return false;
    }
    let signal = M::u64(task, o(off::TASK_SIGNAL));
    let comm = o(off::TASK_COMM);
    r.kind = rec_kind::PROCESS;
    r.tgid = tgid;
    r.start_ns = start_ns;
    r.rss_pages = rss;
    r.nr_threads = M::u32(signal, o(off::SIG_NR_THREADS));
    let (c0, c1) = if comm == u64::MAX {
        (0, 0)
    } else {
        (M::u64(task, comm), M::u64(task, comm + 8))
    };
    r.comm[..8].copy_from_slice(&c0.to_le_bytes());
    r.comm[8..].copy_from_slice(&c1.to_le_bytes());
    r.hiwater_pages = M::u64(mm, o(off::MM_HIWATER_RSS));
    r.total_vm_pages = M::u64(mm, o(off::MM_TOTAL_VM));
    r.min_flt = min_flt + M::u64(signal, o(off::SIG_MIN_FLT));
    r.maj_flt = maj_flt + M::u64(signal, o(off::SIG_MAJ_FLT));
    r.exec_id = M::u32(task, o(off::TASK_EXEC_ID)) as u64;
    r.oom_score_adj = M::i16(signal, o(off::SIG_OOM_SCORE_ADJ)) as i32;
    r.flags = if mm == 0 { proc_flag::NO_MM } else { 0 };
    r.memcg_id = if known && s.cgroups == cgroups {
        s.memcg_id
    } else {
        memcg_of::<M>(cgroups)
    };
    r.ppid = if known && s.parent == parent {
        s.ppid
    } else {
        M::u32(parent, o(off::TASK_TGID))
    };
    *s = Seen {
        tgid,
        ppid: r.ppid,
        start_ns,
        sig,
        cgroups,
        parent,
        memcg_id: r.memcg_id,
    };
    (r.forks, r.reclaim_ns, r.birth_ns, r.birth_rss_pages) = (0, 0, 0, 0);
    if let Some(l) = PROC_LIFE.get_ptr(&tgid) {
        // SAFETY: map value pointer, valid while the program runs.
        let l = unsafe { &*l };
        if l.start_ns == start_ns {
            r.flags |= proc_flag::LIFE;
            r.forks = l.forks;
            r.reclaim_ns = l.reclaim_ns;
            r.birth_ns = l.birth_ns;
            r.birth_rss_pages = l.birth_rss_pages;
            if l.flags & life_flag::FORKED != 0 {
                r.flags |= proc_flag::FORKED;
            }
            if l.flags & life_flag::EXECED != 0 {
                r.flags |= proc_flag::EXECED;
            }
        }
    }
    true
}

/// The memcg's kernfs id from a css_set: subsys[memory]->cgroup->kn->id.
#[inline(always)]
fn memcg_of<M: Mem>(cgroups: u64) -> u64 {
    let css = M::u64(cgroups, o(off::CSS_SET_MEMCG));
    let cg = M::u64(css, o(off::CSS_CGROUP));
    let kn = M::u64(cg, o(off::CGROUP_KN));
    M::u64(kn, o(off::KN_ID))
}
