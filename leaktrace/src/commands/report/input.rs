//! The files `report` reads, none of which it trusts: events.jsonl and
//! its rotations (regular files only, never through a symlink, read in
//! capped lines) and the files of evidence bundles (only inside the
//! recording).
use super::*;

use std::os::unix::fs::OpenOptionsExt;

/// Opens a file for reading without following a symlink at its name and
/// without blocking (a FIFO must not hang the report), and refuses
/// anything that is not a regular file (a device such as /dev/zero would
/// never end).
pub(super) fn open_regular(path: &Path) -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => anyhow::anyhow!("refusing {}: it is a symlink", path.display()),
            _ => anyhow::Error::new(e).context(format!("reading {}", path.display())),
        })?;
    let md = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !md.is_file() {
        bail!("refusing {}: not a regular file", path.display());
    }
    Ok(f)
}

/// Most bytes read out of one compressed rotation: a gzip bomb would
/// otherwise keep `report` busy for hours. Far above any real rotation
/// (`record --max-file-bytes` defaults to 64 MiB).
pub(super) const GZ_OUT_CAP: u64 = 16 << 30;

/// One file of a recording's event log.
pub(super) struct EventFile {
    /// 0 for events.jsonl, N for its rotation N (older as N grows).
    pub n: usize,
    pub path: PathBuf,
    pub gzip: bool,
}

/// events.jsonl and its rotations (plain or .gz), oldest first. When a
/// rotation is there both plain and compressed (a crash between the
/// compressed file's rename and the plain one's unlink), the plain one is
/// read: it is whole by construction.
pub(super) fn event_files(dir: &Path) -> Result<Vec<EventFile>> {
    let mut files: Vec<EventFile> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let (n, gzip) = crate::sinks::rotation::parse(name.to_str()?)?;
            Some(EventFile { n, path: e.path(), gzip })
        })
        .collect();
    files.sort_by_key(|f| (std::cmp::Reverse(f.n), f.gzip));
    files.dedup_by_key(|f| f.n);
    Ok(files)
}

/// Opens one event file for reading lines: as `open_regular`, and through
/// a gzip decoder, capped at GZ_OUT_CAP bytes, for a .gz rotation.
pub(super) fn open_events(f: &EventFile) -> Result<Box<dyn BufRead>> {
    let file = open_regular(&f.path)?;
    Ok(if f.gzip {
        let gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 16, file));
        Box::new(std::io::BufReader::with_capacity(1 << 16, gz.take(GZ_OUT_CAP)))
    } else {
        Box::new(std::io::BufReader::with_capacity(1 << 16, file))
    })
}

