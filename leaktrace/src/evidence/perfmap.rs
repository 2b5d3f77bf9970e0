//! Names for JIT code from the process's perf map, `/tmp/perf-PID.map`:
//! one line per compiled function, `START SIZE name` (hex). Node writes it
//! with `--perf-basic-prof`, the JVM with a perf-map agent or `jcmd PID
//! Compiler.perfmap`, .NET with `DOTNET_PerfMapEnabled=1`.
//!
//! The file is written by the traced process, into a directory anyone can
//! write to, so it is hostile input:
//! - it is opened in the process's own root (`/proc/PID/root`), one path
//!   component at a time with `O_NOFOLLOW`: no symlink is followed, so it
//!   cannot point the reader at another file;
//! - it must be a regular file owned by the process's uid (or root, with a
//!   single link); a FIFO or device is refused (`O_NONBLOCK` keeps the open
//!   from waiting on one);
//! - at most `FILE_CAP` bytes are read, lines longer than `LINE_CAP` are
//!   skipped, names are cut at `NAME_CAP`; the names are escaped where they
//!   are written, like every symbol.
//!
//! Parsing happens in the sandboxed symbolizer children only (blazesym's
//! own perf-map reader, which follows links and maps the whole file, is
//! switched off there). The daemon only opens and checks the file, to say
//! in meta.json whether there was one.
use std::{
    collections::HashMap,
    ffi::CString,
    fs::File,
    io::Read,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::fs::MetadataExt,
};

use serde::Serialize;

/// Most bytes of a perf map read.
pub const FILE_CAP: u64 = 64 << 20;
/// Longest line parsed.
const LINE_CAP: usize = 4096;
/// Longest name kept.
const NAME_CAP: usize = 512;

/// The pid the process sees itself as (its own PID namespace names the
/// file), from the last field of `NSpid:` in /proc/PID/status, and its
/// effective and filesystem uids.
fn ids(pid: u32) -> Option<(u32, Vec<u32>)> {
    let path = std::path::PathBuf::from(format!("/proc/{pid}/status"));
    let (b, _) = crate::host::procfs::read_capped(&path, 16 * 1024).ok()?;
    let text = String::from_utf8_lossy(&b);
    let field = |key: &str| -> Vec<u32> {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().filter_map(|x| x.parse().ok()).collect())
            .unwrap_or_default()
    };
    let ns = field("NSpid:").last().copied().unwrap_or(pid);
    let uid = field("Uid:");
    // effective, filesystem
    let uids = [uid.get(1), uid.get(3)].into_iter().flatten().copied().collect();
    Some((ns, uids))
}

