//! The stack data a bundle's files are made of: stacks.raw.json's types,
//! the bounds every stack file keeps, and the escaping of one frame name.
//! Shared by the stack files, the profile, the perf maps and the Python
//! stacks, so it imports none of them.
use serde::{Deserialize, Serialize};

/// Longest frame name kept.
pub(crate) const NAME_CAP: usize = 512;

/// `s` cut to at most `n` bytes on a char boundary, ending in '…' if cut.
pub(crate) fn cap(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A frame name made safe for one field of a folded line: ';' (the frame
/// separator) becomes ':', control characters (newlines included) and
/// other hostile characters are written as \xNN / \u{N}, and the name is
/// capped. Never empty.
pub fn folded_frame(name: &str) -> String {
    let name = cap(name, NAME_CAP);
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ';' => out.push(':'),
            c => out.push_str(&crate::fmt::term(c.encode_utf8(&mut [0; 4]))),
        }
    }
    if out.trim().is_empty() {
        "[empty]".into()
    } else {
        out
    }
}

/// One mapped file the frames point into.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Mapping {
    pub path: String,
    /// Hex of the ELF build-id note; None if the file has none.
    pub build_id: Option<String>,
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// stacks.raw.json.
#[derive(Serialize, Deserialize, Default, Debug)]
pub struct RawStacks {
    pub format: String,
    pub pid: u32,
    pub comm: String,
    /// 1 in `period` faults was sampled.
    pub period: u32,
    pub page_size: u64,
    pub total_samples: u64,
    pub stacks_total: usize,
    /// Stacks left out (beyond MAX_STACKS), and their samples.
    pub stacks_truncated: usize,
    pub samples_truncated: u64,
    /// Stacks cut to MAX_FRAMES frames.
    pub frames_truncated: usize,
    /// Frames not looked up (beyond MAX_ADDRS unique addresses).
    pub addrs_not_looked_up: usize,
    pub mappings: Vec<Mapping>,
    pub stacks: Vec<RawStack>,
    /// Why build-ids, offsets or names are missing, if they are.
    pub errors: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct RawStack {
    pub count: u64,
    /// Innermost first, as sampled.
    pub frames: Vec<RawFrame>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RawFrame {
    pub addr: u64,
    pub mapping: Option<usize>,
    pub file_offset: Option<u64>,
    /// The name found on the machine that recorded it, if any.
    pub name: Option<String>,
}

pub const RAW_FORMAT: &str = "leaktrace-stacks-raw/1";

/// Most bytes of stacks.folded or stacks.raw.json; past it the file is cut
/// at a line (folded) or its stacks are dropped from the end (raw), and
/// meta.json says so.
pub const FILE_CAP: usize = 4 << 20;

/// Files for a bundle: name and bounded content.
pub type ExtraFiles = Vec<(&'static str, Vec<u8>)>;
