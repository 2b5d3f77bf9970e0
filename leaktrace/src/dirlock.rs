//! One recorder per output directory: `record` holds an exclusive flock on
//! DIR/leaktrace.lock for as long as it runs. Two recorders on one
//! directory would interleave and rotate each other's events.jsonl, and
//! each one's evidence budget would delete the other's bundles; the second
//! one is refused instead (exit 1). The kernel drops the lock when the
//! holder exits, also by kill -9, so a stale file never blocks a restart.
use std::{
    io::{Read, Write},
    os::fd::AsRawFd,
    path::Path,
};

use anyhow::{bail, Context, Result};

use crate::outdir::OutDir;

pub const NAME: &str = "leaktrace.lock";

/// Held for the recorder's lifetime; dropping it releases the lock.
pub struct DirLock(#[allow(dead_code)] std::fs::File);

impl DirLock {
    pub fn take(dir: &Path) -> Result<Self> {
        let d = OutDir::open(dir)?;
        let mut f = d
            .create(NAME, true)
            .with_context(|| format!("opening {}", dir.join(NAME).display()))?;
        // SAFETY: flock on a file we just opened.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(e).with_context(|| format!("locking {}", dir.join(NAME).display()));
            }
            let mut holder = String::new();
            if let Ok(r) = d.open_rw(NAME) {
                let _ = r.take(32).read_to_string(&mut holder);
            }
            let holder = holder.trim();
            let who = if !holder.is_empty() && holder.bytes().all(|b| b.is_ascii_digit()) {
                format!(" (pid {holder})")
            } else {
                String::new()
            };
            bail!(
                "another leaktrace record{who} is already recording into {}: one recorder per directory \
                 (it holds {}); stop it or use another --dir",
                dir.display(),
                dir.join(NAME).display()
            );
        }
        f.set_len(0)?;
        write!(f, "{}", std::process::id())?;
        Ok(Self(f))
    }
}
