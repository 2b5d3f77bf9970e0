//! `leaktrace record`: the event log. Lines go to DIR/events.jsonl, which
//! rotates by size (events.jsonl.1, .2, ...) and keeps at most N files. A
//! write error (full disk, removed directory) is reported on stderr, the
//! line is counted as dropped, and the next write tries again: the tracer
//! never stops for it.
use std::{
    fs,
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use anyhow::Result;
use serde::Serialize;

use super::{Event, Flow, Sink};
use crate::{model::sample::GroupRow, model::trend::Trend, outdir::OutDir};

use super::rotation::{self, Compressor, NAME};

pub struct EventLog {
    path: PathBuf,
    dir: Option<OutDir>,
    max_file_bytes: u64,
    max_files: usize,
    file: Option<fs::File>,
    size: u64,
    pub dropped_lines: u64,
    /// Torn last lines (a write cut by SIGKILL or a full disk) ended with
    /// a newline on reopen, so the next line starts on a line of its own.
    pub repaired_tails: u64,
    last_error: Option<String>,
    compressor: Compressor,
}

impl EventLog {
    /// Opens (creates) DIR/events.jsonl for appending. DIR is vetted like
    /// every output directory (outdir.rs): refused if it is a symlink, not
    /// ours, or writable by others.
    pub fn open(dir: &Path, max_file_bytes: u64, max_files: usize) -> Result<Self> {
        let d = OutDir::open(dir)?;
        crate::limits::EVENT_LOG_BYTES.set_bound(max_file_bytes.saturating_mul(max_files.max(1) as u64));
        let mut log = Self {
            path: dir.to_path_buf(),
            dir: Some(d),
            max_file_bytes,
            max_files: max_files.max(1),
            file: None,
            size: 0,
            dropped_lines: 0,
            repaired_tails: 0,
            last_error: None,
            compressor: Compressor::default(),
        };
        log.reopen()?;
        log.start_compression();
        Ok(log)
    }

    pub fn path(&self) -> PathBuf {
        self.path.join(NAME)
    }

    /// The directory handle, opened again from the path if the directory
    /// was removed (writing resumes when it is back).
    fn dir(&mut self) -> std::io::Result<&OutDir> {
        if self.dir.as_ref().is_none_or(|d| d.is_deleted()) {
            self.dir = None;
            self.file = None;
            let d = OutDir::open(&self.path).map_err(|e| std::io::Error::other(format!("{e:#}")))?;
            self.dir = Some(d);
        }
        Ok(self.dir.as_ref().expect("set above"))
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let mut f = self.dir()?.create(NAME, true)?;
        self.size = f.metadata()?.len();
        if self.size > 0 && !ends_with_newline(&self.dir()?.open_rw(NAME)?)? {
            // The last run was killed in the middle of a line: end it, so
            // that only that line is lost, not also the next.
            f.write_all(b"\n")?;
            self.size += 1;
            self.repaired_tails += 1;
        }
        self.file = Some(f);
        Ok(())
    }

    /// events.jsonl -> .1 -> .2 ...; the oldest beyond max_files goes.
    /// The rotations are gzip-compressed in the background (rotation.rs).
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        self.report_compression(true);
        let max = self.max_files;
        let d = self.dir()?;
        if rotation::shift(d, max) {
            crate::limits::EVENT_LOG_BYTES.hit();
        }
        self.start_compression();
        self.reopen()
    }

    /// Compresses the plain rotations there are (after a rotation, or
    /// those a crash left).
    fn start_compression(&mut self) {
        let max = self.max_files;
        if let Ok(d) = self.dir().and_then(|d| d.try_clone()) {
            self.compressor.start(d, max);
        }
    }

    /// Waits for the compressing thread (`wait`), or only if it is done,
    /// and reports its errors: a rotation it could not compress stays
    /// plain, which loses nothing.
    fn report_compression(&mut self, wait: bool) {
        if !wait && !self.compressor.is_done() {
            return;
        }
        for e in self.compressor.wait() {
            eprintln!("leaktrace record: {e}; the rotation stays uncompressed");
        }
    }

    /// At exit: gives a running compression up to 500 ms (stopping must
    /// stay fast); one cut short leaves its plain rotation, compressed at
    /// the next start.
    pub fn finish_compression(&mut self) {
        let t0 = std::time::Instant::now();
        while !self.compressor.is_done() && t0.elapsed() < std::time::Duration::from_millis(500) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.report_compression(false);
    }

    /// For tests: waits until the rotations are compressed.
    #[cfg(test)]
    pub fn wait_compressed(&mut self) {
        self.report_compression(true);
    }

    /// Appends one line. Never fails: errors are reported and counted.
    pub fn write_line(&mut self, line: &str) {
        let res = (|| -> std::io::Result<()> {
            // Reopen if the file was removed or rotated away underneath us
            // (an unlinked file would swallow the lines).
            if self.file.is_none() || !self.dir()?.exists(NAME) {
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
                        "leaktrace record: writing {} works again (after: {e}; {} line(s) dropped so far)",
                        self.path().display(),
                        self.dropped_lines
                    );
                }
            }
            Err(e) => {
                self.dropped_lines += 1;
                crate::losses::output_write_failed();
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
        self.report_compression(false);
        if let Some(f) = self.file.as_mut() {
            let _ = f.sync_data();
        }
    }
}

fn ends_with_newline(f: &fs::File) -> std::io::Result<bool> {
    let mut f = f;
    f.seek(SeekFrom::End(-1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(b[0] == b'\n')
}

/// `record`'s sink: the status line, evidence events, incidents (and
/// their stall lines), and every `summary_every` seconds a compact summary
/// of the top growers.
pub struct EventLogSink {
    pub log: EventLog,
    pub summary_every: f64,
    last_summary: Option<std::time::Instant>,
    host: String,
    kernel_release: Option<String>,
}

impl EventLogSink {
    pub fn new(log: EventLog, summary_every: f64) -> Self {
        Self {
            log,
            summary_every,
            last_summary: None,
            host: crate::host::hostname(),
            kernel_release: crate::host::facts::kernel_release(),
        }
    }
}

/// The compact periodic line of `record`.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct SummaryLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts_ms: u64,
    processes: Vec<SummaryRow<'a>>,
    groups: &'a [GroupRow],
    cgroups: &'a [crate::model::sample::CgroupRow],
    kernel: &'a crate::model::sample::KernelStatus,
    /// The host memory ledger (docs/ledger.md); null until the first reading.
    ledger: Option<&'a crate::model::ledger::Ledger>,
    dropped_lines: u64,
    /// The kernel's OOM kills since boot (/proc/vmstat oom_kill) now: the
    /// next recorder's status line tells how many came while none ran.
    oom_kills_since_boot: Option<u64>,
    /// The host's name and its kernel's release (uname -r), so that a
    /// report of any part of the recording names them.
    host: &'a str,
    kernel_release: Option<&'a str>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct SummaryRow<'a> {
    pid: u32,
    comm: &'a str,
    cgroup: &'a str,
    rss_bytes: u64,
    growth_bytes_per_sec: f64,
    growth_bytes_per_sec_long: f64,
    trend: Trend,
}

/// A `summary` line read back (by `report`): what it keeps of
/// [`SummaryLine`]. Kept next to the writer so that the two change
/// together; `a_summary_line_reads_back` fails when they drift apart.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct SummaryRecord {
    pub ts_ms: u64,
    pub processes: Vec<SummaryRecordRow>,
    /// Lines the event log could not write so far in this run.
    pub dropped_lines: u64,
    pub kernel: KernelLosses,
    /// Absent from recordings made before it was added.
    #[serde(default)]
    pub oom_kills_since_boot: Option<u64>,
    /// Absent from recordings made before they were added.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub kernel_release: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct SummaryRecordRow {
    pub pid: u32,
    pub comm: String,
    pub cgroup: String,
    pub rss_bytes: u64,
}

/// The loss counters of a summary's `kernel` (each counts from the start
/// of the run that wrote it). Counters were added over time within one
/// schema version: one that a line lacks reads as 0 (the round-trip test
/// sets each to a different non-zero value, so a rename still fails it).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct KernelLosses {
    pub oom_lost: u64,
    pub oom_crit_lost: u64,
    pub exits_lost: u64,
    pub stacks_lost: u64,
    pub stack_copies_lost: u64,
    pub py_stacks_lost: u64,
    pub exits_dropped: u64,
    pub linger_dropped: u64,
    pub sink_drops: Vec<(String, u64)>,
    /// Hits of leaktrace's own bounds, by limit (limits.rs).
    pub limits_hit: std::collections::BTreeMap<String, u64>,
}

impl Sink for EventLogSink {
    fn name(&self) -> &'static str {
        "event-log"
    }

    fn handle(&mut self, ev: &Event) -> Result<Flow> {
        match ev {
            Event::Status(s) => self.log.write_line(&crate::fmt::json_line(s.as_ref())?),
            Event::Evidence(e) => self.log.write_line(&crate::fmt::json_line(e.as_ref())?),
            Event::Incident(i) => {
                self.log.write_line(&crate::fmt::json_line(i.as_ref())?);
                if let Some(l) = i.stall_line() {
                    self.log.write_line(&crate::fmt::json_line(&l)?);
                }
                // An incident is the line that must survive a crash.
                self.log.flush();
            }
            Event::Sample(s) => {
                if self
                    .last_summary
                    .is_none_or(|t| t.elapsed().as_secs_f64() >= self.summary_every)
                {
                    self.last_summary = Some(std::time::Instant::now());
                    let line = SummaryLine {
                        kind: "summary",
                        ts_ms: s.ts_ms,
                        processes: s
                            .processes
                            .iter()
                            .take(10)
                            .map(|p| SummaryRow {
                                pid: p.pid,
                                comm: &p.comm,
                                cgroup: &p.cgroup,
                                rss_bytes: p.rss_bytes,
                                growth_bytes_per_sec: p.growth_bytes_per_sec,
                                growth_bytes_per_sec_long: p.growth_bytes_per_sec_long,
                                trend: p.trend,
                            })
                            .collect(),
                        groups: &s.groups[..s.groups.len().min(5)],
                        cgroups: &s.cgroups[..s.cgroups.len().min(5)],
                        kernel: &s.kernel,
                        ledger: s.ledger.as_ref(),
                        dropped_lines: self.log.dropped_lines,
                        oom_kills_since_boot: crate::host::facts::oom_kills_since_boot(),
                        host: &self.host,
                        kernel_release: self.kernel_release.as_deref(),
                    };
                    self.log.write_line(&crate::fmt::json_line(&line)?);
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn finish(&mut self) {
        self.log.flush();
        self.log.finish_compression();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_line_reads_back() {
        let mut kernel = crate::model::sample::KernelStatus::default();
        kernel.counters.oom_lost = 1;
        kernel.counters.oom_crit_lost = 2;
        kernel.counters.exits_lost = 3;
        kernel.counters.stacks_lost = 4;
        kernel.counters.stack_copies_lost = 5;
        kernel.counters.py_stacks_lost = 6;
        kernel.exits_dropped = 7;
        kernel.linger_dropped = 8;
        kernel.sink_drops = vec![("json".into(), 9)];
        let line = SummaryLine {
            kind: "summary",
            ts_ms: 10,
            processes: vec![SummaryRow {
                pid: 11,
                comm: "c",
                cgroup: "/g",
                rss_bytes: 12,
                growth_bytes_per_sec: 0.0,
                growth_bytes_per_sec_long: 0.0,
                trend: Trend::Stable,
            }],
            groups: &[],
            cgroups: &[],
            kernel: &kernel,
            ledger: None,
            dropped_lines: 13,
            oom_kills_since_boot: Some(14),
            host: "h",
            kernel_release: Some("6.18.0"),
        };
        let r: SummaryRecord = serde_json::from_str(&crate::fmt::json_line(&line).unwrap()).unwrap();
        let want = SummaryRecord {
            ts_ms: 10,
            processes: vec![SummaryRecordRow {
                pid: 11,
                comm: "c".into(),
                cgroup: "/g".into(),
                rss_bytes: 12,
            }],
            dropped_lines: 13,
            oom_kills_since_boot: Some(14),
            host: Some("h".into()),
            kernel_release: Some("6.18.0".into()),
            kernel: KernelLosses {
                oom_lost: 1,
                oom_crit_lost: 2,
                exits_lost: 3,
                stacks_lost: 4,
                stack_copies_lost: 5,
                py_stacks_lost: 6,
                exits_dropped: 7,
                linger_dropped: 8,
                sink_drops: vec![("json".into(), 9)],
                limits_hit: kernel.limits_hit.0.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            },
        };
        assert_eq!(r, want);
    }

    #[test]
    fn rotates_and_caps_the_files() {
        let dir = std::env::temp_dir().join(format!("lt-log-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut log = EventLog::open(&dir, 1000, 3).unwrap();
        let line = "x".repeat(99);
        for _ in 0..100 {
            log.write_line(&line);
        }
        log.wait_compressed();
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["events.jsonl", "events.jsonl.1.gz", "events.jsonl.2.gz"]);
        let total: u64 = names.iter().map(|f| fs::metadata(dir.join(f)).unwrap().len()).sum();
        assert!(total <= 3 * 1000, "{total}");
        // The newest rotation holds the lines just before events.jsonl's.
        let z = fs::read(dir.join("events.jsonl.1.gz")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&z[..]), &mut text).unwrap();
        assert_eq!(text.lines().count(), 10);
        assert!(text.lines().all(|l| l == line));
        assert_eq!(log.dropped_lines, 0);
        // The directory is removed: it is made again and nothing is lost.
        fs::remove_dir_all(&dir).unwrap();
        log.write_line("again");
        assert_eq!(log.dropped_lines, 0);
        assert_eq!(fs::read_to_string(dir.join("events.jsonl")).unwrap(), "again\n");
        // It cannot be made (a file is in the way): lines are dropped and
        // counted, then writing resumes when it can.
        fs::remove_dir_all(&dir).unwrap();
        fs::write(&dir, b"in the way").unwrap();
        log.write_line("lost");
        assert_eq!(log.dropped_lines, 1);
        fs::remove_file(&dir).unwrap();
        log.write_line("back");
        assert_eq!(fs::read_to_string(dir.join("events.jsonl")).unwrap(), "back\n");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rotation_a_crash_left_plain_is_compressed_at_the_next_start() {
        let dir = std::env::temp_dir().join(format!("lt-log-gzleft-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("events.jsonl.1"), "{\"a\":1}\n").unwrap();
        fs::write(dir.join(".events.jsonl.1.gz.tmp"), "cut short").unwrap();
        let mut log = EventLog::open(&dir, 1 << 20, 3).unwrap();
        log.wait_compressed();
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["events.jsonl", "events.jsonl.1.gz"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_last_line_is_ended_on_reopen() {
        let dir = std::env::temp_dir().join(format!("lt-log-torn-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("events.jsonl"), "{\"a\":1}\n{\"b\":").unwrap();
        let mut log = EventLog::open(&dir, 1 << 20, 2).unwrap();
        assert_eq!(log.repaired_tails, 1);
        log.write_line("{\"c\":3}");
        let text = fs::read_to_string(dir.join("events.jsonl")).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":\n{\"c\":3}\n");
        // A clean file is left as it is.
        drop(log);
        let log = EventLog::open(&dir, 1 << 20, 2).unwrap();
        assert_eq!(log.repaired_tails, 0);
        let _ = fs::remove_dir_all(&dir);
    }
}
