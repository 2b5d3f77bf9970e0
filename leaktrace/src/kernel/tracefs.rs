//! tracefs: where classic tracepoints and their record formats live.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

fn populated(p: &Path) -> bool {
    p.join("events").is_dir()
}

/// Finds tracefs, mounting it at /sys/kernel/tracing if nothing is mounted
/// (many minimal hosts do not mount it; the kernel still provides it).
/// Returns the path and whether leaktrace mounted it.
pub fn ensure_mounted() -> Result<(PathBuf, bool)> {
    for c in CANDIDATES {
        if populated(Path::new(c)) {
            return Ok((PathBuf::from(c), false));
        }
    }
    let target = Path::new(CANDIDATES[0]);
    if !target.is_dir() {
        bail!(
            "tracefs is not mounted and {} does not exist (CONFIG_TRACING off?)",
            target.display()
        );
    }
    let src = c"tracefs";
    let dst = c"/sys/kernel/tracing";
    // SAFETY: all pointers are valid NUL-terminated strings; data is NULL.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        bail!(
            "tracefs is not mounted and mounting it at {} failed: {e}",
            target.display()
        );
    }
    if !populated(target) {
        bail!(
            "mounted tracefs at {} but it has no events/ directory",
            target.display()
        );
    }
    Ok((target.to_path_buf(), true))
}

/// A field of a tracepoint record, from `events/<group>/<name>/format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u64,
    pub size: u64,
}

/// Parses one field out of a tracepoint format file.
pub fn field(format: &str, name: &str) -> Option<Field> {
    for line in format.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next()?;
        // The name is the last identifier of the declaration, before any [N].
        let ident = decl
            .rsplit(|c: char| c.is_whitespace())
            .next()?
            .split('[')
            .next()?;
        if ident != name {
            continue;
        }
        let mut offset = None;
        let mut size = None;
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        return Some(Field {
            offset: offset?,
            size: size?,
        });
    }
    None
}

pub fn read_format(root: &Path, group: &str, name: &str) -> Result<String> {
    let p = root.join("events").join(group).join(name).join("format");
    std::fs::read_to_string(&p)
        .with_context(|| format!("tracepoint {group}:{name} not available ({})", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from Linux 6.18 (/sys/kernel/tracing/events/.../format).
    const RSS_STAT: &str = "name: rss_stat
ID: 476
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned int mm_id;\toffset:8;\tsize:4;\tsigned:0;
\tfield:unsigned int curr;\toffset:12;\tsize:4;\tsigned:0;
\tfield:int member;\toffset:16;\tsize:4;\tsigned:1;
\tfield:long size;\toffset:24;\tsize:8;\tsigned:1;
";
    const EXIT: &str = "\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;
";

    #[test]
    fn parses_fields() {
        assert_eq!(field(RSS_STAT, "mm_id"), Some(Field { offset: 8, size: 4 }));
        assert_eq!(field(RSS_STAT, "size"), Some(Field { offset: 24, size: 8 }));
        assert_eq!(field(RSS_STAT, "member"), Some(Field { offset: 16, size: 4 }));
        assert_eq!(field(RSS_STAT, "nope"), None);
        assert_eq!(field(EXIT, "comm"), Some(Field { offset: 8, size: 16 }));
        assert_eq!(field(EXIT, "group_dead"), Some(Field { offset: 32, size: 1 }));
    }
}
