//! `leaktrace record`: the event log. Lines go to DIR/events.jsonl, which
//! rotates by size (events.jsonl.1, .2, ...) and keeps at most N files. A
//! write error (full disk, removed directory) is reported on stderr, the
//! line is counted as dropped, and the next write tries again: the tracer
//! never stops for it.
use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::Result;

use crate::evidence::ensure_dir;

pub struct EventLog {
    dir: PathBuf,
    max_file_bytes: u64,
    max_files: usize,
    file: Option<fs::File>,
    size: u64,
    pub dropped_lines: u64,
    last_error: Option<String>,
}

impl EventLog {
    pub fn open(dir: &Path, max_file_bytes: u64, max_files: usize) -> Result<Self> {
        ensure_dir(dir)?;
        let mut log = Self {
            dir: dir.to_path_buf(),
            max_file_bytes,
            max_files: max_files.max(1),
            file: None,
            size: 0,
            dropped_lines: 0,
            last_error: None,
        };
        log.reopen()?;
        Ok(log)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path())?;
        self.size = f.metadata()?.len();
        self.file = Some(f);
        Ok(())
    }

    /// events.jsonl -> .1 -> .2 ...; the oldest beyond max_files goes.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let name = |i: usize| {
            if i == 0 {
                self.path()
            } else {
                self.dir.join(format!("events.jsonl.{i}"))
            }
        };
        let _ = fs::remove_file(name(self.max_files - 1));
        for i in (0..self.max_files - 1).rev() {
            let _ = fs::rename(name(i), name(i + 1));
        }
        self.reopen()
    }

    /// Appends one line. Never fails: errors are reported and counted.
    pub fn write_line(&mut self, line: &str) {
        let res = (|| -> std::io::Result<()> {
            // Reopen if the file was removed or rotated away underneath us
            // (an unlinked file would swallow the lines).
            if self.file.is_none() || !self.path().exists() {
                self.reopen()?;
            }
            if self.size > 0 && self.size + line.len() as u64 + 1 > self.max_file_bytes {
                self.rotate()?;
            }
            let Some(f) = self.file.as_mut() else {
                return Err(std::io::Error::other("event log not open"));
            };
            // One write per line; on failure cut the file back so that a
            // partial line never glues onto the next one.
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            if let Err(e) = f.write_all(&buf) {
                let _ = f.set_len(self.size);
                return Err(e);
            }
            self.size += buf.len() as u64;
            Ok(())
        })();
        match res {
            Ok(()) => {
                if let Some(e) = self.last_error.take() {
                    eprintln!(
                        "leaktrace record: writing {} works again (after: {e})",
                        self.path().display()
                    );
                }
            }
            Err(e) => {
                self.dropped_lines += 1;
                self.file = None;
                let msg = e.to_string();
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    eprintln!(
                        "leaktrace record: cannot write {}: {msg}; still tracing, {} line(s) dropped so far",
                        self.path().display(),
                        self.dropped_lines
                    );
                    self.last_error = Some(msg);
                }
            }
        }
    }

    pub fn flush(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.sync_data();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_caps_the_files() {
        let dir = std::env::temp_dir().join(format!("lt-log-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut log = EventLog::open(&dir, 1000, 3).unwrap();
        let line = "x".repeat(99);
        for _ in 0..100 {
            log.write_line(&line);
        }
        let files: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(files.len(), 3, "{files:?}");
        let total: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
        assert!(total <= 3 * 1000, "{total}");
        assert_eq!(log.dropped_lines, 0);
        // The directory disappears: lines are dropped and counted, then
        // writing resumes when it is back.
        fs::remove_dir_all(&dir).unwrap();
        log.write_line("lost");
        assert_eq!(log.dropped_lines, 1);
        fs::create_dir_all(&dir).unwrap();
        log.write_line("back");
        assert_eq!(fs::read_to_string(dir.join("events.jsonl")).unwrap(), "back\n");
        let _ = fs::remove_dir_all(&dir);
    }
}
