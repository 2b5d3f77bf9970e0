//! Which language runtime a suspect runs (CPython, Go, Node, JVM, .NET or
//! native code), and, for the runtimes that compile code at run time, how
//! many sampled frames in anonymous memory got a name from the process's
//! perf map (evidence/perfmap.rs), and what to do when they did not.
//!
//! meta.json's `language_runtime` object. (`runtime` is already taken by
//! the container runtime of docs/attribution.md.)
use std::{collections::HashSet, path::Path};

use serde::Serialize;

use super::{perfmap::PerfMapStatus, stackdata::RawStacks};

/// Most bytes of /proc/PID/maps read.
const MAPS_CAP: usize = 4 << 20;

/// meta.json's `language_runtime`.
#[derive(Serialize, Debug, Default, PartialEq)]
pub struct RuntimeMeta {
    /// cpython, go, node, jvm, dotnet or native.
    pub name: &'static str,
    pub detected_by: String,
    /// The runtime compiles code into anonymous memory.
    pub jit: bool,
    pub perf_map: PerfMapStatus,
    /// Distinct sampled addresses outside any mapped file, with and
    /// without a name (JIT code, trampolines).
    pub anon_frames_named: usize,
    pub anon_frames_unnamed: usize,
    /// How to get names for the unnamed ones.
    pub hint: Option<&'static str>,
}

/// Runtimes recognised by the executable's name or a mapped library.
const BY_FILE: &[(&str, &str, bool)] = &[
    // (runtime, file name prefix, exe only)
    ("node", "node", true),
    ("node", "nodejs", true),
    ("node", "libnode.so", false),
    ("jvm", "java", true),
    ("jvm", "libjvm.so", false),
    ("dotnet", "dotnet", true),
    ("dotnet", "libcoreclr.so", false),
];

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The runtime by file names: the executable first, then the mapped
/// libraries.
fn by_files(exe: Option<&str>, maps: &str) -> Option<(&'static str, String)> {
    let clip = |s: &str| crate::fmt::term(&s.chars().take(64).collect::<String>()).into_owned();
    if let Some(b) = exe.map(base) {
        for &(rt, pre, _) in BY_FILE {
            if b == pre || (pre.ends_with(".so") && b.starts_with(pre)) {
                return Some((rt, format!("exe {}", clip(b))));
            }
        }
    }
    let libs: HashSet<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(base)
        .collect();
    BY_FILE
        .iter()
        .filter(|(_, _, exe_only)| !exe_only)
        .find_map(|&(rt, pre, _)| {
            libs.iter()
                .find(|b| b.starts_with(pre))
                .map(|b| (rt, format!("maps {}", clip(b))))
        })
}

/// Detects the runtime of `pid` from its executable, its maps, and the
/// frame names of its sampled stacks (Go).
pub fn detect<'a>(pid: u32, names: impl Iterator<Item = &'a str>) -> (&'static str, String) {
    if let Some(py) = super::langstacks::python_kind(pid) {
        return ("cpython", py);
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let exe = exe.as_ref().map(|e| e.to_string_lossy().into_owned());
    let maps = crate::host::procfs::read_capped(Path::new(&format!("/proc/{pid}/maps")), MAPS_CAP)
        .map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if let Some(found) = by_files(exe.as_deref(), &maps) {
        return found;
    }
    if let Some(g) = super::langstacks::go_meta(names) {
        return ("go", g.detected_by.to_string());
    }
    ("native", "no runtime recognised".into())
}

/// What to do for unnamed JIT frames of `rt`.
pub fn hint(rt: &str) -> Option<&'static str> {
    Some(match rt {
        "node" => {
            "start node with --perf-basic-prof (add --interpreted-frames-native-stack to name \
             functions that are not compiled yet); leaktrace reads /tmp/perf-PID.map"
        }
        "jvm" => {
            "run the JVM with -XX:+PreserveFramePointer and write a perf map: \
             `jcmd PID Compiler.perfmap` (JDK 17+) or a perf-map agent"
        }
        "dotnet" => "set DOTNET_PerfMapEnabled=1 in the process's environment",
        "cpython" => "Python 3.12+: start it with -X perf (or PYTHONPERFSUPPORT=1) for a perf map",
        _ => return None,
    })
}

/// meta.json's `language_runtime` for `pid`, whose sampled stacks are
/// `raw`.
pub fn meta(pid: u32, raw: &RawStacks) -> RuntimeMeta {
    let frames = || raw.stacks.iter().flat_map(|s| &s.frames);
    let (name, detected_by) = detect(pid, frames().filter_map(|f| f.name.as_deref()));
    let mut named = HashSet::new();
    let mut unnamed = HashSet::new();
    for f in frames().filter(|f| f.mapping.is_none()) {
        if f.name.is_some() {
            named.insert(f.addr);
        } else {
            unnamed.insert(f.addr);
        }
    }
    let jit = matches!(name, "node" | "jvm" | "dotnet");
    let perf_map = super::perfmap::status(pid);
    let need = !unnamed.is_empty() || (jit && perf_map.status != "found");
    RuntimeMeta {
        name,
        detected_by,
        jit,
        perf_map,
        anon_frames_named: named.len(),
        anon_frames_unnamed: unnamed.len(),
        hint: if need { hint(name) } else { None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_are_named_by_exe_then_libraries() {
        let maps = "7f00-7f10 r-xp 0 08:01 1 /usr/lib/jvm/lib/server/libjvm.so\n";
        assert_eq!(by_files(Some("/usr/bin/node"), "").unwrap().0, "node");
        assert_eq!(by_files(Some("/usr/bin/nodejs"), "").unwrap().0, "node");
        assert_eq!(
            by_files(Some("/opt/app/launcher"), maps).unwrap(),
            ("jvm", "maps libjvm.so".into())
        );
        assert_eq!(
            by_files(Some("/srv/x"), "1-2 r-xp 0 0:0 1 /usr/lib/libcoreclr.so\n")
                .unwrap()
                .0,
            "dotnet"
        );
        assert_eq!(by_files(Some("/usr/bin/nodes"), "").map(|x| x.0), None);
        assert_eq!(by_files(Some("/usr/bin/cat"), "").map(|x| x.0), None);
        assert!(hint("node").unwrap().contains("--perf-basic-prof"));
        assert!(hint("native").is_none());
    }

    #[test]
    fn this_test_binary_is_native() {
        let m = meta(std::process::id(), &RawStacks::default());
        assert_eq!(m.name, "native");
        assert!(m.hint.is_none(), "{m:?}");
    }
}
