//! stacks.folded and stacks.raw.json, written beside stacks.txt.
//!
//! stacks.folded is the collapsed format of flamegraph.pl, inferno and
//! speedscope: one line per stack, `root;...;leaf COUNT`. Frame names come
//! from the traced process's binaries, so they are escaped: no ';', no
//! newline, no control character can reach a line.
//!
//! stacks.raw.json keeps what is needed to symbolize the stacks again
//! elsewhere: each unique stack's raw addresses and, per frame, the index of
//! its mapping (path and ELF build-id) and the file offset in it.
//! `leaktrace report --symbolize` uses it offline when the binaries (or
//! their debug files under /usr/lib/debug/.build-id) are present.
//!
//! Reading build-ids and symbols means parsing the process's ELF files,
//! which anyone may have built: that happens in a sandboxed child
//! (`leaktrace __stackinfo`, `leaktrace __symbolize-offline`), with the same
//! limits as the stacks.txt symbolizer.
use std::{
    collections::HashMap,
    io::{Read, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::stackdata::{cap, hex, NAME_CAP};
pub use super::stackdata::{
    folded_frame, ExtraFiles, Mapping, RawFrame, RawStack, RawStacks, FILE_CAP, RAW_FORMAT,
};

/// Most unique stacks written to stacks.folded and stacks.raw.json.
pub const MAX_STACKS: usize = 1000;
/// Most frames kept per stack.
pub const MAX_FRAMES: usize = 128;
/// Most unique addresses sent to the child.
pub const MAX_ADDRS: usize = 8000;
/// Longest frame name kept.
/// Longest mapping path kept.
const PATH_CAP: usize = 1024;
/// Most bytes read from a child.
const ANSWER_CAP: u64 = 16 << 20;
/// Most bytes of request a child reads.
const REQUEST_CAP: u64 = 4 << 20;

#[derive(Serialize, Deserialize)]
struct InfoRequest {
    pid: u32,
    addrs: Vec<u64>,
}

/// What the child learnt about one address.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
struct AddrInfo {
    name: Option<String>,
    mapping: Option<usize>,
    file_offset: Option<u64>,
    reason: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct InfoAnswer {
    addrs: Vec<AddrInfo>,
    mappings: Vec<Mapping>,
    normalize_error: Option<String>,
    symbolize_error: Option<String>,
    /// A refused perf map, or its bounds hit (perfmap.rs).
    #[serde(default)]
    perf_map_note: Option<String>,
}

pub(crate) fn read_request<T: for<'de> Deserialize<'de>>() -> Option<T> {
    let mut raw = Vec::new();
    std::io::stdin().take(REQUEST_CAP).read_to_end(&mut raw).ok()?;
    serde_json::from_slice(&raw).ok()
}

pub(crate) fn write_answer<T: Serialize>(a: &T) -> i32 {
    let out = std::io::stdout();
    let mut out = out.lock();
    if serde_json::to_writer(&mut out, a).is_err() || out.flush().is_err() {
        return 1;
    }
    0
}

/// `leaktrace __stackinfo`: the child side. For each address of a live
/// process: its mapping (path, build-id from the ELF note), file offset
/// and symbol name.
pub fn info_child_main() -> i32 {
    use blazesym::{
        normalize::{NormalizeOpts, Normalizer, UserMeta},
        symbolize::{
            source::{Process, Source},
            Input, Symbolized, Symbolizer,
        },
    };
    let Some(req) = read_request::<InfoRequest>() else {
        return 1;
    };
    let mut ans = InfoAnswer {
        addrs: vec![AddrInfo::default(); req.addrs.len()],
        ..Default::default()
    };
    let norm = Normalizer::builder().enable_build_ids(true).build();
    let opts = NormalizeOpts {
        map_files: false,
        ..Default::default()
    };
    match norm.normalize_user_addrs_opts(req.pid.into(), &req.addrs, &opts) {
        Ok(out) => {
            // Meta index -> index in ans.mappings (ELF files only).
            let mut idx: HashMap<usize, usize> = HashMap::new();
            for (i, (off, mi)) in out.outputs.iter().enumerate() {
                let Some(a) = ans.addrs.get_mut(i) else { break };
                match out.meta.get(*mi) {
                    Some(UserMeta::Elf(e)) => {
                        let m = *idx.entry(*mi).or_insert_with(|| {
                            ans.mappings.push(Mapping {
                                path: cap(&e.path.to_string_lossy(), PATH_CAP),
                                build_id: e.build_id.as_ref().map(|b| hex(b)),
                            });
                            ans.mappings.len() - 1
                        });
                        a.mapping = Some(m);
                        a.file_offset = Some(*off);
                    }
                    Some(UserMeta::Unknown(u)) => a.reason = Some(cap(&u.reason.to_string(), 200)),
                    Some(other) => a.reason = Some(cap(&format!("{other:?}"), 200)),
                    None => a.reason = Some("no mapping".into()),
                }
            }
        }
        Err(e) => ans.normalize_error = Some(cap(&e.to_string(), 400)),
    }
    let sym = Symbolizer::new();
    let mut proc_src = Process::new(req.pid.into());
    proc_src.perf_map = false; // read by perfmap.rs, as hostile input
    let src = Source::Process(proc_src);
    match sym.symbolize(&src, Input::AbsAddr(req.addrs.as_slice())) {
        Ok(syms) => {
            for (a, s) in ans.addrs.iter_mut().zip(syms) {
                if let Symbolized::Sym(sy) = s {
                    a.name = Some(cap(&sy.name, NAME_CAP));
                }
            }
        }
        Err(e) => ans.symbolize_error = Some(cap(&e.to_string(), 400)),
    }
    // JIT code (no file mapping): named from the perf map (perfmap.rs).
    let anon = req
        .addrs
        .iter()
        .zip(ans.addrs.iter_mut())
        .filter(|(_, a)| a.mapping.is_none());
    ans.perf_map_note = super::perfmap::fill_names(req.pid, anon.map(|(ip, a)| (*ip, &mut a.name)));
    write_answer(&ans)
}

/// What `build` makes: the two files and a summary for meta.json.
pub struct StackFiles {
    pub folded: String,
    pub raw: RawStacks,
}

/// Builds stacks.folded and stacks.raw.json from the sampled stacks
/// (innermost first, most samples first), looking the addresses up in a
/// sandboxed child against the live process.
/// `known`: names stacks.txt's symbolizer already found (it runs first,
/// while the process is surely alive); they fill in what this lookup
/// misses, e.g. when the process was killed in between.
pub fn build(
    pid: u32,
    comm: &str,
    period: u32,
    page: u64,
    stacks: &[(Vec<u64>, u64)],
    known: &HashMap<u64, String>,
) -> StackFiles {
    let mut raw = RawStacks {
        format: RAW_FORMAT.into(),
        pid,
        comm: cap(comm, 64),
        period,
        page_size: page,
        total_samples: stacks.iter().map(|s| s.1).sum(),
        stacks_total: stacks.len(),
        ..Default::default()
    };
    let kept = &stacks[..stacks.len().min(MAX_STACKS)];
    raw.stacks_truncated = stacks.len() - kept.len();
    raw.samples_truncated = stacks[kept.len()..].iter().map(|s| s.1).sum();
    let mut uniq: Vec<u64> = Vec::new();
    let mut pos: HashMap<u64, usize> = HashMap::new();
    for (ips, _) in kept {
        if ips.len() > MAX_FRAMES {
            raw.frames_truncated += 1;
        }
        for ip in ips.iter().take(MAX_FRAMES) {
            if !pos.contains_key(ip) {
                if uniq.len() >= MAX_ADDRS {
                    raw.addrs_not_looked_up += 1;
                    continue;
                }
                pos.insert(*ip, uniq.len());
                uniq.push(*ip);
            }
        }
    }
    let ans = if uniq.is_empty() {
        Ok(InfoAnswer::default())
    } else {
        serde_json::to_vec(&InfoRequest {
            pid,
            addrs: uniq.clone(),
        })
        .map_err(|e| e.to_string())
        .and_then(|r| super::symbolize::run_sandboxed("__stackinfo", r, ANSWER_CAP))
        .and_then(|b| {
            serde_json::from_slice::<InfoAnswer>(&b).map_err(|e| format!("answer cut or unreadable: {e}"))
        })
    };
    let ans = match ans {
        Ok(a) => a,
        Err(e) => {
            raw.errors.push(format!("stack lookup failed: {e}"));
            InfoAnswer::default()
        }
    };
    raw.errors
        .extend(ans.normalize_error.iter().map(|e| format!("normalize: {e}")));
    raw.errors
        .extend(ans.symbolize_error.iter().map(|e| format!("symbolize: {e}")));
    raw.errors.extend(ans.perf_map_note.iter().cloned());
    // Indexes from the child are checked: a bad one is dropped.
    let nmap = ans.mappings.len();
    raw.mappings = ans.mappings;
    let info = |ip: &u64| -> AddrInfo {
        pos.get(ip)
            .and_then(|&i| ans.addrs.get(i))
            .cloned()
            .map(|mut a| {
                a.mapping = a.mapping.filter(|&m| m < nmap);
                a
            })
            .unwrap_or_default()
    };
    let mut folded = String::new();
    for (ips, count) in kept {
        let frames: Vec<RawFrame> = ips
            .iter()
            .take(MAX_FRAMES)
            .map(|ip| {
                let a = info(ip);
                RawFrame {
                    addr: *ip,
                    mapping: a.mapping,
                    file_offset: a.file_offset,
                    name: a.name.or_else(|| known.get(ip).cloned()),
                }
            })
            .collect();
        folded += &folded_line(&frames, &raw.mappings, *count);
        raw.stacks.push(RawStack {
            count: *count,
            frames,
        });
    }
    StackFiles { folded, raw }
}

/// One folded line, root first. A frame without a name is
/// `file+0xOFFSET` (the mapping's file name) or its raw address.
pub fn folded_line(frames: &[RawFrame], mappings: &[Mapping], count: u64) -> String {
    let names: Vec<String> = frames
        .iter()
        .rev()
        .map(
            |f| match (&f.name, f.mapping.and_then(|m| mappings.get(m)), f.file_offset) {
                (Some(n), _, _) => folded_frame(n),
                (None, Some(m), Some(off)) => {
                    let base = Path::new(&m.path)
                        .file_name()
                        .map(|b| b.to_string_lossy().into_owned())
                        .unwrap_or_else(|| m.path.clone());
                    folded_frame(&format!("{base}+{off:#x}"))
                }
                _ => format!("{:#x}", f.addr),
            },
        )
        .collect();
    if names.is_empty() {
        return format!("[no frames] {count}\n");
    }
    format!("{} {count}\n", names.join(";"))
}

/// A CPython suspect's Python stacks, for its stacks.folded.
pub struct PyExtras<'a> {
    pub input: &'a super::pymix::PyInput,
    /// (frame-pointer stack id, sampled faults).
    pub fp: &'a [(u32, u64)],
    pub by_id: &'a HashMap<u32, Vec<u64>>,
}

/// The files a bundle gets besides stacks.txt, and their meta.json fields:
/// stacks.folded and stacks.raw.json when stacks were sampled
/// (`samples` is Some), python_stacks.txt for a CPython process, and the
/// `go` object for a Go program.
#[allow(clippy::too_many_arguments)]
pub fn bundle_extras(
    pid: u32,
    comm: &str,
    period: u32,
    page: u64,
    samples: Option<&[(Vec<u64>, u64)]>,
    py_spy: Option<&Path>,
    known: &HashMap<u64, String>,
    py: Option<PyExtras>,
    sampled_for: std::time::Duration,
) -> (ExtraFiles, serde_json::Map<String, serde_json::Value>) {
    use serde_json::json;
    let mut files = Vec::new();
    let mut meta = serde_json::Map::new();
    // Python first: py-spy pauses the process for a moment, the sooner the
    // closer to the trigger.
    if let Some(kind) = super::langstacks::python_kind(pid) {
        let (text, m) = super::langstacks::python_stacks(pid, kind, py_spy);
        if let Some(t) = text {
            files.push(("python_stacks.txt", t.into_bytes()));
        }
        meta.insert("python".into(), serde_json::to_value(&m).unwrap_or_default());
    }
    if let Some(samples) = samples {
        let mut sf = build(pid, comm, period, page, samples, known);
        let mut folded = match &py {
            Some(p) => python_folded(p, &sf.raw, known),
            None => std::mem::take(&mut sf.folded),
        };
        if let Some(p) = &py {
            let m = meta.entry("python").or_insert_with(|| json!({}));
            if let Some(o) = m.as_object_mut() {
                o.insert("kernel_frames".into(), super::pymix::meta(p.input));
            }
        }
        let (raw, folded_cut, raw_dropped) = cap_files(&mut folded, &mut sf.raw);
        let names = sf
            .raw
            .stacks
            .iter()
            .flat_map(|s| s.frames.iter())
            .filter_map(|f| f.name.as_deref());
        if let Some(g) = super::langstacks::go_meta(names) {
            meta.insert("go".into(), serde_json::to_value(&g).unwrap_or_default());
        }
        meta.insert(
            "stack_files".into(),
            json!({
                "folded": "stacks.folded",
                "raw": "stacks.raw.json",
                "stacks_total": sf.raw.stacks_total,
                "stacks_written": sf.raw.stacks.len(),
                "stacks_truncated": sf.raw.stacks_truncated,
                "samples_truncated": sf.raw.samples_truncated,
                "frames_truncated": sf.raw.frames_truncated,
                "addrs_not_looked_up": sf.raw.addrs_not_looked_up,
                "folded_lines_cut": folded_cut,
                "raw_stacks_dropped_for_size": raw_dropped,
                "mappings": sf.raw.mappings.len(),
                "mappings_with_build_id": sf.raw.mappings.iter().filter(|m| m.build_id.is_some()).count(),
                "errors": sf.raw.errors,
            }),
        );
        files.push(("stacks.folded", folded.into_bytes()));
        files.push(("stacks.raw.json", raw));
        // profile.pb.gz (pprof): the same stacks for pprof's tools.
        // For a CPython suspect, the mixed Python/native stacks.
        match &py {
            Some(p) => {
                let (maps, _) = super::pprof::from_raw(&sf.raw);
                let stacks = super::pymix::pprof_stacks(p.input, p.fp, p.by_id, &sf.raw);
                super::pprof::add_stacks_to_bundle(
                    &sf.raw,
                    &maps,
                    &stacks,
                    sampled_for,
                    &mut files,
                    &mut meta,
                );
            }
            None => super::pprof::add_to_bundle(&sf.raw, sampled_for, &mut files, &mut meta),
        }
        // The language runtime, and how JIT frames are named (runtime.rs).
        let rt = super::runtime::meta(pid, &sf.raw);
        meta.insert(
            "language_runtime".into(),
            serde_json::to_value(&rt).unwrap_or_default(),
        );
    }
    (files, meta)
}

/// Cuts stacks.folded at a line and drops stacks.raw.json's least sampled
/// stacks until both fit FILE_CAP; returns the raw file and what was cut.
fn cap_files(folded: &mut String, raw_stacks: &mut RawStacks) -> (Vec<u8>, usize, usize) {
    let mut folded_cut = 0usize;
    if folded.len() > FILE_CAP {
        let end = folded[..FILE_CAP].rfind('\n').map(|i| i + 1).unwrap_or(0);
        folded_cut = folded[end..].lines().count();
        folded.truncate(end);
    }
    let mut raw = crate::fmt::json_line(&raw_stacks)
        .map(String::into_bytes)
        .unwrap_or_default();
    let mut raw_dropped = 0usize;
    while raw.len() > FILE_CAP && !raw_stacks.stacks.is_empty() {
        let n = raw_stacks.stacks.len().div_ceil(4);
        for st in raw_stacks.stacks.drain(raw_stacks.stacks.len() - n..) {
            raw_dropped += 1;
            raw_stacks.samples_truncated += st.count;
        }
        raw_stacks.stacks_truncated += n;
        raw = crate::fmt::json_line(&raw_stacks)
            .map(String::into_bytes)
            .unwrap_or_default();
    }
    (raw, folded_cut, raw_dropped)
}

/// Mixed Python/native folded lines; native names from the stack lookup,
/// else stacks.txt's, else the address.
fn python_folded(p: &PyExtras, raw: &RawStacks, known: &HashMap<u64, String>) -> String {
    let mut names: HashMap<u64, String> = known.clone();
    for f in raw.stacks.iter().flat_map(|s| s.frames.iter()) {
        if let Some(n) = &f.name {
            names.insert(f.addr, n.clone());
        }
    }
    let name_of = |ip: u64| names.get(&ip).cloned().unwrap_or_else(|| format!("{ip:#x}"));
    super::pymix::folded(p.input, p.fp, p.by_id, &name_of)
}

// ---- offline symbolization (`leaktrace report --symbolize`) ----

#[derive(Serialize, Deserialize)]
struct OfflineRequest {
    /// Per mapping: the file to read (already found by build-id) and the
    /// file offsets to look up in it.
    files: Vec<(PathBuf, Vec<u64>)>,
}

#[derive(Serialize, Deserialize, Default)]
struct OfflineAnswer {
    /// Per file: a name per offset, or why not.
    names: Vec<Result<Vec<Option<String>>, String>>,
}

#[derive(Serialize, Deserialize)]
struct BuildIdRequest {
    paths: Vec<PathBuf>,
}

/// `leaktrace __symbolize-offline`: reads build-ids of candidate files
/// (request kind "ids") or symbolizes file offsets in ELF files.
pub fn offline_child_main() -> i32 {
    use blazesym::symbolize::{
        source::{Elf, Source},
        Input, Symbolized, Symbolizer,
    };
    #[derive(Deserialize)]
    enum Req {
        Ids(BuildIdRequest),
        Sym(OfflineRequest),
    }
    let Some(req) = read_request::<Req>() else {
        return 1;
    };
    match req {
        Req::Ids(r) => {
            let ids: Vec<Option<String>> = r
                .paths
                .iter()
                .map(|p| {
                    blazesym::helper::read_elf_build_id(p)
                        .ok()
                        .flatten()
                        .map(|b| hex(&b))
                })
                .collect();
            write_answer(&ids)
        }
        Req::Sym(r) => {
            let sym = Symbolizer::new();
            let names = r
                .files
                .iter()
                .map(|(path, offs)| {
                    let src = Source::Elf(Elf::new(path));
                    sym.symbolize(&src, Input::FileOffset(offs.as_slice()))
                        .map(|v| {
                            v.into_iter()
                                .map(|s| match s {
                                    Symbolized::Sym(sy) => Some(cap(&sy.name, NAME_CAP)),
                                    Symbolized::Unknown(_) => None,
                                })
                                .collect()
                        })
                        .map_err(|e| cap(&e.to_string(), 400))
                })
                .collect();
            write_answer(&OfflineAnswer { names })
        }
    }
}

/// The result of symbolizing a stacks.raw.json here.
pub struct Offline {
    /// Per mapping: where its binary was found, or why not.
    pub found: Vec<Result<PathBuf, String>>,
    /// The stacks with the names found here filled in.
    pub raw: RawStacks,
}

/// Candidate files for a mapping: its recorded path, then the debug file
/// of its build-id under each debug directory.
fn candidates(m: &Mapping, debug_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from(&m.path)];
    if let Some(id) = &m.build_id {
        if id.len() > 2 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            for d in debug_dirs {
                v.push(
                    d.join(".build-id")
                        .join(&id[..2])
                        .join(format!("{}.debug", &id[2..])),
                );
            }
        }
    }
    v
}

