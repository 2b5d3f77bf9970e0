//! Types shared by the eBPF programs and the loader.
//!
//! Everything here is `#[repr(C)]`, has no implicit padding and carries a
//! compile-time size check, because the kernel side and the user side are
//! compiled by different compilers for different targets.
#![no_std]

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
    /// New processes (not threads) forked by this process.
    pub forks: u64,
    pub _reserved: u64,
}
const _: () = assert!(core::mem::size_of::<ProcStats>() == 96);

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
}
const _: () = assert!(core::mem::size_of::<CpuSlot>() == 104);

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
    pub const NUM: u32 = 8;
}

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
}

#[cfg(feature = "user")]
// SAFETY: ProcStats is repr(C), Copy, has no padding (checked by the size
// assertion above) and every bit pattern is a valid value.
unsafe impl aya::Pod for ProcStats {}

#[cfg(feature = "user")]
// SAFETY: as for ProcStats: repr(C), Copy, no padding, any bit pattern valid.
unsafe impl aya::Pod for CpuSlot {}
