//! `leaktrace report --symbolize`: the stacks of bundles symbolized on
//! this machine from their stacks.raw.json (build-ids and file offsets),
//! for bundles recorded elsewhere or whose stacks.txt has no names. A
//! mapping's binary is used only when its build-id matches the recorded
//! one. Nothing in the bundles is changed.
use std::{
    fmt::Write as _,
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{bail, Result};

use crate::{
    evidence::{bundle::is_bundle_name, stackfiles},
    fmt::term,
};

/// Most bytes of stacks.raw.json read.
const RAW_CAP: u64 = 8 << 20;
/// Stacks printed per bundle.
const TOP: usize = 10;
/// Frames printed per stack.
const FRAMES: usize = 64;

fn read_raw(bundle: &Path) -> Result<stackfiles::RawStacks, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(bundle.join("stacks.raw.json"))
        .map_err(|e| format!("no stacks.raw.json: {e}"))?;
    let mut buf = Vec::new();
    f.take(RAW_CAP).read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let raw: stackfiles::RawStacks =
        serde_json::from_slice(&buf).map_err(|e| format!("stacks.raw.json unreadable: {e}"))?;
    if raw.format != stackfiles::RAW_FORMAT {
        return Err(format!("unknown format {}", term(&raw.format)));
    }
    Ok(raw)
}

/// The bundles under `dir`: `dir` itself if it is one, else its
/// evidence/ bundles, oldest first.
fn bundles(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.join("stacks.raw.json").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let ev = dir.join("evidence");
    let Ok(rd) = std::fs::read_dir(&ev) else {
        bail!(
            "{} is neither a bundle nor a record directory with evidence/",
            dir.display()
        );
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(is_bundle_name))
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

/// The text `report --symbolize` prints.
pub fn symbolize_text(dir: &Path, debug_dirs: &[PathBuf]) -> Result<String> {
    let mut dirs: Vec<PathBuf> = debug_dirs.to_vec();
    dirs.push(PathBuf::from("/usr/lib/debug"));
    let mut s = String::new();
    for b in bundles(dir)? {
        let _ = writeln!(s, "== bundle {}", term(&b.display().to_string()));
        let raw = match read_raw(&b) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(s, "  {}\n", term(&e));
                continue;
            }
        };
        let total = raw.total_samples;
        let off = stackfiles::symbolize_offline(raw, &dirs);
        for (i, m) in off.raw.mappings.iter().enumerate() {
            let what = match off.found.get(i) {
                Some(Ok(p)) => format!("found {}", term(&p.display().to_string())),
                Some(Err(e)) => term(e).into_owned(),
                None => "not looked up".into(),
            };
            let _ = writeln!(
                s,
                "  mapping {i}: {} build-id {}: {what}",
                term(&m.path),
                m.build_id.as_deref().unwrap_or("none")
            );
        }
        for e in &off.raw.errors {
            let _ = writeln!(s, "  note: {}", term(e));
        }
        if off.raw.stacks_truncated > 0 {
            let _ = writeln!(
                s,
                "  {} stacks ({} samples) were not recorded in stacks.raw.json (size bounds)",
                off.raw.stacks_truncated, off.raw.samples_truncated
            );
        }
        for (i, st) in off.raw.stacks.iter().take(TOP).enumerate() {
            let _ = writeln!(
                s,
                "\n  stack {}: {} samples ({:.1}%)",
                i + 1,
                st.count,
                st.count as f64 * 100.0 / total.max(1) as f64
            );
            for f in st.frames.iter().take(FRAMES) {
                let name = f.name.as_deref().map(term).unwrap_or("??".into());
                let loc = match (f.mapping.and_then(|m| off.raw.mappings.get(m)), f.file_offset) {
                    (Some(m), Some(o)) => format!(
                        " ({}+{o:#x})",
                        term(
                            &Path::new(&m.path)
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        )
                    ),
                    _ => String::new(),
                };
                let _ = writeln!(s, "    {:#018x} {name}{loc}", f.addr);
            }
        }
        s.push('\n');
    }
    Ok(s)
}
