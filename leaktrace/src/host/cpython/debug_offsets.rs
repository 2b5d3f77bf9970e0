//! CPython 3.13+ publishes the offsets debuggers need in `_Py_DebugOffsets`,
//! the first member of `_PyRuntime` (cookie "xdebugpy"). Where a process
//! has them, they are used instead of the table: a patch release that
//! moved a member still reads right. Positions below are those of 3.13
//! (Include/internal/pycore_runtime.h); 3.14 changed the struct, so only a
//! 3.13 whose own version field says 3.13 is read this way.
use super::{layout::Layout, mem};

/// Bytes of `_Py_DebugOffsets` read (the struct is 584 bytes in 3.13).
const SIZE: usize = 584;

/// (position in _Py_DebugOffsets) of each member leaktrace uses.
mod at {
    pub const VERSION: usize = 8;
    pub const FREE_THREADED: usize = 16;
    pub const INTERPRETERS_HEAD: usize = 40;
    pub const THREADS_HEAD: usize = 72;
    pub const TSTATE_NEXT: usize = 168;
    pub const CURRENT_FRAME: usize = 184;
    pub const THREAD_ID: usize = 192;
    pub const NATIVE_THREAD_ID: usize = 200;
    pub const FRAME_PREVIOUS: usize = 232;
    pub const FRAME_EXECUTABLE: usize = 240;
    pub const FRAME_INSTR_PTR: usize = 248;
    pub const FRAME_OWNER: usize = 264;
    pub const CODE_FILENAME: usize = 280;
    pub const CODE_NAME: usize = 288;
    pub const CODE_QUALNAME: usize = 296;
    pub const CODE_LINETABLE: usize = 304;
    pub const CODE_FIRSTLINENO: usize = 312;
    pub const CODE_ADAPTIVE: usize = 344;
    pub const UNICODE_ASCII_SIZE: usize = 560;
}

/// The layout from the process's own debug offsets, for 3.13.
pub fn read(pid: u32, runtime: u64, major: u8, minor: u8) -> Option<Layout> {
    if (major, minor) != (3, 13) {
        return None;
    }
    let b = mem::read(pid, runtime, SIZE)?;
    parse(&b)
}

/// Pure part of `read`, on the bytes of the struct.
pub fn parse(b: &[u8]) -> Option<Layout> {
    if b.get(..8)? != b"xdebugpy" {
        return None;
    }
    let v = mem::le_u64(b, at::VERSION);
    if (v >> 16) & 0xffff != 0x030d || mem::le_u64(b, at::FREE_THREADED) != 0 {
        return None;
    }
    let f = |o: usize| -> Option<u64> {
        let x = mem::le_u64(b, o);
        // No member of these structs is anywhere near 1 MiB in.
        (x < 1 << 20).then_some(x)
    };
    let table = super::layout::for_version(3, 13)?;
    let ascii = f(at::UNICODE_ASCII_SIZE)?;
    Some(Layout {
        source: "_Py_DebugOffsets".into(),
        runtime_interp_head: f(at::INTERPRETERS_HEAD)?,
        interp_threads_head: f(at::THREADS_HEAD)?,
        tstate_next: f(at::TSTATE_NEXT)?,
        tstate_native_tid: Some(f(at::NATIVE_THREAD_ID)?),
        tstate_thread_id: f(at::THREAD_ID)?,
        tstate_frame: f(at::CURRENT_FRAME)?,
        frame_back: f(at::FRAME_PREVIOUS)?,
        frame_code: f(at::FRAME_EXECUTABLE)?,
        frame_instr: f(at::FRAME_INSTR_PTR)?,
        frame_owner: Some(f(at::FRAME_OWNER)?),
        code_filename: f(at::CODE_FILENAME)?,
        code_name: f(at::CODE_NAME)?,
        code_qualname: Some(f(at::CODE_QUALNAME)?),
        code_linetable: f(at::CODE_LINETABLE)?,
        code_firstlineno: f(at::CODE_FIRSTLINENO)?,
        code_adaptive: Some(f(at::CODE_ADAPTIVE)?),
        unicode_ascii_size: ascii,
        // PyCompactUnicodeObject adds utf8_length and utf8 to PyASCIIObject.
        unicode_compact_size: ascii + 16,
        ..table
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 3.13.0 values read off a live interpreter (docs/stacks.md)
    /// give the table's layout, with only the source changed.
    #[test]
    fn debug_offsets_of_3_13_0_match_the_table() {
        let mut b = vec![0u8; SIZE];
        b[..8].copy_from_slice(b"xdebugpy");
        let mut put = |o: usize, v: u64| b[o..o + 8].copy_from_slice(&v.to_le_bytes());
        put(at::VERSION, 0x030d00f0);
        for (o, v) in [
            (at::INTERPRETERS_HEAD, 632),
            (at::THREADS_HEAD, 7344),
            (at::TSTATE_NEXT, 8),
            (at::CURRENT_FRAME, 72),
            (at::THREAD_ID, 152),
            (at::NATIVE_THREAD_ID, 160),
            (at::FRAME_PREVIOUS, 8),
            (at::FRAME_EXECUTABLE, 0),
            (at::FRAME_INSTR_PTR, 56),
            (at::FRAME_OWNER, 70),
            (at::CODE_FILENAME, 112),
            (at::CODE_NAME, 120),
            (at::CODE_QUALNAME, 128),
            (at::CODE_LINETABLE, 136),
            (at::CODE_FIRSTLINENO, 68),
            (at::CODE_ADAPTIVE, 200),
            (at::UNICODE_ASCII_SIZE, 40),
        ] {
            put(o, v);
        }
        let l = parse(&b).expect("parsed");
        let t = crate::host::cpython::layout::for_version(3, 13).unwrap();
        assert_eq!(l.source, "_Py_DebugOffsets");
        assert_eq!(
            Layout {
                source: t.source.clone(),
                ..l
            },
            t
        );
        b[0] = b'X';
        assert!(parse(&b).is_none(), "no cookie, no layout");
    }
}
