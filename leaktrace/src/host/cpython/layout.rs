//! Byte offsets of the CPython structs leaktrace reads, per version
//! (64-bit Linux, release builds). 3.13 and later publish their own in
//! `_Py_DebugOffsets` at the start of `_PyRuntime`; those win when present
//! (`detect`). The sources of every number are in docs/stacks.md.
use serde::{Deserialize, Serialize};

/// What the frame's instruction word is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instr {
    /// `f_lasti`, a byte offset into co_code (3.8, 3.9).
    LastiBytes,
    /// `f_lasti`, an index in code units (3.10).
    LastiUnits,
    /// `prev_instr`: a pointer to the last instruction started (3.11, 3.12).
    PrevInstr,
    /// `instr_ptr`: a pointer to the instruction running (3.13+).
    InstrPtr,
}

/// How a code object maps instructions to lines.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lines {
    /// co_lnotab (3.8, 3.9).
    Lnotab,
    /// co_linetable of 3.10.
    Linetable310,
    /// The location table of PEP 657 (3.11+).
    Locations,
}

/// Everything leaktrace needs to know about one interpreter version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub major: u8,
    pub minor: u8,
    /// Where the offsets came from: "table" or "_Py_DebugOffsets".
    pub source: String,
    /// `_PyRuntime.interpreters.head`.
    pub runtime_interp_head: u64,
    pub interp_threads_head: u64,
    pub tstate_next: u64,
    /// `native_thread_id` (3.11+).
    pub tstate_native_tid: Option<u64>,
    /// `thread_id`, the `pthread_t`.
    pub tstate_thread_id: u64,
    pub tstate_frame: u64,
    pub cframe_current: Option<u64>,
    pub frame_back: u64,
    pub frame_code: u64,
    pub frame_instr: u64,
    pub frame_owner: Option<u64>,
    /// Owner value of C-stack shim frames (3.12+).
    pub owner_cstack: Option<u8>,
    pub instr: Instr,
    pub code_filename: u64,
    pub code_name: u64,
    pub code_qualname: Option<u64>,
    pub code_firstlineno: u64,
    pub code_linetable: u64,
    /// Offset of the bytecode inside the code object (3.11+).
    pub code_adaptive: Option<u64>,
    pub lines: Lines,
    /// sizeof(PyASCIIObject) and sizeof(PyCompactUnicodeObject).
    pub unicode_ascii_size: u64,
    pub unicode_compact_size: u64,
}

/// PyObject_VAR_HEAD: ob_refcnt, ob_type, ob_size.
const VAR_HEAD: u64 = 24;
/// PyUnicode: `length` and `state` offsets (all versions here).
pub const UNICODE_LENGTH: u64 = 16;
pub const UNICODE_STATE: u64 = 32;
/// PyBytesObject: ob_size and ob_sval.
pub const BYTES_SIZE: u64 = 16;
pub const BYTES_DATA: u64 = 32;

/// The versions leaktrace has a table for. Each was checked against a
/// live interpreter of that version (docs/stacks.md).
pub const TABLE_VERSIONS: &[(u8, u8)] = &[(3, 8), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13)];

/// The table's layout for `major.minor`, if it has one.
pub fn for_version(major: u8, minor: u8) -> Option<Layout> {
    if major != 3 {
        return None;
    }
    let l = match minor {
        8 | 9 => old(minor),
        10 => Layout {
            instr: Instr::LastiUnits,
            lines: Lines::Linetable310,
            frame_instr: 96,
            ..old(10)
        },
        11 => v311(),
        12 => v312(),
        13 => v313(),
        _ => return None,
    };
    Some(l)
}

/// 3.8 to 3.10: PyFrameObject and the old code object; thread states have
/// no native thread id, only the `pthread_t`.
fn old(minor: u8) -> Layout {
    Layout {
        major: 3,
        minor,
        source: "table".into(),
        runtime_interp_head: 32,
        interp_threads_head: 8,
        tstate_next: 8,
        tstate_native_tid: None,
        tstate_thread_id: 176,
        tstate_frame: 24,
        cframe_current: None,
        frame_back: VAR_HEAD,
        frame_code: VAR_HEAD + 8,
        frame_instr: 104,
        frame_owner: None,
        owner_cstack: None,
        instr: Instr::LastiBytes,
        code_filename: 104,
        code_name: 112,
        code_qualname: None,
        code_firstlineno: 40,
        code_linetable: 120,
        code_adaptive: None,
        lines: Lines::Lnotab,
        unicode_ascii_size: 48,
        unicode_compact_size: 72,
    }
}

fn v311() -> Layout {
    Layout {
        major: 3,
        minor: 11,
        source: "table".into(),
        runtime_interp_head: 40,
        interp_threads_head: 16,
        tstate_next: 8,
        tstate_native_tid: Some(160),
        tstate_thread_id: 152,
        tstate_frame: 56,
        cframe_current: Some(8),
        frame_back: 48,
        frame_code: 32,
        frame_instr: 56,
        frame_owner: Some(69),
        owner_cstack: None,
        instr: Instr::PrevInstr,
        code_filename: 112,
        code_name: 120,
        code_qualname: Some(128),
        code_firstlineno: 72,
        code_linetable: 136,
        code_adaptive: Some(184),
        lines: Lines::Locations,
        unicode_ascii_size: 48,
        unicode_compact_size: 72,
    }
}

/// 3.12: frames start with the code object; C-stack shim frames (owner 3)
/// mark each entry into the interpreter.
fn v312() -> Layout {
    Layout {
        minor: 12,
        interp_threads_head: 72,
        tstate_native_tid: Some(144),
        tstate_thread_id: 136,
        cframe_current: Some(0),
        frame_back: 8,
        frame_code: 0,
        frame_owner: Some(70),
        owner_cstack: Some(3),
        code_firstlineno: 68,
        code_adaptive: Some(192),
        unicode_ascii_size: 40,
        unicode_compact_size: 56,
        ..v311()
    }
}

/// 3.13 (its `_Py_DebugOffsets` give the same numbers and win when read).
fn v313() -> Layout {
    Layout {
        minor: 13,
        runtime_interp_head: 632,
        interp_threads_head: 7344,
        tstate_native_tid: Some(160),
        tstate_thread_id: 152,
        tstate_frame: 72,
        cframe_current: None,
        instr: Instr::InstrPtr,
        code_adaptive: Some(200),
        ..v312()
    }
}
