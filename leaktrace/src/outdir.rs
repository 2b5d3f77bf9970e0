//! leaktrace's output directories (`--dir`, its `evidence/` and each
//! bundle), held as open directory handles. leaktrace runs as root; a path
//! can be swapped under it (a symlink put where a directory was, in a
//! parent that another user can write), so after the one check at open
//! every file is created, renamed and deleted relative to the handle
//! (`openat`, `renameat`, `unlinkat`) and never through a path again.
//!
//! A directory is refused unless it is a real directory (opened with
//! O_DIRECTORY|O_NOFOLLOW), owned by leaktrace's user (root) and not
//! writable by group or others: another user who could write in it could
//! plant names there for root to follow or delete.
use std::{
    ffi::{CStr, CString, OsStr, OsString},
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::ffi::{OsStrExt, OsStringExt},
    },
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

pub struct OutDir {
    fd: OwnedFd,
    path: PathBuf,
}

fn cstr(name: &str) -> io::Result<CString> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a plain name: {name:?}"),
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Is the directory behind `fd` one leaktrace may write in? An error
/// names the directory and says how to fix it.
fn vet(fd: RawFd, path: &Path) -> Result<()> {
    // SAFETY: an all-zero stat is a valid buffer for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is an open descriptor; st is a valid buffer.
    check(unsafe { libc::fstat(fd, &mut st) }).with_context(|| format!("stat {}", path.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if st.st_uid != me {
        bail!(
            "{} is owned by uid {}, not by leaktrace's user (uid {me}); refusing to write there \
             (another user could plant files for it to follow or delete)",
            path.display(),
            st.st_uid
        );
    }
    if st.st_mode & 0o022 != 0 {
        bail!(
            "{} is writable by group or others (mode {:o}); refusing to write there \
             (fix: chmod go-w {})",
            path.display(),
            st.st_mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

fn open_dir_at(dirfd: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: a valid NUL-terminated name; the flags never follow a symlink.
    let fd = check(unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn symlink_refused(path: &Path, e: io::Error) -> anyhow::Error {
    if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
        anyhow::anyhow!(
            "{} is a symlink or not a directory; refusing to write through it",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("opening {}", path.display()))
    }
}

impl OutDir {
    /// Opens `path`, creating it (0700, and its missing parents) if it does
    /// not exist, and vets it. The last component must not be a symlink.
    pub fn open(path: &Path) -> Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        }
        let c = CString::new(path.as_os_str().as_bytes()).context("NUL in a path")?;
        let fd = open_dir_at(libc::AT_FDCWD, &c).map_err(|e| symlink_refused(path, e))?;
        vet(fd.as_raw_fd(), path)?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// A second handle on the same directory (for another thread).
    pub fn try_clone(&self) -> io::Result<OutDir> {
        Ok(OutDir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory was removed (or renamed away and removed) since it
    /// was opened: writes in it would vanish.
    pub fn is_deleted(&self) -> bool {
        // SAFETY: as in vet.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: an open fd and a valid buffer.
        unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) != 0 || st.st_nlink == 0 }
    }

    /// `name` inside, created 0700 if missing, vetted like the root.
    pub fn subdir(&self, name: &str) -> Result<OutDir> {
        let c = cstr(name)?;
        // SAFETY: a valid name relative to our directory handle.
        let r = unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e).with_context(|| format!("creating {}", self.path.join(name).display()));
            }
        }
        self.open_subdir(name)
    }

    /// `name` inside if it exists, vetted.
    pub fn open_subdir(&self, name: &str) -> Result<OutDir> {
        let path = self.path.join(name);
        let c = cstr(name)?;
        let fd = open_dir_at(self.fd.as_raw_fd(), &c).map_err(|e| symlink_refused(&path, e))?;
        vet(fd.as_raw_fd(), &path)?;
        Ok(OutDir { fd, path })
    }

    /// Creates a new directory `name` (0700); fails if it exists.
    pub fn mkdir_new(&self, name: &str) -> Result<OutDir> {
        let c = cstr(name)?;
        // SAFETY: as in subdir.
        check(unsafe { libc::mkdirat(self.fd.as_raw_fd(), c.as_ptr(), 0o700) })
            .with_context(|| format!("creating {}", self.path.join(name).display()))?;
        self.open_subdir(name)
    }

    /// Opens a file for writing, 0600, never through a symlink. `append`
    /// keeps what is there; otherwise the file must be new.
    pub fn create(&self, name: &str, append: bool) -> io::Result<File> {
        let c = cstr(name)?;
        let mode = if append {
            libc::O_APPEND | libc::O_CREAT
        } else {
            libc::O_CREAT | libc::O_EXCL
        };
        // SAFETY: a valid name relative to our handle; O_NOFOLLOW.
        let fd = check(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | mode | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        })?;
        // SAFETY: just opened, owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Opens an existing file for reading and writing (repairs), never
    /// through a symlink.
    pub fn open_rw(&self, name: &str) -> io::Result<File> {
        let c = cstr(name)?;
        // SAFETY: as in create.
        let fd = check(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: just opened, owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Writes `data` as `name`, whole or not at all: a new temp file, then
    /// a rename.
    pub fn write_atomic(&self, name: &str, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let tmp = format!(".{name}.tmp");
        let _ = self.unlink(&tmp);
        let res = (|| {
            let mut f = self.create(&tmp, false)?;
            f.write_all(data)?;
            f.sync_all()?;
            self.rename(&tmp, self, name)
        })();
        if res.is_err() {
            let _ = self.unlink(&tmp);
        }
        res
    }

    pub fn exists(&self, name: &str) -> bool {
        let Ok(c) = cstr(name) else { return false };
        // SAFETY: as in vet.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid name and buffer; the link itself is looked at.
        unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            ) == 0
        }
    }

    pub fn rename(&self, from: &str, to_dir: &OutDir, to: &str) -> io::Result<()> {
        let (a, b) = (cstr(from)?, cstr(to)?);
        // SAFETY: valid names relative to two directory handles.
        check(unsafe { libc::renameat(self.fd.as_raw_fd(), a.as_ptr(), to_dir.fd.as_raw_fd(), b.as_ptr()) })?;
        Ok(())
    }

    pub fn unlink(&self, name: &str) -> io::Result<()> {
        let c = cstr(name)?;
        // SAFETY: a valid name relative to our handle.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) })?;
        Ok(())
    }

    /// The names in the directory (not . and ..).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        // fdopendir takes the descriptor it is given: give it a duplicate.
        // SAFETY: dup of an open fd.
        let dup = check(unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
        // SAFETY: dup is an open directory fd, now owned by the DIR.
        let dir = unsafe { libc::fdopendir(dup) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so dup is still ours to close.
            unsafe { libc::close(dup) };
            return Err(e);
        }
        // SAFETY: rewind a freshly opened DIR (the dup shares the offset).
        unsafe { libc::rewinddir(dir) };
        let mut out = Vec::new();
        loop {
            // SAFETY: dir is a valid DIR until closedir below.
            let ent = unsafe { libc::readdir(dir) };
            if ent.is_null() {
                break;
            }
            // SAFETY: d_name is a NUL-terminated name inside the entry.
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                out.push(OsString::from_vec(name.to_vec()));
            }
        }
        // SAFETY: closes the DIR and the dup it owns.
        unsafe { libc::closedir(dir) };
        Ok(out)
    }

    /// Total size of the regular files directly inside `name` (a bundle).
    pub fn tree_size(&self, name: &str) -> u64 {
        let Ok(d) = self.open_subdir_unvetted(name) else {
            return 0;
        };
        d.names()
            .unwrap_or_default()
            .iter()
            .filter_map(|n| d.file_size(n))
            .sum()
    }

    fn file_size(&self, name: &OsStr) -> Option<u64> {
        let c = CString::new(name.as_bytes()).ok()?;
        // SAFETY: as in exists.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a valid name and buffer.
        let r = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        (r == 0).then_some(st.st_size as u64)
    }

    fn open_subdir_unvetted(&self, name: &str) -> io::Result<OutDir> {
        let c = cstr(name)?;
        Ok(OutDir {
            fd: open_dir_at(self.fd.as_raw_fd(), &c)?,
            path: self.path.join(name),
        })
    }

    /// Removes the directory `name` and the files in it (one level: a
    /// bundle holds no directories). Nothing is followed: a symlink inside
    /// is removed as a name, and `name` itself must be a real directory.
    pub fn remove_bundle(&self, name: &str) -> io::Result<()> {
        let d = self.open_subdir_unvetted(name)?;
        for n in d.names()? {
            let c = CString::new(n.into_vec()).map_err(|_| io::Error::other("NUL"))?;
            // SAFETY: a valid name relative to the bundle's handle.
            let r = unsafe { libc::unlinkat(d.fd.as_raw_fd(), c.as_ptr(), 0) };
            if r < 0 {
                // A directory inside (not ours): leave it, and the rmdir
                // below fails, which is reported.
                continue;
            }
        }
        let c = cstr(name)?;
        // SAFETY: a valid name relative to our handle.
        check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("lt-outdir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn creates_private_refuses_symlinks_and_shared_dirs() {
        let root = tmp("a");
        let d = OutDir::open(&root).unwrap();
        assert_eq!(
            std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let ev = d.subdir("evidence").unwrap();
        ev.write_atomic("x", b"hello").unwrap();
        assert_eq!(std::fs::read(root.join("evidence/x")).unwrap(), b"hello");
        assert_eq!(ev.names().unwrap(), vec![OsString::from("x")]);
        // A symlink in place of a directory is refused, at open and inside.
        let link = tmp("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let e = OutDir::open(&link).err().unwrap().to_string();
        assert!(e.contains("symlink"), "{e}");
        std::os::unix::fs::symlink(&root, root.join("evil")).unwrap();
        assert!(d.subdir("evil").is_err());
        assert!(
            d.create("evil", true).is_err(),
            "a symlinked file is not followed"
        );
        // World-writable: refused.
        let shared = tmp("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = OutDir::open(&shared).err().unwrap().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        // A bundle is removed without following what is inside it.
        let b = ev.mkdir_new("b1").unwrap();
        b.write_atomic("f", b"1").unwrap();
        std::os::unix::fs::symlink(&root, root.join("evidence/b1/link")).unwrap();
        assert_eq!(ev.tree_size("b1"), 1 + root.to_string_lossy().len() as u64);
        ev.remove_bundle("b1").unwrap();
        assert!(!ev.exists("b1"));
        assert!(
            root.join("evidence/x").exists(),
            "the symlink's target is untouched"
        );
        assert!(cstr("../x").is_err() && cstr("..").is_err() && cstr("").is_err());
        for p in [&root, &shared] {
            let _ = std::fs::remove_dir_all(p);
        }
        let _ = std::fs::remove_file(&link);
    }

    #[test]
    fn notices_a_deleted_directory() {
        let root = tmp("del");
        let d = OutDir::open(&root).unwrap();
        assert!(!d.is_deleted());
        std::fs::remove_dir(&root).unwrap();
        assert!(d.is_deleted());
    }
}
