//! Types shared by the eBPF programs and the loader.
//!
//! Everything here is `#[repr(C)]`, has no implicit padding and carries a
//! compile-time size check, because the kernel side and the user side are
//! compiled by different compilers for different targets.
#![no_std]

pub mod python;

/// How many processes (thread groups) the per-PID maps can hold.
/// The maps are LRU maps, so a host with more live processes loses the
/// least recently active ones rather than failing inserts.
pub const MAX_PROCS: u32 = 32768;

/// Number of RSS counters the kernel keeps per mm (`NR_MM_COUNTERS`):
/// MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES.
pub const RSS_MEMBERS: usize = 4;

/// Indices into [`ProcStats::rss_bytes`], in the kernel's enum order.
/// The loader checks this order against the kernel's BTF at start-up.
pub mod member {
    pub const FILE: usize = 0;
    pub const ANON: usize = 1;
    pub const SWAP: usize = 2;
    pub const SHMEM: usize = 3;
}

/// Per-process, per-CPU aggregate kept by the kernel programs
/// (value of the `PROC_STATS` LRU per-CPU hash, keyed by tgid).
///
/// RSS values are absolute: each CPU stores the last value it saw for each
/// counter and when it saw it. The loader takes, for every counter, the value
/// with the newest timestamp across CPUs. The event counters are summed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStats {
    /// Last seen value of each RSS counter, in bytes (swap: bytes of swap entries).
    pub rss_bytes: [i64; RSS_MEMBERS],
    /// `bpf_ktime_get_ns()` when the value above was seen; 0 = never seen.
    pub rss_ts_ns: [u64; RSS_MEMBERS],
    /// User page faults taken by the process's threads.
    pub faults: u64,
    /// RSS counter changes seen for this process.
    pub rss_events: u64,
}
const _: () = assert!(core::mem::size_of::<ProcStats>() == 80);

/// One per CPU (`CPU_SLOT` per-CPU array): the counters of the process that
/// last ran on this CPU. Events for that process update the slot without a
/// hash lookup; when another process shows up, the slot is flushed into
/// `PROC_STATS` first. The loader merges the slots with the map, so nothing
/// in a slot is lost between samples.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSlot {
    pub tgid: u32,
    /// 1 when `stats` holds data for `tgid`.
    pub valid: u32,
    pub stats: ProcStats,
    /// Sample the user stack of 1 in this many page faults of `tgid`
    /// (0 = not a suspect). Refreshed from `SUSPECTS` when the slot changes
    /// hands and every 64 faults.
    pub sample_period: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<CpuSlot>() == 96);

/// Key of `FAULT_STACKS`: a process and one of its sampled user stacks
/// (an id in the `FAULT_STACK_IDS` stack-trace map). The value is the
/// number of sampled faults with that stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FaultStackKey {
    pub tgid: u32,
    pub stack_id: u32,
}
const _: () = assert!(core::mem::size_of::<FaultStackKey>() == 8);

/// Bytes of user stack copied per sampled fault, from the sampled stack
/// pointer up (see `StackCopy`).
pub const STACK_COPY_BYTES: usize = 16384;
/// The copy is made in chunks of this size, aligned to it, so that a chunk
/// never straddles a page boundary: the first chunk that cannot be read
/// (the top of the stack mapping) ends the copy.
pub const STACK_COPY_CHUNK: usize = 512;

/// A copy of the top of a suspect's user stack at a sampled page fault,
/// with the registers a CFI unwinder starts from. Sent through the
/// `STACK_COPIES` ring buffer; user space unwinds it with the binaries'
/// .eh_frame/.debug_frame (frames without frame pointers).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackCopy {
    pub tgid: u32,
    /// The `FAULT_STACK_IDS` id of the same sample (frame-pointer walk),
    /// or `u32::MAX` when the kernel could not record one.
    pub stack_id: u32,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// User address of `data[0]` (`sp` rounded down to a chunk).
    pub base: u64,
    /// Bytes of `data` that were read.
    pub len: u32,
    pub _pad: u32,
    pub data: [u8; STACK_COPY_BYTES],
}
const _: () = assert!(core::mem::size_of::<StackCopy>() == 48 + STACK_COPY_BYTES);

