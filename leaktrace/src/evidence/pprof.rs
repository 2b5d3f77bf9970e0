//! profile.pb.gz: a bundle's sampled stacks as a pprof profile, so that
//! `go tool pprof`, Pyroscope, Parca and the other tools that ingest
//! pprof's `profile.proto` read them as they are.
//!
//! The input is generic: stacks of frames (leaf first), each frame a
//! function name with an optional file and line, an address and an optional
//! mapping. Native frames come from stacks.raw.json (`from_raw`); any other
//! kind of frame (Python, JIT) goes in the same way.
//!
//! Every string comes from the traced process (symbol names, paths, comm,
//! cgroup): each is escaped like terminal text (`fmt::term`, since `pprof
//! -top` prints them) and capped. The gzip file is capped at
//! `stackdata::FILE_CAP`; past it the least sampled stacks are dropped and
//! counted.
use std::{collections::HashMap, io::Write};

use prost::Message;
use serde::Serialize;

use super::stackdata::{Mapping, RawStacks, FILE_CAP};

/// Longest function name, file name or mapping path kept.
const NAME_CAP: usize = 512;
/// Longest label string kept (comm, cgroup).
const LABEL_CAP: usize = 256;
/// The bundle's file name.
pub const FILE: &str = "profile.pb.gz";

/// pprof's profile.proto, the messages and field numbers leaktrace writes.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "7")]
        pub drop_frames: i64,
        #[prost(int64, tag = "8")]
        pub keep_frames: i64,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
        #[prost(bool, tag = "5")]
        pub is_folded: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// A mapped file frames point into.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PMapping {
    pub path: String,
    /// Hex of the GNU build-id, if the file has one.
    pub build_id: Option<String>,
    /// Address range `[start, limit)` and the file offset at `start`;
    /// 0 when unknown.
    pub start: u64,
    pub limit: u64,
    pub offset: u64,
}

/// One frame of a stack.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PFrame {
    /// The function's name as the runtime names it (a symbol, a Python
    /// qualified name, a JIT perf-map name).
    pub function: String,
    /// Source file, if known.
    pub file: Option<String>,
    /// Source line, if known.
    pub line: Option<i64>,
    /// Address in the process; 0 for frames that have none (Python).
    pub address: u64,
    /// Index into the mappings.
    pub mapping: Option<usize>,
}

/// One sampled stack: frames leaf first, and how many faults were sampled
/// with it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PStack {
    pub frames: Vec<PFrame>,
    pub samples: u64,
}

/// Everything profile.pb.gz is made of.
pub struct ProfileInput<'a> {
    pub pid: u32,
    pub comm: &'a str,
    pub cgroup: Option<&'a str>,
    /// 1 in `period` faults was sampled.
    pub period: u32,
    pub page_size: u64,
    /// When the profile was taken (Unix ns) and the time it covers (ns,
    /// 0 when not known).
    pub time_nanos: i64,
    pub duration_nanos: i64,
    pub mappings: &'a [PMapping],
    /// Most sampled first: the ones dropped for size are the last.
    pub stacks: &'a [PStack],
}

