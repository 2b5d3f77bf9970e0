//! CPython frames at a suspect's sampled page faults (see
//! `leaktrace_common::python`). Called from `fault_sample` only, for the
//! processes user space put into `PY_PROCS`: other processes pay one
//! hash lookup per sampled fault, nothing per fault.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_user},
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use leaktrace_common::{
    counter, off,
    python::{
        py_flag, PyFrame, PyProc, PyStack, PyStackKey, FNV_OFFSET, FNV_PRIME, PY_MAX_FRAMES, PY_MAX_THREADS,
        PY_NO_OWNER,
    },
};

use super::{
    bump,
    kread::{o, Mem, Probe},
};

/// tgid -> how to walk its interpreter's frames. Written by user space.
#[map]
pub static PY_PROCS: HashMap<u32, PyProc> = HashMap::with_max_entries(256, 0);

/// (tgid, native stack id, frames hash) -> sampled faults.
#[map]
pub static PY_STACK_COUNTS: LruHashMap<PyStackKey, u64> = LruHashMap::with_max_entries(16384, 0);

/// Frames of a Python stack, sent the 1st, 2nd, 4th, ... time its key is
/// counted. 2 MiB holds about 1,900 records between two drains.
#[map]
pub static PY_STACKS: RingBuf = RingBuf::with_byte_size(2 * 1024 * 1024, 0);

/// Where a record is built (1 KiB: too big for the BPF stack).
#[map]
static PY_SCRATCH: PerCpuArray<PyStack> = PerCpuArray::with_max_entries(1, 0);

/// A user-space word at `base + off`; 0 when unreadable or absent.
#[inline(always)]
fn user_u64(base: u64, off: u64) -> u64 {
    if base == 0 || off == u64::MAX {
        return 0;
    }
    // SAFETY: bpf_probe_read_user copes with any address.
    unsafe { bpf_probe_read_user((base + off) as *const u64) }.unwrap_or(0)
}

#[inline(always)]
fn user_u8(base: u64, off: u64) -> u32 {
    if base == 0 || off == u64::MAX {
        return PY_NO_OWNER;
    }
    // SAFETY: as above.
    unsafe { bpf_probe_read_user((base + off) as *const u8) }.map_or(PY_NO_OWNER, |b| b as u32)
}

/// What identifies the current thread in a thread state: its OS thread
/// id, or (no native id: 3.8-3.10) its FS base, which is the `pthread_t`.
#[inline(always)]
fn thread_key(p: &PyProc, tid: u32) -> (u64, u64) {
    if p.tstate_native_tid != u64::MAX {
        return (p.tstate_native_tid, tid as u64);
    }
    // SAFETY: the helper returns the current task; only read through
    // bpf_probe_read_kernel, which copes with any address.
    let task = unsafe { bpf_get_current_task() };
    (p.tstate_thread_id, Probe::u64(task, o(off::TASK_FSBASE)))
}

/// The `PyThreadState` of the current thread in the main interpreter.
#[inline(always)]
fn find_tstate(p: &PyProc, tid: u32) -> Option<u64> {
    let (field, want) = thread_key(p, tid);
    if want == 0 {
        return None;
    }
    let interp = user_u64(p.interp_head, 0);
    let mut ts = user_u64(interp, p.interp_threads_head);
    for _ in 0..PY_MAX_THREADS {
        if ts == 0 {
            return None;
        }
        if user_u64(ts, field) == want {
            return Some(ts);
        }
        ts = user_u64(ts, p.tstate_next);
    }
    None
}

/// The thread's innermost frame.
#[inline(always)]
fn top_frame(p: &PyProc, tstate: u64) -> u64 {
    let f = user_u64(tstate, p.tstate_frame);
    if p.cframe_current == u64::MAX {
        f
    } else {
        user_u64(f, p.cframe_current)
    }
}

/// Fills `s.frames` from the thread's frame chain; returns the hash.
/// C-stack shim frames (3.12+) are recorded with code 0 and dropped by
/// user space: one slot per step keeps the loop's state simple enough for
/// the verifier (no second counter).
#[inline(always)]
fn walk(p: &PyProc, tstate: u64, s: &mut PyStack) -> u64 {
    let mut frame = top_frame(p, tstate);
    let mut h = FNV_OFFSET;
    let mut n = 0u32;
    for i in 0..PY_MAX_FRAMES {
        if frame == 0 {
            break;
        }
        let shim = p.owner_cstack != PY_NO_OWNER && user_u8(frame, p.frame_owner) == p.owner_cstack;
        let code = if shim { 0 } else { user_u64(frame, p.frame_code) };
        let instr = if shim { 0 } else { user_u64(frame, p.frame_instr) };
        s.frames[i] = PyFrame { code, instr };
        h = (h ^ code).wrapping_mul(FNV_PRIME);
        h = (h ^ instr).wrapping_mul(FNV_PRIME);
        n = i as u32 + 1;
        frame = user_u64(frame, p.frame_back);
    }
    s.flags = if frame != 0 { py_flag::TRUNCATED } else { 0 };
    s.nframes = n;
    h
}

/// Records the Python stack of the faulting thread of `tgid`, if `tgid`
/// is a CPython process user space described, under the sample's native
/// stack id.
#[inline(always)]
pub fn sample(tgid: u32, native_stack_id: u32) {
    // SAFETY: plain lookup; the value is read while the program runs.
    let Some(p) = (unsafe { PY_PROCS.get(&tgid) }) else {
        return;
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(tstate) = find_tstate(p, tid) else {
        bump(counter::PY_THREAD_MISSED);
        return;
    };
    let Some(s) = PY_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch value, valid while the program runs and
    // written by no one else meanwhile.
    let s = unsafe { &mut *s };
    let hash = walk(p, tstate, s);
    if s.nframes == 0 {
        return;
    }
    s.key = PyStackKey {
        tgid,
        native_stack_id,
        hash,
    };
    s.tid = tid;
    let n = match PY_STACK_COUNTS.get_ptr_mut(&s.key) {
        // SAFETY: map value pointer, valid while the program runs.
        Some(c) => unsafe {
            *c += 1;
            *c
        },
        None => {
            if PY_STACK_COUNTS.insert(&s.key, &1, 0).is_err() {
                bump(counter::PY_STACKS_LOST);
                return;
            }
            1
        }
    };
    if n.is_power_of_two() && PY_STACKS.output::<PyStack>(&*s, 0).is_err() {
        bump(counter::PY_STACKS_LOST);
    }
}
