//! The names of events.jsonl's rotations, and their compression.
//!
//! A rotation first renames events.jsonl to events.jsonl.1, as before. A
//! background thread then writes events.jsonl.N.gz beside each plain
//! rotation (a temp file, synced, renamed), and only then unlinks the
//! plain one: a crash at any point leaves a whole copy of every line, and
//! the next start compresses what is left. An OOM storm's log compresses
//! about 17× (issue 22), so the same `--max-files` keeps far more history.
//! gzip (flate2 with the pure-Rust zlib-rs backend): no C library, so the
//! static and aarch64 builds need nothing more, and `zcat` reads the files.
use std::{
    io,
    thread::JoinHandle,
};

use crate::outdir::OutDir;

pub const NAME: &str = "events.jsonl";

/// events.jsonl (i = 0) or its plain rotation events.jsonl.i.
pub fn plain(i: usize) -> String {
    if i == 0 {
        NAME.to_string()
    } else {
        format!("{NAME}.{i}")
    }
}

/// The compressed rotation events.jsonl.i.gz.
pub fn gz(i: usize) -> String {
    format!("{NAME}.{i}.gz")
}

fn tmp(i: usize) -> String {
    format!(".{NAME}.{i}.gz.tmp")
}

/// Shifts the rotations up by one (the oldest, number `max - 1`, goes)
/// and renames events.jsonl to events.jsonl.1. Returns whether a file was
/// deleted to stay within `max` files.
pub fn shift(d: &OutDir, max: usize) -> bool {
    let mut deleted = false;
    if max > 1 {
        for name in [plain(max - 1), gz(max - 1)] {
            deleted |= d.unlink(&name).is_ok();
        }
    }
    for i in (1..max.saturating_sub(1)).rev() {
        let _ = d.rename(&gz(i), d, &gz(i + 1));
        let _ = d.rename(&plain(i), d, &plain(i + 1));
    }
    if max > 1 {
        let _ = d.rename(NAME, d, &plain(1));
    } else {
        deleted |= d.unlink(NAME).is_ok();
    }
    deleted
}

/// Writes events.jsonl.i.gz from events.jsonl.i, then unlinks the plain
/// file. A plain file and a .gz of the same number can exist together
/// only between the rename and the unlink; `report` then reads the plain.
fn compress(d: &OutDir, i: usize) -> io::Result<()> {
    let mut src = d.open_rw(&plain(i))?;
    let _ = d.unlink(&tmp(i));
    let res = (|| {
        let out = d.create(&tmp(i), false)?;
        let mut enc = flate2::write::GzEncoder::new(io::BufWriter::new(out), flate2::Compression::new(6));
        io::copy(&mut src, &mut enc)?;
        let out = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        d.rename(&tmp(i), d, &gz(i))
    })();
    if res.is_err() {
        let _ = d.unlink(&tmp(i));
        return res;
    }
    d.unlink(&plain(i))
}

/// At most one compressing thread at a time.
#[derive(Default)]
pub struct Compressor {
    worker: Option<JoinHandle<Vec<String>>>,
}

impl Compressor {
    /// Waits for the running compression, if any. Returns its errors.
    pub fn wait(&mut self) -> Vec<String> {
        match self.worker.take() {
            Some(h) => h.join().unwrap_or_else(|_| vec!["the compressing thread panicked".into()]),
            None => Vec::new(),
        }
    }

    /// No compression is running.
    pub fn is_done(&self) -> bool {
        self.worker.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Compresses, in the background, every plain rotation 1..max that is
    /// there. The caller waits for the previous run first (renames must
    /// not race it).
    pub fn start(&mut self, d: OutDir, max: usize) {
        debug_assert!(self.worker.is_none());
        let spawned = std::thread::Builder::new()
            .name("lt-gzip".into())
            .spawn(move || {
                let mut errors = Vec::new();
                for i in 1..max {
                    if d.exists(&plain(i)) {
                        if let Err(e) = compress(&d, i) {
                            errors.push(format!("compressing {}: {e}", d.path().join(plain(i)).display()));
                        }
                    }
                }
                errors
            });
        // Without a thread the rotations stay plain: still readable.
        self.worker = spawned.ok();
    }
}

/// The rotation number of a name `report` reads, and whether it is gzip:
/// events.jsonl (0), events.jsonl.N, events.jsonl.N.gz.
pub fn parse(name: &str) -> Option<(usize, bool)> {
    if name == NAME {
        return Some((0, false));
    }
    let rest = name.strip_prefix(NAME)?.strip_prefix('.')?;
    match rest.strip_suffix(".gz") {
        Some(n) => Some((n.parse().ok().filter(|&n| n > 0)?, true)),
        None => Some((rest.parse().ok().filter(|&n| n > 0)?, false)),
    }
}

/// For unit tests: writes `text` gzip-compressed.
#[cfg(test)]
pub fn gzip(text: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(text).unwrap();
    enc.finish().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(parse("events.jsonl"), Some((0, false)));
        assert_eq!(parse(&plain(3)), Some((3, false)));
        assert_eq!(parse(&gz(12)), Some((12, true)));
        for bad in ["events.jsonl.", "events.jsonl.0", "events.jsonl.x.gz", ".events.jsonl.1.gz.tmp", "events.jsonl.1.gz.tmp", "events.jsonlx"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_rotation_is_compressed_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("lt-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let d = OutDir::open(&dir).unwrap();
        let text = "{\"type\":\"summary\"}\n".repeat(1000);
        std::fs::write(dir.join(NAME), &text).unwrap();
        assert!(!shift(&d, 3));
        let mut c = Compressor::default();
        c.start(OutDir::open(&dir).unwrap(), 3);
        assert_eq!(c.wait(), Vec::<String>::new());
        assert!(!dir.join(plain(1)).exists());
        let z = std::fs::read(dir.join(gz(1))).unwrap();
        assert!(z.len() * 10 < text.len(), "{} bytes from {}", z.len(), text.len());
        let mut back = String::new();
        io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&z[..]), &mut back).unwrap();
        assert_eq!(back, text);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