/// Declares [`OomKind`] and its decoding from the `kind` word of a record
/// in one list, so that a kind cannot exist without `from_u32` knowing it.
macro_rules! oom_kinds {
    ($($(#[$m:meta])* $name:ident = $v:literal,)*) => {
        /// The kind of an OOM record: the first `u32` of every record on
        /// `OOM_EVENTS` and `OOM_CRIT`. User space matches on it with no
        /// `_` arm, so a kind added here does not compile until it is
        /// decoded.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum OomKind {
            $($(#[$m])* $name = $v,)*
        }

        impl OomKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [OomKind] = &[$(OomKind::$name,)*];

            pub const fn from_u32(v: u32) -> Option<Self> {
                match v {
                    $($v => Some(OomKind::$name),)*
                    _ => None,
                }
            }
        }
    };
}

oom_kinds! {
    /// A kernel log line (printk:console) from a task that is printing an
    /// OOM report, or an OOM-specific line ("Killed process",
    /// "oom_reaper:"): an [`OomLine`].
    Console = 1,
    /// oom:mark_victim: a [`MarkVictimRecord`].
    MarkVictim = 2,
    /// oom:wake_reaper: an [`OomHeader`] alone, `target` = victim.
    WakeReaper = 3,
    /// oom:start_task_reaping: an [`OomHeader`] alone, `target` = victim.
    StartReaping = 4,
    /// oom:finish_task_reaping: an [`OomHeader`] alone, `target` = victim.
    FinishReaping = 5,
    /// oom:skip_task_reaping: an [`OomHeader`] alone, `target` = victim.
    SkipReaping = 6,
    /// The victim's thread group died (sched_process_exit, group_dead): an
    /// [`OomHeader`] alone, `target` = victim.
    VictimExit = 7,
    /// SIGKILL generated by a task that is in an OOM report (the kill): a
    /// [`SigkillRecord`].
    Sigkill = 8,
    /// A reclaim episode (direct or memcg) that ended while an OOM report
    /// was being printed or within 2 s of one starting: a
    /// [`ReclaimStallRecord`].
    ReclaimStall = 9,
    /// oom_kill_process() entered (fentry or kprobe), in the invoker's
    /// context: `struct oom_control` itself, an [`OomControlRecord`].
    OomControl = 10,
    /// out_of_memory() returned (fexit or kretprobe): a [`LockHeldRecord`].
    OomLockHeld = 11,
}

/// `enum oom_constraint` of the kernel (mm/oom_kill.c), in its order.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OomConstraint {
    None = 0,
    Cpuset = 1,
    MemoryPolicy = 2,
    Memcg = 3,
}

impl OomConstraint {
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::None),
            1 => Some(Self::Cpuset),
            2 => Some(Self::MemoryPolicy),
            3 => Some(Self::Memcg),
            _ => None,
        }
    }
}

/// Which kind of hook produced a record that more than one can produce
/// (`OomControlRecord::source`, `LockHeldRecord::source`).
pub mod hook_source {
    /// fentry / fexit (BPF trampoline).
    pub const FENTRY: u32 = 1;
    /// kprobe / kretprobe.
    pub const KPROBE: u32 = 2;
}

/// The first bytes of every OOM record: who, when, and what about.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomHeader {
    /// An [`OomKind`] as `u32`.
    pub kind: u32,
    /// Thread id of the task the event happened in (the OOM invoker for
    /// console lines and mark_victim).
    pub pid: u32,
    pub tgid: u32,
    /// The task the event is about (victim, reaped task, signal receiver,
    /// chosen task); 0 when there is none.
    pub target: u32,
    /// bpf_ktime_get_ns(): CLOCK_MONOTONIC.
    pub ts_ns: u64,
    /// comm of the current task.
    pub comm: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<OomHeader>() == 40);

