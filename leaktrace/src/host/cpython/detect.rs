//! Which CPython a process runs, and where its `_PyRuntime` is: the
//! `python3.X` binary or the `libpython3.X.so` it maps (an embedded
//! interpreter: uWSGI, a wrapper), its dynamic symbols, its load address.
//! Runs in the sandboxed child: the ELF file is the traced process's.
use std::path::Path;

use object::{Object, ObjectSegment, ObjectSymbol};
use serde::{Deserialize, Serialize};

use super::{layout::Layout, mem};

/// Most bytes of /proc/PID/maps read.
const MAPS_CAP: usize = 4 << 20;
/// Largest interpreter binary parsed.
const ELF_CAP: u64 = 256 << 20;

/// A CPython process as leaktrace will walk it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub version: String,
    /// The file that holds `_PyRuntime` (capped).
    pub binary: String,
    /// Address of `_PyRuntime` in the process.
    pub runtime: u64,
    /// Address of `PyCode_Type`, to check code objects by type.
    pub code_type: Option<u64>,
    pub layout: Layout,
}

/// A file mapping that may hold the interpreter.
struct Candidate {
    path: String,
    /// The mapping of file offset 0: its start, and `map_files` name.
    start: u64,
    range: String,
}

fn candidates(pid: u32) -> Vec<Candidate> {
    let Ok((maps, _)) = crate::host::procfs::read_capped(Path::new(&format!("/proc/{pid}/maps")), MAPS_CAP)
    else {
        return Vec::new();
    };
    let mut out: Vec<Candidate> = Vec::new();
    for line in String::from_utf8_lossy(&maps).lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(_perm), Some(off), _, _, Some(path)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let base = path.rsplit('/').next().unwrap_or("");
        let python = base.starts_with("libpython3") || (base.starts_with("python3") && !base.contains(".so"));
        if !python || off.trim_start_matches('0') != "" || out.iter().any(|c| c.path == path) {
            continue;
        }
        let start = range
            .split('-')
            .next()
            .and_then(|s| u64::from_str_radix(s, 16).ok());
        if let Some(start) = start {
            out.push(Candidate {
                path: path.chars().take(256).collect(),
                start,
                range: range.to_string(),
            });
        }
    }
    out
}

/// The ELF file behind a mapping: the mapped file itself (even if replaced
/// on disk since, or in another mount namespace), else the path as maps
/// shows it to us.
fn read_elf(pid: u32, c: &Candidate) -> Option<Vec<u8>> {
    for p in [format!("/proc/{pid}/map_files/{}", c.range), c.path.clone()] {
        if let Ok((b, false)) = crate::host::procfs::read_capped(Path::new(&p), ELF_CAP as usize) {
            return Some(b);
        }
    }
    None
}

/// "3.11" from a file name such as python3.11 or libpython3.11.so.1.0.
fn version_from_name(path: &str) -> Option<(u8, u8)> {
    let base = path.rsplit('/').next()?;
    let v = base.trim_start_matches("lib").strip_prefix("python")?;
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Finds the interpreter of `pid`. Err says why it is not walkable.
pub fn detect(pid: u32) -> Result<Target, String> {
    let cands = candidates(pid);
    if cands.is_empty() {
        return Err("no python3 binary or libpython3 mapped".into());
    }
    let mut why = Vec::new();
    for c in &cands {
        match detect_in(pid, c) {
            Ok(t) => return Ok(t),
            Err(e) => why.push(format!("{}: {e}", c.path)),
        }
    }
    Err(why.join("; "))
}

fn detect_in(pid: u32, c: &Candidate) -> Result<Target, String> {
    let data = read_elf(pid, c).ok_or("cannot read the file")?;
    let elf = object::File::parse(&*data).map_err(|e| format!("not an ELF file: {e}"))?;
    let sym = |name: &str| {
        elf.dynamic_symbols()
            .chain(elf.symbols())
            .find(|s| s.name_bytes().ok() == Some(name.as_bytes()))
            .map(|s| s.address())
    };
    let runtime_sym = sym("_PyRuntime").ok_or("no _PyRuntime symbol")?;
    // Load bias: where the segment holding file offset 0 was mapped.
    let low = elf
        .segments()
        .filter(|s| s.file_range().0 == 0)
        .map(|s| s.address())
        .min()
        .unwrap_or(0);
    let bias = if elf.kind() == object::ObjectKind::Executable {
        0
    } else {
        c.start.wrapping_sub(low & !0xfff)
    };
    let runtime = runtime_sym.wrapping_add(bias);
    // Py_Version (3.11+) is the interpreter's own hex version.
    let hexv = sym("Py_Version").and_then(|a| mem::read(pid, a.wrapping_add(bias), 4));
    let (major, minor, micro) = match hexv {
        Some(b) => {
            let v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            ((v >> 24) as u8, (v >> 16) as u8, Some((v >> 8) as u8))
        }
        None => {
            let (a, b) = version_from_name(&c.path).ok_or("version unknown")?;
            (a, b, None)
        }
    };
    let layout = super::debug_offsets::read(pid, runtime, major, minor)
        .or_else(|| super::layout::for_version(major, minor))
        .ok_or_else(|| {
            let known: Vec<String> = super::layout::TABLE_VERSIONS
                .iter()
                .map(|(a, b)| format!("{a}.{b}"))
                .collect();
            format!(
                "CPython {major}.{minor} has no layout table (known: {})",
                known.join(", ")
            )
        })?;
    let version = match micro {
        Some(m) => format!("{major}.{minor}.{m}"),
        None => format!("{major}.{minor}"),
    };
    check(pid, runtime, &layout)?;
    Ok(Target {
        version,
        binary: c.path.clone(),
        runtime,
        code_type: sym("PyCode_Type").map(|a| a.wrapping_add(bias)),
        layout,
    })
}

/// The layout must lead to the process's own threads: the main
/// interpreter's first thread state points back at that interpreter, and
/// (3.11+) some thread state's native thread id is one of the process's.
fn check(pid: u32, runtime: u64, l: &Layout) -> Result<(), String> {
    let bad = || {
        format!(
            "the {}.{} layout ({}) does not fit this process",
            l.major, l.minor, l.source
        )
    };
    let interp = mem::u64_at(pid, runtime + l.runtime_interp_head).ok_or("_PyRuntime unreadable")?;
    let mut ts = mem::u64_at(pid, interp + l.interp_threads_head).ok_or("interpreter unreadable")?;
    if ts == 0 || mem::u64_at(pid, ts + TSTATE_INTERP) != Some(interp) {
        return Err(bad());
    }
    let Some(tid_off) = l.tstate_native_tid else {
        return Ok(());
    };
    for _ in 0..leaktrace_common::python::PY_MAX_THREADS {
        if ts == 0 {
            break;
        }
        let tid = mem::u64_at(pid, ts + tid_off).unwrap_or(0);
        if tid != 0 && tid < u32::MAX as u64 && Path::new(&format!("/proc/{pid}/task/{tid}")).exists() {
            return Ok(());
        }
        ts = mem::u64_at(pid, ts + l.tstate_next).unwrap_or(0);
    }
    Err(bad())
}

/// `PyThreadState.interp`, the same in every version here.
const TSTATE_INTERP: u64 = 16;

#[cfg(test)]
mod tests {
    #[test]
    fn versions_from_names() {
        assert_eq!(super::version_from_name("/usr/bin/python3.11"), Some((3, 11)));
        assert_eq!(
            super::version_from_name("/usr/lib/libpython3.9.so.1.0"),
            Some((3, 9))
        );
        assert_eq!(super::version_from_name("/usr/bin/python3"), None);
    }
}
