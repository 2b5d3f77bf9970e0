//! CPython frames read in the kernel at a suspect's sampled page faults.
//!
//! User space finds the interpreter (`_PyRuntime`, its version, and the
//! struct offsets of that version) and puts a [`PyProc`] into `PY_PROCS`
//! for the process. At each sampled fault the `fault_sample` program finds
//! the faulting thread's `PyThreadState` in the main interpreter's thread
//! list (by `native_thread_id`), walks its frame chain and records up to
//! [`PY_MAX_FRAMES`] frames as (code object address, instruction word).
//! Counts go to `PY_STACK_COUNTS` per (process, native stack id, hash of
//! the frames); the frames themselves go to user space on the `PY_STACKS`
//! ring buffer the 1st, 2nd, 4th, ... time a key is counted, so a lost
//! record is sent again later.

/// Most Python frames recorded per sample (the rest are cut, and flagged).
pub const PY_MAX_FRAMES: usize = 64;
/// Most entries of the thread list looked at to find the faulting thread.
pub const PY_MAX_THREADS: usize = 48;
/// `PyProc::owner_cstack` when the version has no C-stack shim frames.
pub const PY_NO_OWNER: u32 = 0xff;

/// How to walk one CPython process's frames (`PY_PROCS`, keyed by tgid).
/// Every field but `interp_head` is a byte offset inside a struct of that
/// interpreter version; `u64::MAX` means the version has no such member.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyProc {
    /// User address of `_PyRuntime.interpreters.head` (a pointer to the
    /// main interpreter's `PyInterpreterState`).
    pub interp_head: u64,
    /// `PyInterpreterState`: head of its thread list.
    pub interp_threads_head: u64,
    /// `PyThreadState`: next thread, and the OS thread id
    /// (`native_thread_id`, 3.11+; `u64::MAX` before).
    pub tstate_next: u64,
    pub tstate_native_tid: u64,
    /// `PyThreadState.thread_id` (the `pthread_t`), matched against the
    /// task's FS base where there is no native thread id (3.8-3.10,
    /// x86_64: glibc's `pthread_t` is the thread pointer).
    pub tstate_thread_id: u64,
    /// `PyThreadState`: the current frame (3.8-3.10 `frame`, 3.13
    /// `current_frame`) or, in 3.11 and 3.12, the `cframe` pointer.
    pub tstate_frame: u64,
    /// `_PyCFrame.current_frame` (3.11, 3.12), else `u64::MAX`.
    pub cframe_current: u64,
    /// Frame: caller (`f_back` / `previous`), code object (`f_code` /
    /// `f_executable`), instruction word (`f_lasti` / `prev_instr` /
    /// `instr_ptr`), and the owner byte (3.11+, else `u64::MAX`).
    pub frame_back: u64,
    pub frame_code: u64,
    pub frame_instr: u64,
    pub frame_owner: u64,
    /// Owner value of the C-stack shim frames to skip, or [`PY_NO_OWNER`].
    pub owner_cstack: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<PyProc>() == 96);

/// One Python frame as the kernel saw it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PyFrame {
    /// Address of the code object.
    pub code: u64,
    /// The instruction word: a pointer into the code (3.11+) or the frame's
    /// `f_lasti` in the low 32 bits (3.8-3.10).
    pub instr: u64,
}
const _: () = assert!(core::mem::size_of::<PyFrame>() == 16);

/// Key of `PY_STACK_COUNTS`; the value is the number of sampled faults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PyStackKey {
    pub tgid: u32,
    /// `FAULT_STACK_IDS` id of the same sample, or `u32::MAX`.
    pub native_stack_id: u32,
    /// FNV-1a of the frames, the key of the frames in user space.
    pub hash: u64,
}
const _: () = assert!(core::mem::size_of::<PyStackKey>() == 16);

/// `PyStack::flags`.
pub mod py_flag {
    /// The chain was longer than `PY_MAX_FRAMES`: the outermost frames are cut.
    pub const TRUNCATED: u32 = 1;
}

/// The frames of one Python stack (`PY_STACKS` ring buffer), innermost
/// first. Built in a per-CPU scratch map, not on the BPF stack.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PyStack {
    pub key: PyStackKey,
    pub tid: u32,
    pub nframes: u32,
    pub flags: u32,
    pub _pad: u32,
    pub frames: [PyFrame; PY_MAX_FRAMES],
}
const _: () = assert!(core::mem::size_of::<PyStack>() == 32 + 16 * PY_MAX_FRAMES);

/// FNV-1a offset basis and prime, for [`PyStackKey::hash`].
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[cfg(feature = "user")]
// SAFETY: repr(C), Copy, no padding (size checked), any bit pattern valid.
unsafe impl aya::Pod for PyProc {}

#[cfg(feature = "user")]
// SAFETY: as for PyProc.
unsafe impl aya::Pod for PyStackKey {}