/// oom:mark_victim (`OomKind::MarkVictim`, on `OOM_CRIT`). `hdr.target` =
/// the victim's pid. Sizes as the tracepoint gives them (kB).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkVictimRecord {
    pub hdr: OomHeader,
    pub total_vm_kb: u64,
    pub anon_rss_kb: u64,
    pub file_rss_kb: u64,
    pub shmem_rss_kb: u64,
    pub pgtables_kb: u64,
    pub uid: u32,
    /// The tracepoint's `short`, sign-extended.
    pub oom_score_adj: i32,
    /// 1 when `life` holds the victim's `PROC_LIFE` entry.
    pub has_life: u32,
    pub _pad: u32,
    pub life: Life,
}
const _: () =
    assert!(core::mem::size_of::<MarkVictimRecord>() == 40 + 5 * 8 + 16 + core::mem::size_of::<Life>());

/// The SIGKILL of an OOM kill (`OomKind::Sigkill`, on `OOM_CRIT`).
/// `hdr.target` = the receiving pid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigkillRecord {
    pub hdr: OomHeader,
    /// signal_generate's `result` (TRACE_SIGNAL_DELIVERED = 0, ...).
    pub result: i32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<SigkillRecord>() == 48);

/// A reclaim episode near an OOM report (`OomKind::ReclaimStall`, on
/// `OOM_EVENTS`). `hdr.target` = the reclaiming thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStallRecord {
    pub hdr: OomHeader,
    pub begin_ns: u64,
    pub end_ns: u64,
    /// 1 for memcg reclaim, 0 for direct reclaim.
    pub memcg: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ReclaimStallRecord>() == 64);

/// `struct oom_control` at oom_kill_process() (`OomKind::OomControl`, on
/// `OOM_CRIT`). `hdr.target` = the chosen task's tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomControlRecord {
    pub hdr: OomHeader,
    /// An [`OomConstraint`] as the kernel stored it.
    pub constraint: u32,
    pub order: i32,
    pub gfp_mask: u32,
    /// A [`hook_source`] value.
    pub source: u32,
    pub totalpages: u64,
    pub chosen_points: i64,
    /// kernfs id of the OOM memcg (memcg->css.cgroup->kn->id); meaningful
    /// only when `has_memcg` is 1.
    pub memcg_id: u64,
    /// 1 when oc->memcg was set (a memcg OOM).
    pub has_memcg: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<OomControlRecord>() == 88);

/// out_of_memory()'s run, with oom_lock held by its caller
/// (`OomKind::OomLockHeld`, on `OOM_CRIT`). `hdr.target` = the thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockHeldRecord {
    pub hdr: OomHeader,
    pub enter_ns: u64,
    pub return_ns: u64,
    /// out_of_memory()'s return value (1: a victim was chosen or one was
    /// already dying).
    pub ret: u32,
    /// A [`hook_source`] value.
    pub source: u32,
}
const _: () = assert!(core::mem::size_of::<LockHeldRecord>() == 64);

/// Maximum bytes of one log line carried by an [`OomLine`].
pub const OOM_TEXT_LEN: usize = 512;

/// `OomLineHead::flags`.
pub mod line_flag {
    /// The line starts a report ("<comm> invoked oom-killer:").
    pub const STARTS: u32 = 1;
    /// The line ended with a newline (else it is a fragment pr_cont continues).
    pub const NEWLINE: u32 = 2;
    /// Whether it ended with a newline is not known (classic tracepoint).
    pub const NEWLINE_UNKNOWN: u32 = 4;
}

/// The fixed part of an [`OomLine`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomLineHead {
    /// `hdr.kind` = `OomKind::Console`; `hdr.target` = 0.
    pub hdr: OomHeader,
    /// [`line_flag`] bits.
    pub flags: u32,
    /// Valid bytes of text after the head.
    pub len: u32,
}
pub const OOM_LINE_HEADER: usize = 48;
const _: () = assert!(core::mem::size_of::<OomLineHead>() == OOM_LINE_HEADER);

/// A kernel log line of an OOM report on `OOM_EVENTS`: the head and then
/// `len` bytes of text, nothing more (a variable-size record, so a task
/// dump of short lines does not take 600 bytes a line).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OomLine {
    pub head: OomLineHead,
    pub text: [u8; OOM_TEXT_LEN],
}
const _: () = assert!(core::mem::size_of::<OomLine>() == OOM_LINE_HEADER + OOM_TEXT_LEN);

