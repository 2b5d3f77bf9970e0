//! Code objects read back from a CPython process: qualified name, file
//! and line of a frame the kernel recorded.
use serde::{Deserialize, Serialize};

use super::{
    layout::{Instr, Layout, BYTES_DATA, BYTES_SIZE, UNICODE_LENGTH, UNICODE_STATE},
    linetable, mem,
};

/// Longest name or file name kept, in characters.
pub const NAME_CHARS: usize = 200;
/// Largest line table read.
const LINETABLE_CAP: u64 = 64 * 1024;

/// One frame resolved: `function (file:line)`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PyFunc {
    /// co_qualname (3.11+), else co_name.
    pub function: String,
    pub file: String,
    /// The line of the instruction, else the function's first line.
    pub line: Option<i64>,
    pub first_line: i64,
}

/// A code object's fields that do not depend on the instruction.
pub struct Code {
    pub function: String,
    pub file: String,
    pub first_line: i64,
    pub linetable: Vec<u8>,
}

/// Reads the code object at `addr`. `code_type`, when known, is the
/// address of `PyCode_Type`: an object of another type is refused (the
/// frame was read while it changed, or the address was reused).
pub fn read_code(pid: u32, l: &Layout, addr: u64, code_type: Option<u64>) -> Option<Code> {
    let end = [
        l.code_filename,
        l.code_name,
        l.code_qualname.unwrap_or(0),
        l.code_linetable,
        l.code_firstlineno,
    ]
    .into_iter()
    .max()?
        + 8;
    let head = mem::read(pid, addr, end as usize)?;
    if let Some(t) = code_type {
        if mem::le_u64(&head, 8) != t {
            return None;
        }
    }
    let name_ptr = mem::le_u64(&head, l.code_qualname.unwrap_or(l.code_name) as usize);
    let function = read_str(pid, l, name_ptr).unwrap_or_else(|| "?".into());
    let file = read_str(pid, l, mem::le_u64(&head, l.code_filename as usize)).unwrap_or_else(|| "?".into());
    let first_line = mem::le_u32(&head, l.code_firstlineno as usize) as i32 as i64;
    let linetable = read_bytes(pid, mem::le_u64(&head, l.code_linetable as usize)).unwrap_or_default();
    Some(Code {
        function,
        file,
        first_line,
        linetable,
    })
}

/// The frame's line, from its instruction word.
pub fn line_of(l: &Layout, code_addr: u64, c: &Code, instr: u64) -> Option<i64> {
    let offset = match l.instr {
        Instr::LastiBytes | Instr::LastiUnits => {
            let lasti = instr as u32 as i32;
            if lasti < 0 {
                return Some(c.first_line);
            }
            lasti as u64
        }
        Instr::PrevInstr | Instr::InstrPtr => {
            let start = code_addr + l.code_adaptive?;
            if instr < start {
                return Some(c.first_line);
            }
            (instr - start) / 2
        }
    };
    linetable::line_at(l.lines, &c.linetable, c.first_line, offset)
}

/// A str object's text (compact ASCII or compact UCS1/2/4), capped.
pub fn read_str(pid: u32, l: &Layout, addr: u64) -> Option<String> {
    let head = mem::read(pid, addr, l.unicode_compact_size as usize)?;
    let len = mem::le_u64(&head, UNICODE_LENGTH as usize);
    let state = mem::le_u32(&head, UNICODE_STATE as usize);
    let (kind, compact, ascii) = ((state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1);
    if compact == 0 || len > 1 << 20 {
        return None;
    }
    let n = (len as usize).min(NAME_CHARS);
    let (data, width) = if ascii == 1 {
        (addr + l.unicode_ascii_size, 1)
    } else {
        (addr + l.unicode_compact_size, kind as usize)
    };
    if !matches!(width, 1 | 2 | 4) {
        return None;
    }
    let raw = if n == 0 {
        Vec::new()
    } else {
        mem::read(pid, data, n * width)?
    };
    let mut s: String = raw
        .chunks_exact(width)
        .map(|c| {
            let v = c.iter().rev().fold(0u32, |a, b| (a << 8) | *b as u32);
            char::from_u32(v).unwrap_or('\u{fffd}')
        })
        .collect();
    if (len as usize) > n {
        s.push('…');
    }
    Some(s)
}

/// A bytes object's content, at most `LINETABLE_CAP`.
fn read_bytes(pid: u32, addr: u64) -> Option<Vec<u8>> {
    let size = mem::u64_at(pid, addr + BYTES_SIZE)?;
    if size == 0 {
        return Some(Vec::new());
    }
    mem::read(pid, addr + BYTES_DATA, size.min(LINETABLE_CAP) as usize)
}
