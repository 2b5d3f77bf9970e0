//! Fault stacks of suspects, and only of suspects.
//!
//! Default: a software page-fault perf event is opened on each thread of a
//! suspect (inherit=1, so threads it creates later are covered), with a
//! sample period and the `fault_sample` program attached. Other processes
//! have nothing attached at all. When the suspect is dropped, its events
//! are closed.
//!
//! Fallback (the per-fault hook path, where `page_fault_user` is attached
//! anyway): the suspect's tgid goes into the `SUSPECTS` map and that
//! program records 1 in N of its faults.
use std::{
    collections::{HashMap as StdHashMap, HashSet},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{Context, Result};
use aya::{
    maps::{HashMap, MapData, StackTraceMap},
    Ebpf,
};
use leaktrace_common::{FaultStackKey, StackCopy};

/// perf_event_attr up to PERF_ATTR_SIZE_VER5 (112 bytes): the fields
/// leaktrace sets; the kernel accepts this size on every version since 4.1.
#[repr(C)]
#[derive(Default)]
struct PerfAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}
const _: () = assert!(std::mem::size_of::<PerfAttr>() == 112);

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_PAGE_FAULTS: u64 = 2;
const FLAG_INHERIT: u64 = 1 << 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const PERF_EVENT_IOC_ENABLE: libc::Ioctl = 0x2400;
const PERF_EVENT_IOC_SET_BPF: libc::Ioctl = 0x4004_2408;