/// Indices of the global per-CPU counters (`COUNTERS` per-CPU array).
/// These make data loss visible instead of silent.
pub mod counter {
    /// rss_stat events whose mm could not be mapped to a process
    /// (mm without owner, e.g. during exit; or unknown mm_id in the classic path).
    pub const RSS_UNATTRIBUTED: u32 = 0;
    /// rss_stat events with an out-of-range counter index.
    pub const RSS_BAD_MEMBER: u32 = 1;
    /// Kernel reads (bpf_probe_read_kernel) that failed.
    pub const READ_FAILED: u32 = 2;
    /// Inserts into PROC_STATS that failed.
    pub const INSERT_FAILED: u32 = 3;
    /// Entries removed from PROC_STATS because their process exited.
    pub const EXIT_REMOVED: u32 = 4;
    /// OOM report lines that did not fit in the OOM report ring buffer.
    pub const OOM_LOST: u32 = 5;
    /// Victim, kill, reaper and exit events that did not fit in their own
    /// small ring buffer (should stay 0: nothing else writes there).
    pub const OOM_CRIT_LOST: u32 = 6;
    /// Exit records of short-lived growers that did not fit in their ring.
    pub const EXITS_LOST: u32 = 7;
    /// Inserts into PROC_LIFE that failed.
    pub const LIFE_INSERT_FAILED: u32 = 8;
    /// Threads that started an OOM report while OOM_ACTIVE was full.
    pub const OOM_ACTIVE_FULL: u32 = 9;
    /// OOM reports followed for longer than the limit and dropped.
    pub const OOM_ACTIVE_EXPIRED: u32 = 10;
    /// Sampled fault stacks that could not be recorded.
    pub const STACKS_LOST: u32 = 11;
    /// Process records the task iterator could not write (seq buffer).
    pub const ITER_WRITE_FAILED: u32 = 12;
    /// User stack copies (for CFI unwinding) that did not fit in their
    /// ring buffer.
    pub const STACK_COPIES_LOST: u32 = 13;
    /// Python stacks (`PY_STACKS` records) that did not fit in their ring
    /// buffer, or whose count could not be kept.
    pub const PY_STACKS_LOST: u32 = 14;
    /// Sampled faults of a CPython suspect whose thread was not found in
    /// the interpreter's thread list (not a Python thread, or a list
    /// longer than `python::PY_MAX_THREADS`).
    pub const PY_THREAD_MISSED: u32 = 15;
    /// RSS counts of a process that had exited, not put back into
    /// PROC_STATS (`EXITED`): events of its mm torn down later, or a
    /// slot flushed late from another CPU.
    pub const EXITED_DROPPED: u32 = 16;
    pub const NUM: u32 = 17;
}

/// Indices into the `TASK_OFFS` global: byte offsets of the kernel struct
/// members the programs read, taken from the running kernel's BTF at
/// start-up. `u64::MAX` marks a member this kernel does not have; the
/// programs then read 0 for it.
pub mod off {
    pub const TASK_PID: usize = 0;
    pub const TASK_TGID: usize = 1;
    pub const TASK_FLAGS: usize = 2;
    pub const TASK_COMM: usize = 3;
    pub const TASK_MM: usize = 4;
    pub const TASK_REAL_PARENT: usize = 5;
    pub const TASK_SIGNAL: usize = 6;
    pub const TASK_START_TIME: usize = 7;
    pub const TASK_MIN_FLT: usize = 8;
    pub const TASK_MAJ_FLT: usize = 9;
    pub const TASK_EXEC_ID: usize = 10;
    /// task->cgroups, then css_set->subsys[memory_cgrp_id] (one offset),
    /// css->cgroup, cgroup->kn, kernfs_node->id.
    pub const TASK_CGROUPS: usize = 11;
    pub const CSS_SET_MEMCG: usize = 12;
    pub const CSS_CGROUP: usize = 13;
    pub const CGROUP_KN: usize = 14;
    pub const KN_ID: usize = 15;
    /// mm->rss_stat counters: first counter's 64-bit count, and the stride.
    pub const MM_RSS: usize = 16;
    pub const MM_RSS_STRIDE: usize = 17;
    pub const MM_HIWATER_RSS: usize = 18;
    pub const MM_TOTAL_VM: usize = 19;
    pub const MM_ARG_START: usize = 20;
    pub const MM_ARG_END: usize = 21;
    pub const SIG_OOM_SCORE_ADJ: usize = 22;
    pub const SIG_MIN_FLT: usize = 23;
    pub const SIG_MAJ_FLT: usize = 24;
    pub const SIG_NR_THREADS: usize = 25;
    pub const SIG_MAXRSS: usize = 26;
    pub const TASK_GROUP_LEADER: usize = 27;
    pub const TASK_EXIT_CODE: usize = 28;
    /// struct oom_control, read at oom_kill_process() (fentry or kprobe):
    /// memcg, gfp_mask, order, totalpages, chosen, chosen_points,
    /// constraint; and mem_cgroup->css, to name the memcg by kernfs id.
    pub const OC_MEMCG: usize = 29;
    pub const OC_GFP_MASK: usize = 30;
    pub const OC_ORDER: usize = 31;
    pub const OC_TOTALPAGES: usize = 32;
    pub const OC_CHOSEN: usize = 33;
    pub const OC_CHOSEN_POINTS: usize = 34;
    pub const OC_CONSTRAINT: usize = 35;
    pub const MEMCG_CSS: usize = 36;
    /// task->thread.fsbase (x86_64): the thread pointer, which is glibc's
    /// `pthread_t`; matches old CPythons' thread states to threads.
    pub const TASK_FSBASE: usize = 37;
    pub const NUM: usize = 40;
}