/// The next line of `rd` into `line` (newline included): Some(true) for a
/// line of at most `cap` bytes, Some(false) for a longer one, whose bytes
/// are read and thrown away as they come (never held), None at the end.
pub(super) fn next_line(
    rd: &mut impl BufRead,
    line: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<Option<bool>> {
    line.clear();
    let mut any = false;
    let mut too_long = false;
    loop {
        let buf = match rd.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(any.then_some(!too_long));
        }
        any = true;
        let (n, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if !too_long {
            if line.len() + n > cap {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(&buf[..n]);
            }
        }
        rd.consume(n);
        if done {
            return Ok(Some(!too_long));
        }
    }
}

/// A bundle directory held open: its files are read through
/// /proc/self/fd/N/NAME, so they come from the very directory that was
/// checked to be inside the recording, even if a component of its path
/// is swapped for a symlink after the check.
pub(super) struct BundleDir {
    _fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl std::ops::Deref for BundleDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// Opens the directory `c` (no symlink at its last component) and returns
/// it if the directory actually opened is inside `root`.
fn open_bundle(c: &Path, root: &Path) -> Option<BundleDir> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(c)
        .ok()?;
    let fd: std::os::fd::OwnedFd = f.into();
    let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let real = std::fs::read_link(&path).ok()?;
    (real.starts_with(root) && real != root).then_some(BundleDir { _fd: fd, path })
}

/// Where an event's bundle directory is.
pub(super) enum BundleAt {
    /// Inside the recording, held open (see BundleDir).
    Inside(BundleDir),
    /// It exists, but resolves outside the recording: not read.
    Outside,
    Missing,
}

/// Where a bundle is: its path as recorded, or, when the recording was
/// moved or copied, the directory of the same name under DIR/evidence.
/// Only a directory that resolves inside the recording directory is
/// used: an absolute `dir` or a symlinked bundle that leads elsewhere is
/// not read.
pub(super) fn bundle_path(rec_dir: &Path, d: &str) -> BundleAt {
    let Ok(root) = rec_dir.canonicalize() else {
        return BundleAt::Missing;
    };
    let p = Path::new(d);
    let mut tries = vec![rec_dir.join(p)];
    if let Some(name) = p.file_name() {
        tries.push(rec_dir.join("evidence").join(name));
    }
    let mut outside = false;
    for t in tries {
        let Ok(c) = t.canonicalize() else { continue };
        if !c.is_dir() {
            continue;
        }
        if c.starts_with(&root) && c != root {
            // Checked again on the directory actually opened: a path
            // component swapped since canonicalize() is caught here.
            match open_bundle(&c, &root) {
                Some(b) => return BundleAt::Inside(b),
                None => {
                    outside = true;
                    continue;
                }
            }
        }
        outside = true;
    }
    if outside {
        BundleAt::Outside
    } else {
        BundleAt::Missing
    }
}

/// A regular file of a bundle, at most `cap` bytes of it, decoded lossily.
/// Opened without following a symlink and without blocking (a FIFO
/// planted in its place must not hang the report).
pub(super) fn read_bundle_file(bundle: &Path, name: &str, cap: u64) -> Option<String> {
    let f = open_regular(&bundle.join(name)).ok()?;
    let mut buf = Vec::new();
    f.take(cap).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The first stack of a bundle's stacks.txt (its header line and frames):
/// the first Python stack for a CPython process, else the first native one.
pub(super) fn top_stack(bundle: &Path) -> Option<Vec<String>> {
    let text = read_bundle_file(bundle, "stacks.txt", STACKS_CAP)?;
    let first = if text.contains("\n== Python stack 1:") {
        "== Python stack 1"
    } else {
        "== stack 1"
    };
    let mut lines = text.lines().skip_while(|l| !l.starts_with(first));
    let head = lines.next()?.to_string();
    let mut v = vec![head];
    v.extend(
        lines
            .take_while(|l| !l.is_empty() && !l.starts_with("=="))
            .take(8)
            .map(|l| l.trim().to_string()),
    );
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 21: between bundle_path's check and the reads, a component of
    /// the bundle's path can be swapped for a symlink out of the recording.
    /// The directory actually opened is checked, and reads go through it.
    #[test]
    fn a_bundle_path_swapped_after_the_check_is_not_read() {
        let base = std::env::temp_dir().join(format!("lt-bundle-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (rec, outside) = (base.join("rec"), base.join("outside"));
        std::fs::create_dir_all(rec.join("evidence/b1")).unwrap();
        std::fs::write(rec.join("evidence/b1/stacks.txt"), "inside").unwrap();
        std::fs::create_dir_all(outside.join("b1")).unwrap();
        std::fs::write(outside.join("b1/stacks.txt"), "SECRET").unwrap();
        let root = rec.canonicalize().unwrap();

        let BundleAt::Inside(b) = bundle_path(&rec, "evidence/b1") else { panic!("not found") };
        assert_eq!(read_bundle_file(&b, "stacks.txt", 100).as_deref(), Some("inside"));
        // Swapped after the check: the open directory still reads inside.
        std::fs::rename(rec.join("evidence"), base.join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, rec.join("evidence")).unwrap();
        assert_eq!(read_bundle_file(&b, "stacks.txt", 100).as_deref(), Some("inside"));
        // Swapped between canonicalize() and the open: refused.
        assert!(open_bundle(&root.join("evidence/b1"), &root).is_none());
        assert!(matches!(bundle_path(&rec, "evidence/b1"), BundleAt::Outside));
        let _ = std::fs::remove_dir_all(&base);
    }
}