/// openat(dir, name) with O_NOFOLLOW: fails on a symlink.
fn open_at(dir: libc::c_int, name: &str, flags: libc::c_int) -> Result<OwnedFd, String> {
    let c = CString::new(name).map_err(|_| "bad name".to_string())?;
    // SAFETY: `c` is a valid NUL-terminated string; the returned fd is
    // owned by the OwnedFd below and by nothing else.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("{name}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a freshly opened descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The perf map of `pid`, opened without following links and checked:
/// (file, its size, its path as the process sees it).
pub fn open(pid: u32) -> Result<(File, u64, String), String> {
    let (ns, uids) = ids(pid).ok_or("process gone")?;
    let name = format!("perf-{ns}.map");
    let shown = format!("/tmp/{name}");
    let root = File::open(format!("/proc/{pid}/root")).map_err(|e| format!("/proc/{pid}/root: {e}"))?;
    let tmp = open_at(root.as_raw_fd(), "tmp", libc::O_PATH | libc::O_DIRECTORY)?;
    let fd = open_at(tmp.as_raw_fd(), &name, libc::O_RDONLY | libc::O_NONBLOCK)
        .map_err(|e| format!("/tmp/{e}"))?;
    let f = File::from(fd);
    let md = f.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !md.file_type().is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let owner_ok = uids.contains(&md.uid()) || (md.uid() == 0 && md.nlink() == 1);
    if !owner_ok {
        return Err(format!(
            "{shown} is owned by uid {}, not by the process (uid {uids:?}): not trusted",
            md.uid()
        ));
    }
    Ok((f, md.len(), shown))
}

/// One parsed line: start, size, name.
fn parse_line(l: &[u8]) -> Option<(u64, u64, &[u8])> {
    let hex = |s: &[u8]| {
        let s = std::str::from_utf8(s).ok()?;
        u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
    };
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let mut it = l.splitn(3, |&b| b == b' ');
    let (start, size, name) = (hex(it.next()?)?, hex(it.next()?)?, it.next()?);
    (size > 0 && !name.is_empty()).then_some((start, size, name))
}

fn cap_name(b: &[u8]) -> String {
    super::stackdata::cap(&String::from_utf8_lossy(b), NAME_CAP)
}

/// Address -> (name, offset in the function).
pub type Names = HashMap<u64, (String, u64)>;

/// What reading a perf map hit: bounds and refusals, for stacks.raw.json's
/// `errors` (the child cannot reach the daemon's limit counters).
#[derive(Debug, Default, PartialEq)]
pub struct Bounds {
    pub long_lines: usize,
    pub names_cut: usize,
    pub read_cut: bool,
}

/// Names for `addrs` from the perf map `text`. Where entries overlap, the
/// last one wins (a runtime reuses code space after it frees code, and
/// appends the new entry).
pub fn lookup_in(text: &[u8], addrs: &[u64]) -> (Names, Bounds) {
    let mut sorted: Vec<u64> = addrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut b = Bounds::default();
    let mut found: HashMap<u64, (usize, u64)> = HashMap::new();
    let mut lines: Vec<&[u8]> = Vec::new();
    for l in text.split(|&b| b == b'\n') {
        if l.len() > LINE_CAP {
            b.long_lines += 1;
            continue;
        }
        let Some((start, size, _)) = parse_line(l) else {
            continue;
        };
        let end = start.saturating_add(size);
        let i = sorted.partition_point(|&a| a < start);
        let hits: Vec<u64> = sorted[i..].iter().take_while(|&&a| a < end).copied().collect();
        if hits.is_empty() {
            continue;
        }
        lines.push(l);
        for a in hits {
            found.insert(a, (lines.len() - 1, a - start));
        }
    }
    let names = found
        .into_iter()
        .filter_map(|(a, (li, off))| {
            let (_, _, name) = parse_line(lines.get(li)?)?;
            b.names_cut += usize::from(name.len() > NAME_CAP);
            Some((a, (cap_name(name), off)))
        })
        .collect();
    (names, b)
}

/// Names for `addrs` from the perf map of `pid` (empty when it has none or
/// it is refused), and a note when it was refused or a bound was hit. For
/// the sandboxed children only: this parses the file.
pub fn lookup(pid: u32, addrs: &[u64]) -> (Names, Option<String>) {
    let (f, len, path) = match open(pid) {
        Ok(x) => x,
        Err(e) if e.contains("No such file") => return (Names::new(), None),
        Err(e) => return (Names::new(), Some(format!("perf map refused: {e}"))),
    };
    let mut text = Vec::new();
    if let Err(e) = f.take(FILE_CAP).read_to_end(&mut text) {
        return (Names::new(), Some(format!("perf map {path}: {e}")));
    }
    let (names, mut b) = lookup_in(&text, addrs);
    b.read_cut = len > FILE_CAP;
    let note = (b != Bounds::default()).then(|| {
        format!(
            "perf map {path}: {} lines over {LINE_CAP} bytes skipped, {} names cut at {NAME_CAP} bytes{}",
            b.long_lines,
            b.names_cut,
            if b.read_cut {
                format!(", only the first {FILE_CAP} bytes read")
            } else {
                String::new()
            }
        )
    });
    (names, note)
}

/// Fills the names still missing (`None`) of these addresses (outside any
/// mapped file: the caller says which) from the perf map; returns
/// `lookup`'s note.
pub fn fill_names<'a>(
    pid: u32,
    slots: impl Iterator<Item = (u64, &'a mut Option<String>)>,
) -> Option<String> {
    let slots: Vec<(u64, &mut Option<String>)> = slots.filter(|(_, n)| n.is_none()).collect();
    if slots.is_empty() {
        return None;
    }
    let addrs: Vec<u64> = slots.iter().map(|(a, _)| *a).collect();
    let (jit, note) = lookup(pid, &addrs);
    for (a, n) in slots {
        *n = jit.get(&a).map(|(name, _)| name.clone());
    }
    note
}

/// meta.json's account of the perf map (the daemon's side: opened and
/// checked, not parsed).
#[derive(Serialize, Debug, Default, PartialEq)]
pub struct PerfMapStatus {
    pub path: Option<String>,
    /// "found", "absent" or "refused".
    pub status: &'static str,
    pub bytes: Option<u64>,
    /// Only the first FILE_CAP bytes are read.
    pub truncated: bool,
    pub error: Option<String>,
}

pub fn status(pid: u32) -> PerfMapStatus {
    match open(pid) {
        Ok((_, len, path)) => PerfMapStatus {
            path: Some(crate::fmt::term(&path).into_owned()),
            status: "found",
            bytes: Some(len),
            truncated: len > FILE_CAP,
            error: None,
        },
        Err(e) if e.contains("No such file") => PerfMapStatus {
            status: "absent",
            ..Default::default()
        },
        Err(e) => PerfMapStatus {
            status: "refused",
            error: Some(crate::fmt::term(&e).into_owned()),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_strictly_and_the_last_entry_wins() {
        let text = b"1000 100 JS:*leakBuffers /srv/a.js:3:20\n\
            zz 10 bad\n\
            2000 0 empty\n\
            0x3000 10 Builtin:Foo\r\n\
            1000 10 JS:~reused\n\
            4000 10\n";
        let (m, b) = lookup_in(text, &[0x1005, 0x1050, 0x3004, 0x2000, 0x4000, 0x9999]);
        assert_eq!(b, Bounds::default());
        assert_eq!(m[&0x1005], ("JS:~reused".to_string(), 5));
        assert_eq!(m[&0x1050], ("JS:*leakBuffers /srv/a.js:3:20".to_string(), 0x50));
        assert_eq!(m[&0x3004].0, "Builtin:Foo");
        assert_eq!(m.len(), 3, "{m:?}");
    }

    #[test]
    fn long_lines_are_skipped_and_names_capped() {
        let mut text = format!("1000 10 {}\n", "a".repeat(LINE_CAP)).into_bytes();
        text.extend(format!("2000 10 {}\n", "b".repeat(NAME_CAP + 100)).as_bytes());
        text.extend(b"3000 10 evil\x1b]52;c;x\x07\xff\n");
        let (m, b) = lookup_in(&text, &[0x1000, 0x2000, 0x3000]);
        assert!(!m.contains_key(&0x1000));
        assert_eq!((b.long_lines, b.names_cut), (1, 1));
        assert!(m[&0x2000].0.len() <= NAME_CAP + 3);
        // Kept as bytes here (lossy UTF-8); escaped where written.
        assert!(m[&0x3000].0.starts_with("evil"));
    }

    #[test]
    fn a_symlinked_or_foreign_perf_map_is_refused() {
        let me = std::process::id();
        let path = format!("/tmp/perf-{me}.map");
        let _ = std::fs::remove_file(&path);
        assert_eq!(status(me).status, "absent");
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        let st = status(me);
        let _ = std::fs::remove_file(&path);
        assert_eq!(st.status, "refused", "{st:?}");
        std::fs::write(&path, "1000 10 f\n").unwrap();
        let st = status(me);
        let (names, note) = lookup(me, &[0x1001]);
        assert_eq!(note, None);
        let _ = std::fs::remove_file(&path);
        assert_eq!(st.status, "found", "{st:?}");
        assert_eq!(names[&0x1001].0, "f");
        // Owned by someone else (root can make it so): refused.
        std::fs::write(&path, "1000 10 f\n").unwrap();
        if std::os::unix::fs::chown(&path, Some(54321), None).is_ok() {
            let st = status(me);
            assert_eq!(st.status, "refused", "{st:?}");
            let (names, note) = lookup(me, &[0x1001]);
            assert!(names.is_empty());
            assert!(note.unwrap_or_default().contains("refused"));
        }
        let _ = std::fs::remove_file(&path);
    }
}