/// Kinds of the records the task iterator writes, back to back. Every
/// record starts with its kind (u32); its size follows from the kind.
pub mod rec_kind {
    /// [`ProcRecord`]: one per thread group (written for its leader).
    pub const PROCESS: u32 = 1;
    /// [`ThreadRecord`]: fault counts of a thread that is not the leader.
    pub const THREAD: u32 = 2;
    /// [`AliveRecord`]: a process whose record would be the same as the
    /// one last sent (nothing it reports changed).
    pub const ALIVE: u32 = 3;
}

/// "Still here, unchanged": 8 bytes instead of a whole record, for the
/// many processes of a host that did nothing since the last pass.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AliveRecord {
    pub kind: u32,
    pub tgid: u32,
}
const _: () = assert!(core::mem::size_of::<AliveRecord>() == 8);

/// What the task iterator last sent for a process (`ITER_SEEN`, an array
/// indexed by tgid modulo its size, checked by tgid and start time): a
/// digest of its values, and the css_set and parent pointers it read the
/// memcg id and the ppid through, with those two. When nothing changed,
/// an AliveRecord goes out instead of a whole record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub tgid: u32,
    pub ppid: u32,
    pub start_ns: u64,
    pub sig: u64,
    pub cgroups: u64,
    pub parent: u64,
    pub memcg_id: u64,
}
const _: () = assert!(core::mem::size_of::<Seen>() == 48);

/// Slots of `ITER_SEEN` (a power of two). Two live processes whose tgids
/// share a slot both get whole records every pass: correct, only costlier.
pub const SEEN_SLOTS: u32 = 65536;

/// `ITER_CTL` indices: set by the loader before each iterator pass.
pub mod iter_ctl {
    /// 1: write a whole record for every process (first pass, and every
    /// so often to resynchronise).
    pub const FULL: u32 = 0;
    pub const NUM: u32 = 2;
}

/// `ProcRecord::flags`.
pub mod proc_flag {
    /// PROC_LIFE had an entry: forks, reclaim time and birth are known.
    pub const LIFE: u32 = 1;
    /// Born by fork while leaktrace was running (`birth_*` are the fork's).
    pub const FORKED: u32 = 2;
    /// Exec'd while leaktrace was running (`birth_*` are the exec's).
    pub const EXECED: u32 = 4;
    /// The record was read after the process started exiting (no mm).
    pub const NO_MM: u32 = 8;
}