/// Opens a sampling page-fault event on one thread and attaches `prog`.
fn open_fault_event(tid: u32, period: u64, prog: &OwnedFd) -> std::io::Result<OwnedFd> {
    let attr = PerfAttr {
        type_: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfAttr>() as u32,
        config: PERF_COUNT_SW_PAGE_FAULTS,
        sample_period: period.max(1),
        flags: FLAG_INHERIT,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it declares;
    // pid = the thread, cpu = -1 (any), no group.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfAttr,
            tid as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd the kernel gave us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: ioctls on our perf event fd with an fd or no argument.
    unsafe {
        if libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd()) != 0
            || libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// Can this kernel sample our own page faults with the program? Opens and
/// closes one event on the calling thread.
pub fn probe_perf_events(prog: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
    open_fault_event(tid, 1 << 20, prog).map(drop)
}

/// How suspects' faults are sampled.
pub enum StackMode {
    /// Per-thread perf events with this program.
    PerfEvent(OwnedFd),
    /// The SUSPECTS map, read by the page_fault_user hook.
    FaultHook,
}

/// Most threads per suspect that get an event (each is a file descriptor).
pub const MAX_THREADS_PER_SUSPECT: usize = crate::limits::STACK_THREADS_PER_SUSPECT;

#[derive(Debug, Default, Clone, Copy, serde::Serialize, schemars::JsonSchema)]
pub struct StackStats {
    /// Suspects being sampled now.
    pub suspects: usize,
    /// Perf events open now.
    pub events: usize,
    /// Threads not covered because a suspect had more than the cap.
    pub threads_over_cap: u64,
    /// perf_event_open or attach failures.
    pub open_failed: u64,
    /// User stack copies received (for CFI unwinding).
    pub copies: u64,
}

/// A suspect's user stack at one sampled fault, as the kernel copied it.
#[derive(Clone, Debug)]
pub struct RawCopy {
    /// The frame-pointer stack of the same sample.
    pub stack_id: u32,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// User address of `data[0]`.
    pub base: u64,
    pub data: Vec<u8>,
}

/// Copies kept for one suspect: at most `STACK_COPIES_PER_SUSPECT`, then
/// round robin.
#[derive(Default)]
struct CopyStore {
    seen: u64,
    kept: Vec<RawCopy>,
}

struct Suspect {
    period: u32,
    fds: Vec<OwnedFd>,
}

pub struct Stacks {
    stacks: HashMap<MapData, FaultStackKey, u64>,
    ids: StackTraceMap<MapData>,
    suspects_map: HashMap<MapData, u32, u32>,
    mode: StackMode,
    perf: StdHashMap<u32, Suspect>,
    /// Mapped while there are suspects (lazyring.rs).
    copies_rb: Option<super::lazyring::LazyRing>,
    copies: StdHashMap<u32, CopyStore>,
    /// Stack ids nothing referred to at the last prune.
    unused_ids: HashSet<u32>,
    /// CPython frames of suspects (None: an object without them).
    pub py: Option<super::pystacks::PyStacks>,
    pub stats: StackStats,
}

impl Stacks {
    pub fn take(ebpf: &mut Ebpf, mode: StackMode) -> Result<Self> {
        Ok(Self {
            stacks: HashMap::try_from(
                ebpf.take_map("FAULT_STACKS")
                    .context("map FAULT_STACKS missing")?,
            )?,
            ids: StackTraceMap::try_from(
                ebpf.take_map("FAULT_STACK_IDS")
                    .context("map FAULT_STACK_IDS missing")?,
            )?,
            suspects_map: HashMap::try_from(ebpf.take_map("SUSPECTS").context("map SUSPECTS missing")?)?,
            // Absent from an older object: then only frame pointers.
            copies_rb: ebpf
                .take_map("STACK_COPIES")
                .and_then(|m| super::lazyring::LazyRing::new(m, "STACK_COPIES")),
            py: super::pystacks::PyStacks::take(ebpf),
            mode,
            perf: StdHashMap::new(),
            copies: StdHashMap::new(),
            unused_ids: HashSet::new(),
            stats: StackStats::default(),
        })
    }

    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            StackMode::PerfEvent(_) => "perf_event on the suspect's threads",
            StackMode::FaultHook => "page_fault_user hook, suspects only",
        }
    }

    /// Takes the stack copies the kernel sent since the last call and
    /// keeps a bounded number per suspect. Copies of processes that are no
    /// longer sampled are dropped.
    pub fn drain_copies(&mut self) {
        if let Some(py) = self.py.as_mut() {
            py.drain();
        }
        let Some(rb) = self.copies_rb.as_mut().and_then(|r| r.mapped()) else {
            return;
        };
        let cap = crate::limits::STACK_COPIES_PER_SUSPECT;
        while let Some(item) = rb.next() {
            if item.len() < std::mem::size_of::<StackCopy>() {
                continue;
            }
            // SAFETY: the record is at least one StackCopy long, StackCopy
            // is Pod (any bit pattern valid); read_unaligned copes with the
            // ring buffer's 8-byte alignment.
            let c: StackCopy = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const StackCopy) };
            self.stats.copies += 1;
            if !self.perf.contains_key(&c.tgid) {
                continue;
            }
            let len = (c.len as usize).min(c.data.len());
            let raw = RawCopy {
                stack_id: c.stack_id,
                ip: c.ip,
                sp: c.sp,
                bp: c.bp,
                base: c.base,
                data: c.data[..len].to_vec(),
            };
            let st = self.copies.entry(c.tgid).or_default();
            if st.kept.len() < cap {
                st.kept.push(raw);
            } else {
                let i = (st.seen % cap as u64) as usize;
                st.kept[i] = raw;
                crate::limits::STACK_COPIES.hit();
            }
            st.seen += 1;
        }
    }

    /// The stack copies kept for `tgid`.
    pub fn copies(&self, tgid: u32) -> Vec<RawCopy> {
        self.copies.get(&tgid).map(|s| s.kept.clone()).unwrap_or_default()
    }

    /// Makes the sampled set equal to `want` (tgid -> 1 in N faults).
    pub fn set_suspects(&mut self, want: &StdHashMap<u32, u32>) {
        self.drain_copies();
        // The copy ring is mapped before the first suspect's events open,
        // and unmapped a while after the last one is dropped.
        if let Some(r) = self.copies_rb.as_mut() {
            if want.is_empty() {
                r.idle();
            } else {
                r.open();
            }
        }
        // Copies outlive the suspect for a bundle written just after, but
        // not beyond two suspect tables' worth.
        if self.copies.len() > 2 * crate::limits::SUSPECTS_MAX {
            self.copies.retain(|pid, _| want.contains_key(pid));
        }
        match &self.mode {
            StackMode::FaultHook => {
                let have: Vec<u32> = self.suspects_map.keys().filter_map(|k| k.ok()).collect();
                for k in have {
                    if !want.contains_key(&k) {
                        let _ = self.suspects_map.remove(&k);
                    }
                }
                for (k, v) in want {
                    let _ = self.suspects_map.insert(k, v, 0);
                }
                self.stats.suspects = want.len();
            }
            StackMode::PerfEvent(prog) => {
                self.perf
                    .retain(|pid, s| want.get(pid).is_some_and(|p| *p == s.period));
                for (&pid, &period) in want {
                    if self.perf.contains_key(&pid) {
                        continue;
                    }
                    let mut fds = Vec::new();
                    let tids = threads(pid);
                    if tids.len() > MAX_THREADS_PER_SUSPECT {
                        self.stats.threads_over_cap += (tids.len() - MAX_THREADS_PER_SUSPECT) as u64;
                        crate::limits::STACK_THREADS.hit();
                    }
                    for tid in tids.into_iter().take(MAX_THREADS_PER_SUSPECT) {
                        match open_fault_event(tid, period as u64, prog) {
                            Ok(fd) => fds.push(fd),
                            Err(e) => {
                                self.stats.open_failed += 1;
                                log::debug!("fault sampling for thread {tid} of {pid}: {e}");
                            }
                        }
                    }
                    self.perf.insert(pid, Suspect { period, fds });
                }
                self.stats.suspects = self.perf.len();
                self.stats.events = self.perf.values().map(|s| s.fds.len()).sum();
            }
        }
    }

    /// Sampled stacks of `tgid`: (stack id in the stack map, which stack
    /// copies refer to; instruction pointers; sampled faults).
    pub fn collect_with_ids(&self, tgid: u32) -> Vec<(u32, Vec<u64>, u64)> {
        let mut out = Vec::new();
        for item in self.stacks.iter() {
            let Ok((k, count)) = item else { continue };
            if k.tgid != tgid {
                continue;
            }
            if let Ok(st) = self.ids.get(&k.stack_id, 0) {
                out.push((k.stack_id, st.frames().iter().map(|f| f.ip).collect(), count));
            }
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.2));
        out
    }

    /// Drops the samples of processes that are gone.
    pub fn forget_except(&mut self, alive: &dyn Fn(u32) -> bool) {
        let dead: Vec<FaultStackKey> = self
            .stacks
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !alive(k.tgid))
            .collect();
        for k in dead {
            let _ = self.stacks.remove(&k);
        }
        self.copies.retain(|pid, _| alive(*pid));
        if let Some(py) = self.py.as_mut() {
            py.forget_except(alive);
        }
        // Stack ids nothing refers to any more: free them, or the stack map
        // fills up and new stacks stop being recorded.
        let used: HashSet<u32> = self
            .stacks
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| k.stack_id)
            .collect();
        // An id the kernel made after `used` was listed looks unused now:
        // only ids unused at two prunes in a row are freed (else a new
        // stack's id is freed under its count, and its frames are lost).
        let unused: HashSet<u32> = self
            .ids
            .stack_ids()
            .filter_map(|k| k.ok())
            .filter(|id| !used.contains(id))
            .collect();
        for id in unused.intersection(&self.unused_ids) {
            let _ = self.ids.remove(id);
        }
        self.unused_ids = unused;
    }
}

/// The thread ids of a process (empty if it is gone).
fn threads(pid: u32) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