/// meta.json's `profile` object.
#[derive(Serialize, Debug, Default, PartialEq)]
pub struct ProfileMeta {
    pub file: &'static str,
    pub format: &'static str,
    pub sample_types: [&'static str; 2],
    pub period_type: &'static str,
    pub period: u32,
    pub samples: usize,
    pub locations: usize,
    pub functions: usize,
    pub mappings: usize,
    pub bytes: usize,
    pub time_nanos: i64,
    pub duration_nanos: i64,
    /// Stacks (and their sampled faults) left out to keep the file under
    /// the cap.
    pub stacks_dropped_for_size: usize,
    pub samples_dropped_for_size: u64,
    pub error: Option<String>,
}

/// Escaped for a terminal (`pprof -top` prints it), then capped.
fn clean(s: &str, n: usize) -> String {
    super::stackdata::cap(&crate::fmt::term(s), n)
}

/// The string table: "" first, each string once.
#[derive(Default)]
struct Strings {
    table: Vec<String>,
    pos: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Self::default();
        s.add(String::new());
        s
    }
    fn add(&mut self, s: String) -> i64 {
        if let Some(&i) = self.pos.get(&s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.pos.insert(s.clone(), i);
        self.table.push(s);
        i
    }
    fn add_capped(&mut self, s: &str, n: usize) -> i64 {
        self.add(clean(s, n))
    }
}

/// The proto message of `inp` (not yet encoded), ids from 1.
pub fn profile(inp: &ProfileInput) -> proto::Profile {
    use proto::*;
    let mut st = Strings::new();
    let vt = |st: &mut Strings, t: &str, u: &str| ValueType {
        r#type: st.add(t.into()),
        unit: st.add(u.into()),
    };
    let mut p = Profile {
        sample_type: vec![
            vt(&mut st, "sampled_faults", "count"),
            vt(&mut st, "estimated_bytes", "bytes"),
        ],
        period_type: Some(vt(&mut st, "faults", "count")),
        period: inp.period.max(1) as i64,
        time_nanos: inp.time_nanos,
        duration_nanos: inp.duration_nanos,
        ..Default::default()
    };
    p.default_sample_type = st.add("estimated_bytes".into());
    p.comment.push(st.add(format!(
        "leaktrace: user stacks of page faults of pid {}, 1 in {} sampled; bytes = faults x {} x {} B page, an estimate",
        inp.pid,
        inp.period.max(1),
        inp.period.max(1),
        inp.page_size
    )));
    p.mapping = mappings(&mut st, inp.mappings, inp.stacks);
    let labels = labels(&mut st, inp);
    let bytes_per = inp.period.max(1) as i64 * inp.page_size as i64;
    let mut funcs: HashMap<(i64, i64), u64> = HashMap::new();
    let mut locs: HashMap<(u64, u64, u64, i64), u64> = HashMap::new();
    for s in inp.stacks {
        let mut ids = Vec::with_capacity(s.frames.len());
        for f in &s.frames {
            let mapping_id = f
                .mapping
                .filter(|&m| m < inp.mappings.len())
                .map_or(0, |m| m as u64 + 1);
            let name = st.add_capped(&f.function, NAME_CAP);
            let file = f.file.as_deref().map_or(0, |x| st.add_capped(x, NAME_CAP));
            let fid = *funcs.entry((name, file)).or_insert_with(|| {
                p.function.push(Function {
                    id: p.function.len() as u64 + 1,
                    name,
                    system_name: name,
                    filename: file,
                    start_line: 0,
                });
                p.function.len() as u64
            });
            let line = f.line.unwrap_or(0);
            let lid = *locs.entry((mapping_id, f.address, fid, line)).or_insert_with(|| {
                p.location.push(Location {
                    id: p.location.len() as u64 + 1,
                    mapping_id,
                    address: f.address,
                    line: vec![Line {
                        function_id: fid,
                        line,
                    }],
                    is_folded: false,
                });
                p.location.len() as u64
            });
            ids.push(lid);
        }
        let n = s.samples.min(i64::MAX as u64) as i64;
        p.sample.push(Sample {
            location_id: ids,
            value: vec![n, n.saturating_mul(bytes_per)],
            label: labels.clone(),
        });
    }
    p.string_table = st.table;
    p
}

/// pprof mappings, ids from 1. Every frame here carries its function
/// name, so `has_functions` is set: pprof then does not try to symbolize
/// them again with whatever binary has that path on the reader's machine.
fn mappings(st: &mut Strings, ms: &[PMapping], stacks: &[PStack]) -> Vec<proto::Mapping> {
    let lines: Vec<bool> = (0..ms.len())
        .map(|i| {
            stacks
                .iter()
                .flat_map(|s| &s.frames)
                .any(|f| f.mapping == Some(i) && f.line.is_some())
        })
        .collect();
    ms.iter()
        .enumerate()
        .map(|(i, m)| proto::Mapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.limit,
            file_offset: m.offset,
            filename: st.add_capped(&m.path, NAME_CAP),
            build_id: m.build_id.as_deref().map_or(0, |b| st.add_capped(b, 128)),
            has_functions: true,
            has_filenames: lines[i],
            has_line_numbers: lines[i],
            has_inline_frames: false,
        })
        .collect()
}

/// pid (a number), comm and cgroup: the same on every sample.
fn labels(st: &mut Strings, inp: &ProfileInput) -> Vec<proto::Label> {
    let mut v = vec![
        proto::Label {
            key: st.add("pid".into()),
            num: inp.pid as i64,
            ..Default::default()
        },
        proto::Label {
            key: st.add("comm".into()),
            str: st.add_capped(inp.comm, LABEL_CAP),
            ..Default::default()
        },
    ];
    if let Some(c) = inp.cgroup.filter(|c| !c.is_empty()) {
        v.push(proto::Label {
            key: st.add("cgroup".into()),
            str: st.add_capped(c, LABEL_CAP),
            ..Default::default()
        });
    }
    v
}

