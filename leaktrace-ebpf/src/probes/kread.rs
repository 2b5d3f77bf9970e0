//! Reading kernel structs without CO-RE.
//!
//! Rust eBPF gets no CO-RE relocations, so the member offsets come from the
//! running kernel's BTF: the loader fills `TASK_OFFS` (indices in
//! `leaktrace_common::off`) before loading, and the programs add them to
//! the struct pointers. A member the kernel does not have is `u64::MAX`
//! and reads as 0.
//!
//! Two ways to load, one body of code: [`Direct`] loads through BTF-typed
//! pointers (the verifier checks each load against the kernel's own struct
//! layout and turns a fault into a zero read; cheapest), and [`Probe`]
//! uses `bpf_probe_read_kernel` (any kernel, any pointer). The task
//! iterator comes in both flavours; the loader attaches the first that the
//! verifier accepts.
use aya_ebpf::helpers::bpf_probe_read_kernel;
use leaktrace_common::{member, off, RSS_MEMBERS};

/// Member offsets, see `leaktrace_common::off`.
#[no_mangle]
static TASK_OFFS: [u64; off::NUM] = [u64::MAX; off::NUM];

/// The offset of member `i`, or `u64::MAX` if this kernel lacks it.
#[inline(always)]
pub fn o(i: usize) -> u64 {
    if i < off::NUM {
        // SAFETY: reading an element of a static array, index checked.
        unsafe { core::ptr::read_volatile(&TASK_OFFS[i]) }
    } else {
        u64::MAX
    }
}

/// Loads of plain values at `base + off`. `base` is a kernel pointer held
/// as an integer; 0 or a missing member reads as 0.
pub trait Mem {
    fn u64(base: u64, off: u64) -> u64;
    fn u32(base: u64, off: u64) -> u32;
    fn i16(base: u64, off: u64) -> i16;
}

pub struct Direct;
pub struct Probe;

impl Mem for Direct {
    #[inline(always)]
    fn u64(base: u64, off: u64) -> u64 {
        if base == 0 || off == u64::MAX {
            return 0;
        }
        // SAFETY: `base` is a BTF-typed kernel pointer; the verifier checks
        // the access against BTF and makes a faulting load read 0.
        unsafe { core::ptr::read_volatile((base + off) as *const u64) }
    }
    #[inline(always)]
    fn u32(base: u64, off: u64) -> u32 {
        if base == 0 || off == u64::MAX {
            return 0;
        }
        // SAFETY: as above.
        unsafe { core::ptr::read_volatile((base + off) as *const u32) }
    }
    #[inline(always)]
    fn i16(base: u64, off: u64) -> i16 {
        if base == 0 || off == u64::MAX {
            return 0;
        }
        // SAFETY: as above.
        unsafe { core::ptr::read_volatile((base + off) as *const i16) }
    }
}

impl Mem for Probe {
    #[inline(always)]
    fn u64(base: u64, off: u64) -> u64 {
        if base == 0 || off == u64::MAX {
            return 0;
        }
        // SAFETY: bpf_probe_read_kernel copes with any address.
        unsafe { bpf_probe_read_kernel((base + off) as *const u64) }.unwrap_or(0)
    }
    #[inline(always)]
    fn u32(base: u64, off: u64) -> u32 {
        if base == 0 || off == u64::MAX {
            return 0;
        }
        // SAFETY: as above.
        unsafe { bpf_probe_read_kernel((base + off) as *const u32) }.unwrap_or(0)
    }
    #[inline(always)]
    fn i16(base: u64, off: u64) -> i16 {
        if base == 0 || off == u64::MAX {
            return 0;
        }
        // SAFETY: as above.
        unsafe { bpf_probe_read_kernel((base + off) as *const i16) }.unwrap_or(0)
    }
}

/// PF_KTHREAD in task->flags.
pub const PF_KTHREAD: u32 = 0x0020_0000;

/// The memory cgroup's kernfs id: task->cgroups->subsys[memory]->cgroup->kn->id.
#[inline(always)]
pub fn memcg_id<M: Mem>(task: u64) -> u64 {
    let cgroups = M::u64(task, o(off::TASK_CGROUPS));
    let css = M::u64(cgroups, o(off::CSS_SET_MEMCG));
    let cg = M::u64(css, o(off::CSS_CGROUP));
    let kn = M::u64(cg, o(off::CGROUP_KN));
    M::u64(kn, o(off::KN_ID))
}

/// The mm's RSS counters in pages (file, anon, swap entries, shmem).
#[inline(always)]
pub fn rss_pages<M: Mem>(mm: u64) -> [i64; 4] {
    let base = o(off::MM_RSS);
    let stride = o(off::MM_RSS_STRIDE);
    if base == u64::MAX || stride == u64::MAX {
        return [0; 4];
    }
    [
        M::u64(mm, base) as i64,
        M::u64(mm, base + stride) as i64,
        M::u64(mm, base + 2 * stride) as i64,
        M::u64(mm, base + 3 * stride) as i64,
    ]
}

/// Resident pages: file + anon + shmem (swap entries are not resident).
#[inline(always)]
pub fn resident(r: &[i64; RSS_MEMBERS]) -> u64 {
    let sum = r[member::FILE].max(0) + r[member::ANON].max(0) + r[member::SHMEM].max(0);
    sum as u64
}

/// start_time of the thread group leader: with the tgid, the identity of
/// a process (a thread has its own start_time).
#[inline(always)]
pub fn leader_start<M: Mem>(task: u64) -> u64 {
    let leader = M::u64(task, o(off::TASK_GROUP_LEADER));
    M::u64(if leader != 0 { leader } else { task }, o(off::TASK_START_TIME))
}
