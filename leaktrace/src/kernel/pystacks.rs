//! CPython suspects: which processes the kernel walks (`PY_PROCS`), the
//! Python stacks it counted (`PY_STACK_COUNTS`) and their frames
//! (`PY_STACKS` ring), see `leaktrace_common::python`.
use std::collections::HashMap as StdHashMap;

use aya::{
    maps::{HashMap, MapData},
    Ebpf,
};
use leaktrace_common::python::{py_flag, PyFrame, PyProc, PyStack, PyStackKey, PY_NO_OWNER};

use crate::host::cpython::{detect::Target, layout::Layout};

/// Distinct Python stacks kept per process; past it new ones are counted
/// as a limit hit (`python_stacks_per_process`).
pub const STACKS_PER_PROCESS: usize = crate::limits::PY_STACKS_PER_PROCESS;

/// Where a suspect stands.
#[derive(Clone, Debug)]
pub enum PyStatus {
    /// Waiting for the detector.
    Pending,
    /// The kernel walks its frames.
    Walked(Box<Target>),
    /// Not walked, and why ("not CPython" is the common case).
    Not(String),
}

/// One Python stack of a process, with its count.
#[derive(Clone, Debug)]
pub struct PySample {
    /// The native stack of the same samples (`FAULT_STACK_IDS`), or u32::MAX.
    pub native_stack_id: u32,
    /// Innermost first.
    pub frames: Vec<PyFrame>,
    pub truncated: bool,
    pub count: u64,
}

/// What came in for one process.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PyCounts {
    /// Sampled faults with a Python stack.
    pub samples: u64,
    /// Of those, samples whose frames never reached user space (ring full).
    pub samples_without_frames: u64,
}

pub struct PyStacks {
    procs: HashMap<MapData, u32, PyProc>,
    counts: HashMap<MapData, PyStackKey, u64>,
    /// Mapped while there are suspects (lazyring.rs).
    ring: super::lazyring::LazyRing,
    /// tgid -> frames hash -> (frames, truncated).
    frames: StdHashMap<u32, StdHashMap<u64, (Vec<PyFrame>, bool)>>,
    pub status: StdHashMap<u32, PyStatus>,
    pub records: u64,
}

/// The kernel's view of a layout.
pub fn kernel_proc(t: &Target) -> PyProc {
    let l: &Layout = &t.layout;
    PyProc {
        interp_head: t.runtime + l.runtime_interp_head,
        interp_threads_head: l.interp_threads_head,
        tstate_next: l.tstate_next,
        tstate_native_tid: l.tstate_native_tid.unwrap_or(u64::MAX),
        tstate_thread_id: l.tstate_thread_id,
        tstate_frame: l.tstate_frame,
        cframe_current: l.cframe_current.unwrap_or(u64::MAX),
        frame_back: l.frame_back,
        frame_code: l.frame_code,
        frame_instr: l.frame_instr,
        frame_owner: l.frame_owner.unwrap_or(u64::MAX),
        owner_cstack: l.owner_cstack.map_or(PY_NO_OWNER, u32::from),
        _pad: 0,
    }
}

impl PyStacks {
    /// The three maps, if the object has them.
    pub fn take(ebpf: &mut Ebpf) -> Option<Self> {
        Some(Self {
            procs: HashMap::try_from(ebpf.take_map("PY_PROCS")?).ok()?,
            counts: HashMap::try_from(ebpf.take_map("PY_STACK_COUNTS")?).ok()?,
            ring: super::lazyring::LazyRing::new(ebpf.take_map("PY_STACKS")?, "PY_STACKS")?,
            frames: StdHashMap::new(),
            status: StdHashMap::new(),
            records: 0,
        })
    }