/// One thread group as the task iterator saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcRecord {
    pub kind: u32,
    pub tgid: u32,
    /// tgid of the real parent.
    pub ppid: u32,
    pub nr_threads: u32,
    /// task->start_time (CLOCK_MONOTONIC ns): with tgid, the process's identity.
    pub start_ns: u64,
    pub comm: [u8; 16],
    /// The mm's RSS counters in pages, in the kernel's order
    /// (file, anon, swap entries, shmem; see [`member`]).
    pub rss_pages: [i64; RSS_MEMBERS],
    /// The mm's RSS high-water mark in pages (updated lazily by the kernel,
    /// on unmap and exit; the peak since the last sample is the larger of
    /// this and the current RSS).
    pub hiwater_pages: u64,
    pub total_vm_pages: u64,
    /// Faults of the leader and of the group's dead threads (live
    /// non-leader threads come as [`ThreadRecord`]s).
    pub min_flt: u64,
    pub maj_flt: u64,
    /// kernfs id of the memory cgroup (its directory's inode number).
    pub memcg_id: u64,
    /// task->self_exec_id: changes at every exec.
    pub exec_id: u64,
    /// From PROC_LIFE: new processes forked, time in reclaim.
    pub forks: u64,
    pub reclaim_ns: u64,
    /// From PROC_LIFE: when it was born (fork or exec) and its RSS then.
    pub birth_ns: u64,
    pub birth_rss_pages: u64,
    pub oom_score_adj: i32,
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<ProcRecord>() == 160);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadRecord {
    pub kind: u32,
    pub tgid: u32,
    pub min_flt: u64,
    pub maj_flt: u64,
}
const _: () = assert!(core::mem::size_of::<ThreadRecord>() == 24);

/// Bytes of argv kept per process at exec.
pub const ARGS_LEN: usize = 128;

/// `Life::flags`.
pub mod life_flag {
    pub const FORKED: u32 = 1;
    pub const EXECED: u32 = 2;
    /// This image's argv has been read (it may have been empty or
    /// unreadable): a fork does not read it again.
    pub const ARGS_READ: u32 = 4;
}

/// What the kernel keeps about a process's life (`PROC_LIFE`, an LRU hash
/// keyed by tgid): written at fork, exec and reclaim, read by the task
/// iterator, and sent with the exit record when the process dies.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Life {
    pub start_ns: u64,
    /// When the current image started: fork time, or exec time if it
    /// exec'd later. 0 = before leaktrace started.
    pub birth_ns: u64,
    /// RSS (file + anon + shmem pages) at that moment.
    pub birth_rss_pages: u64,
    /// signal->maxrss (pages) just after exec: the peak inherited from the
    /// image before the exec, so that it is not taken for this one's.
    pub maxrss_at_exec: u64,
    pub forks: u64,
    pub reclaim_ns: u64,
    pub flags: u32,
    /// Valid bytes in `args` (NUL-separated argv, cut at ARGS_LEN).
    pub args_len: u32,
    pub args: [u8; ARGS_LEN],
}
const _: () = assert!(core::mem::size_of::<Life>() == 56 + ARGS_LEN);

impl Life {
    /// The argv bytes kept (NUL-separated), without the unused tail.
    pub fn argv(&self) -> &[u8] {
        &self.args[..(self.args_len as usize).min(ARGS_LEN)]
    }
}

impl Default for Life {
    fn default() -> Self {
        Self {
            start_ns: 0,
            birth_ns: 0,
            birth_rss_pages: 0,
            maxrss_at_exec: 0,
            forks: 0,
            reclaim_ns: 0,
            flags: 0,
            args_len: 0,
            args: [0; ARGS_LEN],
        }
    }
}

/// A process that grew and died (`EXITS` ring buffer): what its life
/// looked like, so that a process that lived between two samples is not
/// invisible. Sent when the group dies, for processes born while
/// leaktrace ran whose peak rose at least `EXIT_MIN_GROWTH_PAGES` above
/// their birth RSS, and for OOM victims.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub tgid: u32,
    pub ppid: u32,
    pub exit_ns: u64,
    /// signal->maxrss (pages): the peak RSS of the group's mm, at least.
    pub maxrss_pages: u64,
    pub memcg_id: u64,
    /// task->exit_code: the wait status (exit code << 8, or the signal).
    pub exit_code: u32,
    /// Why it was sent, see [`exit_reason`].
    pub reason: u32,
    pub comm: [u8; 16],
    pub life: Life,
}