fn gzip(b: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b)?;
    e.finish()
}

/// profile.pb.gz's bytes (at most `cap`) and meta.json's `profile`
/// object. Past the cap, the least sampled quarter of the stacks is dropped
/// until it fits; they are counted in the meta.
pub fn encode(inp: &ProfileInput, cap: usize) -> (Option<Vec<u8>>, ProfileMeta) {
    let mut m = ProfileMeta {
        file: FILE,
        format: "pprof profile.proto, gzip",
        sample_types: ["sampled_faults/count", "estimated_bytes/bytes"],
        period_type: "faults/count",
        period: inp.period.max(1),
        time_nanos: inp.time_nanos,
        duration_nanos: inp.duration_nanos,
        ..Default::default()
    };
    let mut keep = inp.stacks.len();
    loop {
        let part = ProfileInput {
            stacks: &inp.stacks[..keep],
            ..*inp
        };
        let p = profile(&part);
        let gz = match gzip(&p.encode_to_vec()) {
            Ok(gz) => gz,
            Err(e) => {
                m.error = Some(format!("gzip: {e}"));
                return (None, m);
            }
        };
        if gz.len() <= cap || keep == 0 {
            m.stacks_dropped_for_size = inp.stacks.len() - keep;
            m.samples_dropped_for_size = inp.stacks[keep..].iter().map(|s| s.samples).sum();
            m.samples = p.sample.len();
            m.locations = p.location.len();
            m.functions = p.function.len();
            m.mappings = p.mapping.len();
            m.bytes = gz.len();
            if gz.len() > cap {
                m.error = Some(format!("over {cap} bytes even without stacks"));
                return (None, m);
            }
            return (Some(gz), m);
        }
        keep -= keep.div_ceil(4);
    }
}

/// Mappings and stacks from stacks.raw.json. A mapping's range is the span
/// of the sampled addresses in it (that is all the bundle knows of it); a
/// frame with no name is named as in stacks.folded: `file+0xOFFSET`, else
/// its address.
pub fn from_raw(raw: &RawStacks) -> (Vec<PMapping>, Vec<PStack>) {
    let mut maps: Vec<PMapping> = raw
        .mappings
        .iter()
        .map(|m: &Mapping| PMapping {
            path: m.path.clone(),
            build_id: m.build_id.clone(),
            start: u64::MAX,
            ..Default::default()
        })
        .collect();
    for f in raw.stacks.iter().flat_map(|s| &s.frames) {
        if let (Some(pm), Some(off)) = (f.mapping.and_then(|i| maps.get_mut(i)), f.file_offset) {
            if f.addr < pm.start {
                pm.start = f.addr;
                pm.offset = off;
            }
            pm.limit = pm.limit.max(f.addr.saturating_add(1));
        }
    }
    for pm in &mut maps {
        if pm.start == u64::MAX {
            pm.start = 0;
        }
    }
    let stacks = raw
        .stacks
        .iter()
        .map(|s| PStack {
            samples: s.count,
            frames: s
                .frames
                .iter()
                .map(|f| PFrame {
                    function: f.name.clone().unwrap_or_else(|| unnamed(f, &raw.mappings)),
                    file: None,
                    line: None,
                    address: f.addr,
                    mapping: f.mapping.filter(|&m| m < raw.mappings.len()),
                })
                .collect(),
        })
        .collect();
    (maps, stacks)
}

fn unnamed(f: &super::stackdata::RawFrame, ms: &[Mapping]) -> String {
    match (f.mapping.and_then(|m| ms.get(m)), f.file_offset) {
        (Some(m), Some(off)) => {
            let base = m.path.rsplit('/').next().unwrap_or(&m.path);
            format!("{base}+{off:#x}")
        }
        _ => format!("{:#x}", f.addr),
    }
}

/// The memory cgroup path of `pid` (for the label), if it can be read.
fn cgroup_of(pid: u32) -> Option<String> {
    let path = std::path::PathBuf::from(format!("/proc/{pid}/cgroup"));
    let (b, _) = crate::host::procfs::read_capped(&path, 64 * 1024).ok()?;
    crate::host::procfs::parse_cgroup_raw(&b).map(|(p, _)| String::from_utf8_lossy(&p).into_owned())
}

