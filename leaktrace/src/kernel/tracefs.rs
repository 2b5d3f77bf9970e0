//! tracefs: where classic tracepoints and their record formats live.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Whether `events/` can be seen: Ok(true) populated, Ok(false) absent,
/// Err for EACCES (mounted, but this process may not search it).
fn populated(p: &Path) -> std::io::Result<bool> {
    match std::fs::metadata(p.join("events")) {
        Ok(m) => Ok(m.is_dir()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(e),
        Err(_) => Ok(false),
    }
}

/// Why tracefs cannot be used by this process, naming the path and what
/// to grant (pure: unit-tested).
fn unreadable_reason(path: &Path, mode: u32, owner: u32, uid: u32) -> String {
    format!(
        "tracefs is mounted at {} (mode {:04o}, owner uid {owner}) but uid {uid} may not read it: \
         give leaktrace CAP_DAC_READ_SEARCH (AmbientCapabilities= in the unit), or run it as root",
        path.display(),
        mode & 0o7777
    )
}

/// Finds tracefs, mounting it at /sys/kernel/tracing if nothing is mounted
/// (many minimal hosts do not mount it; the kernel still provides it).
/// Returns the path and whether leaktrace mounted it. The error says which
/// path and which capability are missing; the loader goes on without the
/// hooks that need tracefs (classic tracepoints, the kprobe check).
pub fn ensure_mounted() -> Result<(PathBuf, bool), String> {
    use std::os::unix::fs::MetadataExt as _;
    for c in CANDIDATES {
        let p = Path::new(c);
        match populated(p) {
            Ok(true) => return Ok((p.to_path_buf(), false)),
            Ok(false) => {}
            Err(_) => {
                let m = std::fs::metadata(p).ok();
                // SAFETY: geteuid has no preconditions.
                let uid = unsafe { libc::geteuid() };
                return Err(unreadable_reason(
                    p,
                    m.as_ref().map_or(0, |m| m.mode()),
                    m.as_ref().map_or(0, |m| m.uid()),
                    uid,
                ));
            }
        }
    }
    let target = Path::new(CANDIDATES[0]);
    if !target.is_dir() {
        return Err(format!(
            "tracefs is not mounted and {} does not exist (CONFIG_TRACING off?)",
            target.display()
        ));
    }
    let src = c"tracefs";
    let dst = c"/sys/kernel/tracing";
    // SAFETY: all pointers are valid NUL-terminated strings; data is NULL.
    let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            " (mounting needs CAP_SYS_ADMIN: mount it once at boot instead, \
             `mount -t tracefs tracefs /sys/kernel/tracing` or an fstab line)"
        } else {
            ""
        };
        return Err(format!(
            "tracefs is not mounted and mounting it at {} failed: {e}{hint}",
            target.display()
        ));
    }
    if !matches!(populated(target), Ok(true)) {
        return Err(format!(
            "mounted tracefs at {} but it has no events/ directory",
            target.display()
        ));
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
    fn unreadable_names_path_mode_and_capability() {
        let r = unreadable_reason(Path::new("/sys/kernel/tracing"), 0o40700, 0, 65534);
        assert!(r.contains("/sys/kernel/tracing"), "{r}");
        assert!(r.contains("mode 0700"), "{r}");
        assert!(r.contains("uid 65534"), "{r}");
        assert!(r.contains("CAP_DAC_READ_SEARCH"), "{r}");
    }

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
