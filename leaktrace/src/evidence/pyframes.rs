//! Python frames of a CPython suspect, read in the kernel at its sampled
//! faults, named here: which interpreter (`detect`), and each code object
//! to `function (file:line)` (`resolve`). Both read the traced process's
//! binary or memory, so both run in the sandboxed child (`leaktrace
//! __pyinfo`, the same limits as the symbolizer's), never in the daemon.
use std::collections::HashMap;

use leaktrace_common::python::PyFrame;
use serde::{Deserialize, Serialize};

use crate::host::cpython::{
    code::{self, PyFunc},
    detect::{self, Target},
};

/// Most code objects named per request.
pub const MAX_CODES: usize = 4096;
/// Largest answer read from the child.
const ANSWER_CAP: u64 = 8 << 20;

#[derive(Serialize, Deserialize)]
enum Request {
    Detect {
        pid: u32,
    },
    Resolve {
        pid: u32,
        target: Target,
        frames: Vec<(u64, u64)>,
    },
}

/// `leaktrace __pyinfo`: the child side.
pub fn child_main() -> i32 {
    let Some(req) = super::stackfiles::read_request::<Request>() else {
        return 2;
    };
    match req {
        Request::Detect { pid } => super::stackfiles::write_answer(&detect::detect(pid)),
        Request::Resolve { pid, target, frames } => {
            super::stackfiles::write_answer(&resolve_in_child(pid, &target, &frames))
        }
    }
}

/// Each (code, instr) to its function, file and line; None where the code
/// object could not be read (or is not one). Each code object is read
/// once, and checked against `PyCode_Type`.
fn resolve_in_child(pid: u32, t: &Target, frames: &[(u64, u64)]) -> Vec<Option<PyFunc>> {
    let mut codes: HashMap<u64, Option<code::Code>> = HashMap::new();
    frames
        .iter()
        .take(MAX_CODES)
        .map(|&(addr, instr)| {
            let c = codes
                .entry(addr)
                .or_insert_with(|| code::read_code(pid, &t.layout, addr, t.code_type))
                .as_ref()?;
            Some(PyFunc {
                function: c.function.clone(),
                file: c.file.clone(),
                line: code::line_of(&t.layout, addr, c, instr),
                first_line: c.first_line,
            })
        })
        .collect()
}

fn ask<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, String> {
    let body = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    let out = super::symbolize::run_sandboxed("__pyinfo", body, ANSWER_CAP)?;
    serde_json::from_slice(&out).map_err(|e| format!("answer cut or unreadable: {e}"))
}

/// Which CPython `pid` runs and how to walk it; Err says why not.
pub fn detect(pid: u32) -> Result<Target, String> {
    ask::<Result<Target, String>>(&Request::Detect { pid })?
}

/// Names the frames (deduplicated) of one process.
pub fn resolve(pid: u32, target: &Target, frames: &[PyFrame]) -> Result<HashMap<PyFrame, PyFunc>, String> {
    let mut uniq: Vec<PyFrame> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in frames {
        if uniq.len() < MAX_CODES && seen.insert(*f) {
            uniq.push(*f);
        }
    }
    let req = Request::Resolve {
        pid,
        target: target.clone(),
        frames: uniq.iter().map(|f| (f.code, f.instr)).collect(),
    };
    let names: Vec<Option<PyFunc>> = ask(&req)?;
    Ok(uniq
        .into_iter()
        .zip(names)
        .filter_map(|(f, n)| Some((f, n?)))
        .collect())
}