/// Adds profile.pb.gz for the native stacks of `raw` to a bundle's files,
/// and `profile` to its meta.json. `sampled_for`: how long the process's
/// faults have been sampled (the profile's duration).
pub fn add_to_bundle(
    raw: &RawStacks,
    sampled_for: std::time::Duration,
    files: &mut super::stackdata::ExtraFiles,
    meta: &mut serde_json::Map<String, serde_json::Value>,
) {
    let (mappings, stacks) = from_raw(raw);
    add_stacks_to_bundle(raw, &mappings, &stacks, sampled_for, files, meta);
}

/// As `add_to_bundle`, with stacks the caller built (most sampled first):
/// e.g. `from_raw`'s native stacks with interpreter frames spliced in.
/// pid, comm, period and page size are `raw`'s.
pub fn add_stacks_to_bundle(
    raw: &RawStacks,
    mappings: &[PMapping],
    stacks: &[PStack],
    sampled_for: std::time::Duration,
    files: &mut super::stackdata::ExtraFiles,
    meta: &mut serde_json::Map<String, serde_json::Value>,
) {
    let cgroup = cgroup_of(raw.pid);
    let inp = ProfileInput {
        pid: raw.pid,
        comm: &raw.comm,
        cgroup: cgroup.as_deref(),
        period: raw.period,
        page_size: raw.page_size,
        time_nanos: (crate::fmt::now_ms() as i64).saturating_mul(1_000_000),
        duration_nanos: sampled_for.as_nanos().min(i64::MAX as u128) as i64,
        mappings,
        stacks,
    };
    let (gz, m) = encode(&inp, FILE_CAP);
    if let Some(gz) = gz {
        files.push((FILE, gz));
    }
    meta.insert("profile".into(), serde_json::to_value(&m).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::evidence::stackdata::{RawFrame, RawStack};

    fn decode(gz: &[u8]) -> proto::Profile {
        let mut b = Vec::new();
        flate2::read::GzDecoder::new(gz).read_to_end(&mut b).unwrap();
        proto::Profile::decode(b.as_slice()).unwrap()
    }

    fn frame(addr: u64, mapping: Option<usize>, name: Option<&str>) -> RawFrame {
        RawFrame {
            addr,
            mapping,
            file_offset: mapping.map(|_| addr - 0x400000),
            name: name.map(str::to_string),
        }
    }

    fn raw() -> RawStacks {
        RawStacks {
            pid: 42,
            comm: "leak\x1b[2J".into(),
            period: 16,
            page_size: 4096,
            mappings: vec![Mapping {
                path: "/usr/bin/leaker".into(),
                build_id: Some("abcd".into()),
            }],
            stacks: vec![
                RawStack {
                    count: 30,
                    frames: vec![
                        frame(0x401010, Some(0), Some("leak_inner")),
                        frame(0x401100, Some(0), Some("main")),
                    ],
                },
                RawStack {
                    count: 2,
                    frames: vec![
                        frame(0x401020, Some(0), Some("leak_inner")),
                        frame(0x401100, Some(0), Some("main")),
                        frame(0x402000, Some(0), None),
                        frame(0x7f00_0000_1000, None, None),
                    ],
                },
            ],
            ..Default::default()
        }
    }

    fn input<'a>(maps: &'a [PMapping], stacks: &'a [PStack]) -> ProfileInput<'a> {
        ProfileInput {
            pid: 42,
            comm: "leak\x1b[2J",
            cgroup: Some("/leaktrace-test/x"),
            period: 16,
            page_size: 4096,
            time_nanos: 1_700_000_000_000_000_000,
            duration_nanos: 5_000_000_000,
            mappings: maps,
            stacks,
        }
    }

    #[test]
    fn native_stacks_decode_back_as_pprof() {
        let (maps, stacks) = from_raw(&raw());
        let (gz, m) = encode(&input(&maps, &stacks), FILE_CAP);
        let p = decode(&gz.unwrap());
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(s(0), "");
        let types: Vec<(&str, &str)> = p.sample_type.iter().map(|v| (s(v.r#type), s(v.unit))).collect();
        assert_eq!(types, [("sampled_faults", "count"), ("estimated_bytes", "bytes")]);
        let pt = p.period_type.as_ref().unwrap();
        assert_eq!((s(pt.r#type), s(pt.unit), p.period), ("faults", "count", 16));
        assert!(p.time_nanos > 0 && p.duration_nanos > 0);
        assert_eq!(p.sample.len(), 2);
        assert_eq!(p.sample[0].value, vec![30, 30 * 16 * 4096]);
        // Leaf first, and `main` at the same address is one location.
        let leaf = &p.location[p.sample[0].location_id[0] as usize - 1];
        let f = &p.function[leaf.line[0].function_id as usize - 1];
        assert_eq!(s(f.name), "leak_inner");
        assert_eq!(p.sample[0].location_id[1], p.sample[1].location_id[1]);
        // leak_inner at two addresses: two locations, one function.
        assert_eq!(p.location.len(), 5);
        assert_eq!(p.function.len(), 4);
        let names: Vec<&str> = p.function.iter().map(|f| s(f.name)).collect();
        assert!(
            names.contains(&"leaker+0x2000") && names.contains(&"0x7f0000001000"),
            "{names:?}"
        );
        // Ids are 1..n and every reference resolves.
        for (i, l) in p.location.iter().enumerate() {
            assert_eq!(l.id, i as u64 + 1);
            assert!(l.mapping_id as usize <= p.mapping.len());
        }
        let mp = &p.mapping[0];
        assert_eq!((s(mp.filename), s(mp.build_id)), ("/usr/bin/leaker", "abcd"));
        assert_eq!(
            (mp.memory_start, mp.memory_limit, mp.file_offset),
            (0x401010, 0x402001, 0x1010)
        );
        assert!(mp.has_functions);
        // Labels: pid as a number, comm escaped, cgroup.
        let l: HashMap<&str, (&str, i64)> = p.sample[1]
            .label
            .iter()
            .map(|l| (s(l.key), (s(l.str), l.num)))
            .collect();
        assert_eq!(l["pid"].1, 42);
        assert_eq!(l["cgroup"].0, "/leaktrace-test/x");
        assert!(!l["comm"].0.contains('\x1b'), "{:?}", l["comm"]);
        assert_eq!(
            (m.samples, m.locations, m.functions, m.stacks_dropped_for_size),
            (2, 5, 4, 0)
        );
    }

    #[test]
    fn a_bundle_gets_the_file_and_its_meta() {
        let mut files = Vec::new();
        let mut meta = serde_json::Map::new();
        let r = raw();
        add_to_bundle(&r, std::time::Duration::from_secs(2), &mut files, &mut meta);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].0, FILE);
        let p = decode(&files[0].1);
        assert_eq!(p.duration_nanos, 2_000_000_000);
        assert!(p.time_nanos > 0);
        assert_eq!(meta["profile"]["samples"], 2);
        assert_eq!(meta["profile"]["file"], FILE);
    }

    #[test]
    fn python_like_frames_keep_file_and_line() {
        let stacks = vec![PStack {
            samples: 7,
            frames: vec![
                PFrame {
                    function: "store_chunk".into(),
                    file: Some("/srv/app.py".into()),
                    line: Some(12),
                    ..Default::default()
                },
                PFrame {
                    function: "handle_request".into(),
                    file: Some("/srv/app.py".into()),
                    line: Some(30),
                    ..Default::default()
                },
            ],
        }];
        let p = decode(&encode(&input(&[], &stacks), FILE_CAP).0.unwrap());
        let loc = &p.location[0];
        assert_eq!((loc.mapping_id, loc.line[0].line), (0, 12));
        let f = &p.function[0];
        assert_eq!(p.string_table[f.filename as usize], "/srv/app.py");
    }

    #[test]
    fn over_the_cap_the_least_sampled_stacks_go_and_are_counted() {
        let stacks: Vec<PStack> = (0..400u64)
            .map(|i| PStack {
                samples: 1000 - i,
                frames: (0..20)
                    .map(|j| PFrame {
                        function: format!("f{i}_{j}_{}", "x".repeat(100)),
                        address: i * 100 + j,
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect();
        let (gz, m) = encode(&input(&[], &stacks), 64 * 1024);
        let gz = gz.unwrap();
        assert!(gz.len() <= 64 * 1024);
        assert!(m.stacks_dropped_for_size > 0, "{m:?}");
        let p = decode(&gz);
        assert_eq!(p.sample.len() + m.stacks_dropped_for_size, 400);
        // The most sampled stack is kept.
        assert_eq!(p.sample[0].value[0], 1000);
        let dropped: u64 = stacks[p.sample.len()..].iter().map(|s| s.samples).sum();
        assert_eq!(m.samples_dropped_for_size, dropped);
        // Names are capped.
        let long = vec![PStack {
            samples: 1,
            frames: vec![PFrame {
                function: "y".repeat(10_000),
                ..Default::default()
            }],
        }];
        let p = decode(&encode(&input(&[], &long), FILE_CAP).0.unwrap());
        assert!(p.string_table.iter().all(|s| s.len() < NAME_CAP + 8));
    }
}
