//! Writing the HTML page: never through a symlink, never readable by
//! others while or after it is written. The page goes to a new file in
//! the same directory (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 or 0640),
//! which is then renamed over OUT.
use super::*;

use std::{io::Write as _, os::unix::fs::OpenOptionsExt};

/// Writes `text` to `out` as described above. `group_readable` gives the
/// page mode 0640 instead of 0600.
pub(super) fn write_private(out: &Path, text: &str, group_readable: bool) -> Result<()> {
    match std::fs::symlink_metadata(out) {
        Ok(m) if m.file_type().is_symlink() => {
            bail!("refusing to write {}: it is a symlink", out.display())
        }
        Ok(m) if !m.is_file() => bail!("refusing to write {}: not a regular file", out.display()),
        _ => {}
    }
    let name = out
        .file_name()
        .with_context(|| format!("{} names no file", out.display()))?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mode = if group_readable { 0o640 } else { 0o600 };
    let (tmp, mut f) = create_temp(dir, &name.to_string_lossy(), mode)?;
    let res = (|| -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        // The mode exactly, whatever the umask.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, out)?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("writing {}", out.display())));
    }
    Ok(())
}

/// A new file `.NAME.tmp-PID-N` in `dir`, made by this call (O_EXCL: a
/// name planted in advance, symlink or not, is skipped).
fn create_temp(dir: &Path, name: &str, mode: u32) -> Result<(PathBuf, std::fs::File)> {
    let mut last = None;
    for n in 0..100u32 {
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("creating {}", tmp.display()))),
        }
    }
    Err(anyhow::anyhow!(
        "no free temporary name next to {name} in {}: {last:?}",
        dir.display()
    ))
}

/// Writes the text report to stdout. A reader that went away (`report |
/// head -1`) is not an error: the rest is not wanted, and `report` exits
/// 0 quietly instead of panicking in `print!`.
pub(super) fn to_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the report to stdout"),
    }
}