    /// The set of suspects changed: new ones become pending, the kernel
    /// stops walking those that left.
    pub fn follow(&mut self, want: &StdHashMap<u32, u32>) -> Vec<u32> {
        let gone: Vec<u32> = self
            .status
            .keys()
            .filter(|p| !want.contains_key(p))
            .copied()
            .collect();
        for pid in gone {
            self.status.remove(&pid);
            let _ = self.procs.remove(&pid);
        }
        let mut new = Vec::new();
        for pid in want.keys() {
            if !self.status.contains_key(pid) {
                self.status.insert(*pid, PyStatus::Pending);
                new.push(*pid);
            }
        }
        // Frames come only for suspects found to be CPython: the ring is
        // mapped while there is one (what it holds meanwhile waits).
        if self.status.values().any(|s| matches!(s, PyStatus::Walked(_))) {
            self.ring.open();
        } else {
            self.ring.idle();
        }
        new
    }

    /// The detector's answer for `pid`: the kernel starts walking it.
    pub fn set(&mut self, pid: u32, answer: Result<Target, String>) {
        if !self.status.contains_key(&pid) {
            return; // no longer a suspect
        }
        let st = match answer {
            Ok(t) => match self.procs.insert(pid, kernel_proc(&t), 0) {
                Ok(()) => {
                    self.ring.open();
                    PyStatus::Walked(Box::new(t))
                }
                Err(e) => PyStatus::Not(format!("PY_PROCS insert failed: {e}")),
            },
            Err(e) => PyStatus::Not(e),
        };
        self.status.insert(pid, st);
    }

    /// Why a CPython suspect's frames are not walked (None: they are, or
    /// it is not CPython, or it is not known yet).
    pub fn why_not(&self, pid: u32) -> Option<&str> {
        match self.status.get(&pid) {
            Some(PyStatus::Not(e)) if e != "not CPython" => Some(e),
            _ => None,
        }
    }

    pub fn target(&self, pid: u32) -> Option<&Target> {
        match self.status.get(&pid) {
            Some(PyStatus::Walked(t)) => Some(t),
            _ => None,
        }
    }

    /// Takes the frames the kernel sent since the last call.
    pub fn drain(&mut self) {
        let Some(ring) = self.ring.mapped() else { return };
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<PyStack>() {
                continue;
            }
            // SAFETY: the record is at least one PyStack long; PyStack is
            // plain data (any bit pattern valid); read_unaligned copes with
            // the ring's 8-byte alignment.
            let r: PyStack = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const PyStack) };
            self.records += 1;
            let n = (r.nframes as usize).min(r.frames.len());
            let per = self.frames.entry(r.key.tgid).or_default();
            if per.len() >= STACKS_PER_PROCESS && !per.contains_key(&r.key.hash) {
                crate::limits::PY_STACKS.hit();
                continue;
            }
            // Shim frames (3.12+ entry frames) come with code 0.
            let frames = r.frames[..n].iter().filter(|f| f.code != 0).copied().collect();
            per.insert(r.key.hash, (frames, r.flags & py_flag::TRUNCATED != 0));
        }
    }

    /// The Python stacks of `tgid`, most samples first, and the totals.
    pub fn samples(&self, tgid: u32) -> (Vec<PySample>, PyCounts) {
        let mut out = Vec::new();
        let mut c = PyCounts::default();
        let per = self.frames.get(&tgid);
        for item in self.counts.iter() {
            let Ok((k, count)) = item else { continue };
            if k.tgid != tgid {
                continue;
            }
            c.samples += count;
            match per.and_then(|p| p.get(&k.hash)) {
                Some((frames, truncated)) => out.push(PySample {
                    native_stack_id: k.native_stack_id,
                    frames: frames.clone(),
                    truncated: *truncated,
                    count,
                }),
                None => c.samples_without_frames += count,
            }
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.count));
        (out, c)
    }

    /// Drops what belongs to processes that are gone.
    pub fn forget_except(&mut self, alive: &dyn Fn(u32) -> bool) {
        let dead: Vec<PyStackKey> = self
            .counts
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !alive(k.tgid))
            .collect();
        for k in dead {
            let _ = self.counts.remove(&k);
        }
        self.frames.retain(|pid, _| alive(*pid));
    }
}