/// Symbolizes `raw` on this machine: a mapping's binary is used only if its
/// build-id matches the recorded one (a mapping recorded without a build-id
/// is not trusted to be the same file, and stays unsymbolized). Names
/// found here replace the recorded ones.
pub fn symbolize_offline(mut raw: RawStacks, debug_dirs: &[PathBuf]) -> Offline {
    let nm = raw.mappings.len().min(MAX_ADDRS);
    let cands: Vec<Vec<PathBuf>> = raw.mappings[..nm]
        .iter()
        .map(|m| candidates(m, debug_dirs))
        .collect();
    let all: Vec<PathBuf> = cands.iter().flatten().filter(|p| p.is_file()).cloned().collect();
    let ids: Vec<Option<String>> = if all.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(&serde_json::json!({"Ids": {"paths": all}}))
            .map_err(|e| e.to_string())
            .and_then(|r| super::symbolize::run_sandboxed("__symbolize-offline", r, ANSWER_CAP))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .unwrap_or_default()
    };
    let id_of: HashMap<&PathBuf, &Option<String>> = all.iter().zip(ids.iter()).collect();
    let mut found: Vec<Result<PathBuf, String>> = raw
        .mappings
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let Some(want) = &m.build_id else {
                return Err("recorded without a build-id: not matched".into());
            };
            cands
                .get(i)
                .into_iter()
                .flatten()
                .find(|p| {
                    id_of
                        .get(p)
                        .is_some_and(|id| id.as_deref() == Some(want.as_str()))
                })
                .cloned()
                .ok_or_else(|| format!("no file with build-id {want} here"))
        })
        .collect();
    // Offsets to look up, per found mapping.
    let mut per: Vec<(usize, Vec<u64>)> = Vec::new();
    let mut slot: HashMap<usize, usize> = HashMap::new();
    for st in &raw.stacks {
        for f in &st.frames {
            if let (Some(m), Some(off)) = (f.mapping, f.file_offset) {
                if found.get(m).is_some_and(|r| r.is_ok()) {
                    let s = *slot.entry(m).or_insert_with(|| {
                        per.push((m, Vec::new()));
                        per.len() - 1
                    });
                    if !per[s].1.contains(&off) && per[s].1.len() < MAX_ADDRS {
                        per[s].1.push(off);
                    }
                }
            }
        }
    }
    if per.is_empty() {
        return Offline { found, raw };
    }
    let req = OfflineRequest {
        files: per
            .iter()
            .map(|(m, offs)| (found[*m].clone().unwrap_or_default(), offs.clone()))
            .collect(),
    };
    let ans = serde_json::to_vec(&serde_json::json!({ "Sym": req }))
        .map_err(|e| e.to_string())
        .and_then(|r| super::symbolize::run_sandboxed("__symbolize-offline", r, ANSWER_CAP))
        .and_then(|b| serde_json::from_slice::<OfflineAnswer>(&b).map_err(|e| e.to_string()));
    let ans = match ans {
        Ok(a) => a,
        Err(e) => {
            raw.errors.push(format!("offline symbolization failed: {e}"));
            return Offline { found, raw };
        }
    };
    let mut names: HashMap<(usize, u64), String> = HashMap::new();
    for ((m, offs), res) in per.iter().zip(ans.names.iter()) {
        match res {
            Ok(v) => {
                for (off, n) in offs.iter().zip(v) {
                    if let Some(n) = n {
                        names.insert((*m, *off), cap(n, NAME_CAP));
                    }
                }
            }
            Err(e) => found[*m] = Err(format!("cannot symbolize: {e}")),
        }
    }
    for st in &mut raw.stacks {
        for f in &mut st.frames {
            if let (Some(m), Some(off)) = (f.mapping, f.file_offset) {
                if let Some(n) = names.get(&(m, off)) {
                    f.name = Some(n.clone());
                }
            }
        }
    }
    Offline { found, raw }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_frames_cannot_break_a_line() {
        assert_eq!(folded_frame("main"), "main");
        let f = folded_frame("a;b\nc\x1b[2J 7\r");
        assert!(
            !f.contains(';') && !f.contains('\n') && !f.contains('\x1b') && !f.contains('\r'),
            "{f}"
        );
        assert_eq!(folded_frame(""), "[empty]");
        assert!(folded_frame(&"x".repeat(5000)).len() < 600);
        let frames = vec![
            RawFrame {
                addr: 0x1000,
                mapping: Some(0),
                file_offset: Some(0x10),
                name: Some("leaf;x".into()),
            },
            RawFrame {
                addr: 0x2000,
                mapping: Some(0),
                file_offset: Some(0x20),
                name: None,
            },
            RawFrame {
                addr: 0x3000,
                mapping: Some(9),
                file_offset: None,
                name: None,
            },
        ];
        let m = vec![Mapping {
            path: "/usr/bin/app".into(),
            build_id: None,
        }];
        assert_eq!(folded_line(&frames, &m, 7), "0x3000;app+0x20;leaf:x 7\n");
    }

    #[test]
    fn offline_uses_only_files_whose_build_id_matches() {
        let raw = RawStacks {
            format: RAW_FORMAT.into(),
            mappings: vec![
                Mapping {
                    path: "/nonexistent/app".into(),
                    build_id: Some("abcdef0123".into()),
                },
                Mapping {
                    path: "/bin/sh".into(),
                    build_id: None,
                },
            ],
            stacks: vec![RawStack {
                count: 2,
                frames: vec![RawFrame {
                    addr: 0x1000,
                    mapping: Some(1),
                    file_offset: Some(0x10),
                    name: None,
                }],
            }],
            ..Default::default()
        };
        let o = symbolize_offline(raw, &[PathBuf::from("/nonexistent-debug")]);
        assert!(o.found[0]
            .as_ref()
            .unwrap_err()
            .contains("no file with build-id abcdef0123"));
        // Same path here, but no build-id recorded: not trusted.
        assert!(o.found[1].as_ref().unwrap_err().contains("without a build-id"));
        assert!(o.raw.stacks[0].frames[0].name.is_none());
        assert_eq!(
            candidates(&o.raw.mappings[0], &[PathBuf::from("/d")]),
            vec![
                PathBuf::from("/nonexistent/app"),
                PathBuf::from("/d/.build-id/ab/cdef0123.debug")
            ]
        );
    }

    #[test]
    fn a_failed_child_still_writes_raw_addresses() {
        // In the unit-test binary the child is not leaktrace: the lookup
        // fails, the files keep raw addresses and say why.
        let s = build(
            1,
            "x",
            16,
            4096,
            &[(vec![0x401000, 0x402000], 3), (vec![0x401000], 1)],
            &HashMap::new(),
        );
        assert_eq!(s.folded, "0x402000;0x401000 3\n0x401000 1\n");
        // Names stacks.txt found fill in what the lookup could not.
        let known: HashMap<u64, String> = [(0x401000, "leaf;fn".to_string())].into();
        let named = build(1, "x", 16, 4096, &[(vec![0x401000, 0x402000], 3)], &known);
        assert_eq!(named.folded, "0x402000;leaf:fn 3\n");
        assert_eq!(s.raw.total_samples, 4);
        assert_eq!(s.raw.stacks.len(), 2);
        assert!(!s.raw.errors.is_empty());
    }
}