/// `ExitRecord::reason`.
pub mod exit_reason {
    /// Born while leaktrace ran and grew at least EXIT_MIN_GROWTH_PAGES.
    pub const GREW: u32 = 0;
    pub const OOM_VICTIM: u32 = 1;
    /// Exited within `AFTER_KILL_NS` of an OOM victim's death, in its
    /// memcg, as its parent or an ancestor, or as a sibling (same parent).
    pub const AFTER_OOM_KILL: u32 = 2;
}

/// How long after an OOM victim dies the exits around it are sent.
pub const AFTER_KILL_NS: u64 = 10_000_000_000;
const _: () = assert!(core::mem::size_of::<ExitRecord>() == 40 + 16 + core::mem::size_of::<Life>());

/// Exit records are sent for growth of at least this many pages (4 MiB
/// of 4 KiB pages); smaller lives are only counted.
pub const EXIT_MIN_GROWTH_PAGES: u64 = 1024;

/// Names of the global variables the loader sets before loading
/// (`EbpfLoader::override_global`). Offsets come from the running kernel's
/// BTF and tracefs formats; nothing is hard-coded for one kernel.
pub mod globals {
    /// Offset of `mm_struct.owner` (CONFIG_MEMCG).
    pub const MM_OWNER_OFF: &str = "MM_OWNER_OFF";
    /// Offset of `task_struct.tgid`.
    pub const TASK_TGID_OFF: &str = "TASK_TGID_OFF";
    /// Offset of `mm_struct.rss_stat`.
    pub const MM_RSS_OFF: &str = "MM_RSS_OFF";
    /// Distance between two RSS counters inside `rss_stat`.
    pub const RSS_STRIDE: &str = "RSS_STRIDE";
    /// Offset of the 64-bit count inside one counter.
    pub const RSS_COUNT_OFF: &str = "RSS_COUNT_OFF";
    /// log2(PAGE_SIZE).
    pub const PAGE_SHIFT: &str = "PAGE_SHIFT";
    /// kmem:rss_stat classic tracepoint field offsets (from tracefs).
    pub const TP_RSS_MM_ID_OFF: &str = "TP_RSS_MM_ID_OFF";
    pub const TP_RSS_CURR_OFF: &str = "TP_RSS_CURR_OFF";
    pub const TP_RSS_MEMBER_OFF: &str = "TP_RSS_MEMBER_OFF";
    pub const TP_RSS_SIZE_OFF: &str = "TP_RSS_SIZE_OFF";
    /// sched:sched_process_exit `group_dead` offset, or u64::MAX if absent.
    pub const TP_EXIT_GROUP_DEAD_OFF: &str = "TP_EXIT_GROUP_DEAD_OFF";
    /// task:task_newtask `clone_flags` offset.
    pub const TP_NEWTASK_FLAGS_OFF: &str = "TP_NEWTASK_FLAGS_OFF";
    /// oom:mark_victim field offsets: pid, total_vm, anon_rss, file_rss,
    /// shmem_rss, uid, pgtables, oom_score_adj (u64::MAX if absent).
    pub const TP_MV_OFFS: &str = "TP_MV_OFFS";
    /// printk:console `msg` (__data_loc) offset.
    pub const TP_CONSOLE_MSG_OFF: &str = "TP_CONSOLE_MSG_OFF";
    /// signal:signal_generate `sig`, `pid`, `result` offsets.
    pub const TP_SIG_OFFS: &str = "TP_SIG_OFFS";
    /// `pid` offset in the oom:*reap* events.
    pub const TP_REAP_PID_OFF: &str = "TP_REAP_PID_OFF";
    /// Struct member offsets, see [`super::off`].
    pub const TASK_OFFS: &str = "TASK_OFFS";
}

#[cfg(feature = "user")]
// SAFETY: ProcStats is repr(C), Copy, has no padding (checked by the size
// assertion above) and every bit pattern is a valid value.
unsafe impl aya::Pod for ProcStats {}

#[cfg(feature = "user")]
// SAFETY: as for ProcStats: repr(C), Copy, no padding, any bit pattern valid.
unsafe impl aya::Pod for CpuSlot {}

#[cfg(feature = "user")]
// SAFETY: two u32, repr(C), no padding.
unsafe impl aya::Pod for FaultStackKey {}

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, no padding (size checked), any bit pattern valid.
unsafe impl aya::Pod for Life {}
