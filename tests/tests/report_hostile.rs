//! `leaktrace report` on tampered recordings (issue 21 items 3, 4 and 8):
//! the real binary, no kernel needed. Each test plants one attack and
//! checks the bound docs/security.md states for it: time, peak RSS (from
//! wait4, the child's own), exit code, what reaches the page.
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use leaktrace_tests::*;

const MIB: u64 = 1 << 20;

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// Peak RSS of the process, from wait4's rusage.
    max_rss_mib: f64,
    secs: f64,
}

/// Runs `leaktrace ARGS` with its output in files under `dir`, killed
/// (and the test failed) past `timeout`.
fn run(dir: &Path, args: &[&std::ffi::OsStr], timeout: Duration) -> Run {
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let child = Command::new(leaktrace_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let t = Instant::now();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waiting for our own child, with valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        assert_eq!(r, 0, "wait4: {}", std::io::Error::last_os_error());
        if t.elapsed() > timeout {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above.
            unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
            panic!("report still running after {timeout:?}: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::mem::forget(child);
    assert!(libc::WIFEXITED(status), "report died: status {status:#x}");
    Run {
        code: libc::WEXITSTATUS(status),
        stdout: std::fs::read_to_string(out).unwrap_or_default(),
        stderr: std::fs::read_to_string(err).unwrap_or_default(),
        max_rss_mib: ru.ru_maxrss as f64 / 1024.0,
        secs: t.elapsed().as_secs_f64(),
    }
}

fn report(dir: &Path, rec: &Path, html: Option<&Path>, timeout: Duration) -> Run {
    let mut args: Vec<&std::ffi::OsStr> = vec!["report".as_ref(), rec.as_os_str()];
    if let Some(h) = html {
        args.extend(["--text".as_ref(), "--html".as_ref(), h.as_os_str()]);
    }
    let r = run(dir, &args, timeout);
    eprintln!(
        "report {}: exit {}, {:.2} s, peak RSS {:.1} MiB",
        rec.display(),
        r.code,
        r.secs,
        r.max_rss_mib
    );
    r
}

/// A recording directory `name` under `t` (mode 0700, as record makes it).
fn rec_dir(t: &TempDir, name: &str) -> PathBuf {
    let d = t.0.join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn evidence(ts: u64, detail: &str, dir: &str) -> String {
    serde_json::json!({"type": "evidence", "ts_ms": ts, "pid": 1, "comm": "c", "reason": "rss",
        "detail": detail, "dir": dir, "error": null})
    .to_string()
}

/// The 43-byte events.jsonl of the finding, and typed records at both
/// ends of time: the page is written at once and stays small.
#[test]
fn extreme_timestamps_give_a_small_page_at_once() {
    let t = TempDir::new("rh-time");
    let rec = rec_dir(&t, "rec");
    let ev = rec.join("events.jsonl");
    std::fs::write(&ev, "{\"ts_ms\":0}\n{\"ts_ms\":18446744073709551615}\n").unwrap();
    assert_eq!(std::fs::metadata(&ev).unwrap().len(), 43);
    let html = t.0.join("a.html");
    let r = report(&t.0, &rec, Some(&html), Duration::from_secs(30));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("2 of 2 lines skipped"), "{}", r.stdout);
    assert!(std::fs::metadata(&html).unwrap().len() < 100_000);
    let lines = [
        evidence(0, "d", "/x"),
        evidence(u64::MAX, "d", "/y"),
        evidence(7_258_118_400_000, "d", "/z"),
    ];
    std::fs::write(&ev, lines.join("\n") + "\n").unwrap();
    let r = report(&t.0, &rec, Some(&html), Duration::from_secs(30));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("1 a time outside 1970 to 2200"), "{}", r.stdout);
    assert!(r.secs < 10.0, "{} s", r.secs);
    assert!(std::fs::metadata(&html).unwrap().len() < 100_000);
}

/// Writes `n` lines of `len` bytes (an evidence event whose detail fills
/// it, or not JSON), between two small records.
fn big_lines(path: &Path, n: usize, len: u64, json: bool) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(f, "{}", evidence(1_700_000_000_000, "first", "/x")).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for k in 0..n {
        let head = if json {
            format!("{{\"type\":\"evidence\",\"ts_ms\":{k},\"pid\":1,\"comm\":\"c\",\"reason\":\"rss\",\"detail\":\"")
        } else {
            "x".into()
        };
        let tail = if json {
            "\",\"dir\":null,\"error\":null}\n"
        } else {
            "\n"
        };
        f.write_all(head.as_bytes()).unwrap();
        let mut left = len - head.len() as u64 - tail.len() as u64;
        while left > 0 {
            let m = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..m]).unwrap();
            left -= m as u64;
        }
        f.write_all(tail.as_bytes()).unwrap();
    }
    writeln!(f, "{}", evidence(1_700_000_001_000, "last", "/x")).unwrap();
}

/// One 500 MB line (the finding: 506 MiB of RSS) is skipped as it is
/// read: the peak stays under 100 MiB.
#[test]
fn one_500_mb_line_is_skipped_in_bounded_memory() {
    let t = TempDir::new("rh-long");
    let rec = rec_dir(&t, "rec");
    big_lines(&rec.join("events.jsonl"), 1, 500_000_000, false);
    let r = report(&t.0, &rec, None, Duration::from_secs(120));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("1 longer than 32 MiB"), "{}", r.stdout);
    assert!(r.stdout.contains("2 evidence event(s)"), "{}", r.stdout);
    assert!(r.max_rss_mib < 100.0, "peak RSS {:.1} MiB", r.max_rss_mib);
    let _ = std::fs::remove_dir_all(&t.0);
}

/// Sixteen 31 MiB lines (the finding: past 1.5 GiB with --html), each a
/// readable evidence event: the text and the page are written and the
/// peak stays under 160 MiB.
#[test]
fn sixteen_31_mib_lines_stay_in_bounded_memory() {
    let t = TempDir::new("rh-wide");
    let rec = rec_dir(&t, "rec");
    big_lines(&rec.join("events.jsonl"), 16, 31 * MIB, true);
    let html = t.0.join("a.html");
    let r = report(&t.0, &rec, Some(&html), Duration::from_secs(120));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("18 evidence event(s)"),
        "{}",
        &r.stdout[..300.min(r.stdout.len())]
    );
    assert!(r.max_rss_mib < 160.0, "peak RSS {:.1} MiB", r.max_rss_mib);
    assert!(std::fs::metadata(&html).unwrap().len() < 4 * MIB);
    // The same lines, not JSON: skipped and counted.
    big_lines(&rec.join("events.jsonl"), 16, 31 * MIB, false);
    let r = report(&t.0, &rec, Some(&html), Duration::from_secs(120));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("16 of 18 lines skipped"), "{}", r.stdout);
    assert!(r.max_rss_mib < 160.0, "peak RSS {:.1} MiB", r.max_rss_mib);
    let _ = std::fs::remove_dir_all(&t.0);
}

/// events.jsonl as a symlink to /dev/zero (grew without bound) or a FIFO
/// (hung for over 60 s): refused at once with exit code 1.
#[test]
fn a_symlink_or_a_fifo_for_events_is_refused() {
    let t = TempDir::new("rh-irregular");
    let rec = rec_dir(&t, "rec");
    let ev = rec.join("events.jsonl");
    std::os::unix::fs::symlink("/dev/zero", &ev).unwrap();
    let r = report(&t.0, &rec, None, Duration::from_secs(10));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("it is a symlink"), "{}", r.stderr);
    std::fs::remove_file(&ev).unwrap();
    let c = std::ffi::CString::new(ev.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let r = report(&t.0, &rec, None, Duration::from_secs(10));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
}

/// A bundle that is a symlink out of the recording, or an absolute `dir`
/// elsewhere: nothing of it reaches the page.
#[test]
fn bundles_outside_the_recording_are_not_embedded() {
    let t = TempDir::new("rh-bundle");
    let rec = rec_dir(&t, "rec");
    let outside = rec_dir(&t, "outside");
    std::fs::write(outside.join("stacks.folded"), "main;SECRET_FRAME 5\n").unwrap();
    std::fs::write(outside.join("python_stacks.txt"), "SECRET_PY\n").unwrap();
    std::fs::create_dir_all(rec.join("evidence")).unwrap();
    let link = rec.join("evidence/1700000000000-1-c");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let lines = [
        evidence(1_700_000_000_000, "d", &link.display().to_string()),
        evidence(1_700_000_001_000, "d", &outside.display().to_string()),
    ];
    std::fs::write(rec.join("events.jsonl"), lines.join("\n") + "\n").unwrap();
    let html = t.0.join("a.html");
    let r = report(&t.0, &rec, Some(&html), Duration::from_secs(30));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("SECRET"), "{page}");
    assert_eq!(
        page.matches("bundle outside the recording: not read").count(),
        2,
        "{page}"
    );
}

/// `--html OUT` where OUT is a planted symlink: refused, its target kept;
/// a page is written 0600.
#[test]
fn the_page_is_not_written_through_a_symlink_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new("rh-out");
    let rec = rec_dir(&t, "rec");
    std::fs::write(
        rec.join("events.jsonl"),
        evidence(1_700_000_000_000, "d", "/x") + "\n",
    )
    .unwrap();
    let target = t.0.join("precious");
    std::fs::write(&target, "keep").unwrap();
    let out = t.0.join("out.html");
    std::os::unix::fs::symlink(&target, &out).unwrap();
    let r = report(&t.0, &rec, Some(&out), Duration::from_secs(30));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("it is a symlink"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    std::fs::remove_file(&out).unwrap();
    let r = report(&t.0, &rec, Some(&out), Duration::from_secs(30));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mode = std::fs::symlink_metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

/// The losses a recording shows are in the text and on the page: the
/// summaries' counters, skipped lines and a restart of the recorder.
#[test]
fn losses_in_the_recording_are_reported() {
    let t = TempDir::new("rh-loss");
    let rec = rec_dir(&t, "rec");
    let status = |ts: u64, boot: &str| {
        serde_json::json!({"type": "status", "schema": 1, "ts_ms": ts, "boot_id": boot, "version": "v"})
            .to_string()
    };
    let summary = |ts: u64, lost: u64| {
        serde_json::json!({"type": "summary", "ts_ms": ts, "processes": [], "dropped_lines": 1,
            "kernel": {"oom_crit_lost": lost}})
        .to_string()
    };
    let lines = [
        status(1_700_000_000_000, "a"),
        summary(1_700_000_001_000, 2),
        status(1_700_000_600_000, "a"),
        summary(1_700_000_601_000, 3),
        "{\"type\":\"summary\",\"ts_ms\":1,\"proc".to_string(),
    ];
    std::fs::write(rec.join("events.jsonl"), lines.join("\n") + "\n").unwrap();
    let html = t.0.join("a.html");
    let r = report(&t.0, &rec, Some(&html), Duration::from_secs(30));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for want in [
        "1 of 5 lines skipped",
        "5 OOM kill/victim events lost in the kernel ring (oom_crit_lost)",
        "2 lines the event log could not write",
        "the recorder started 1 more time(s) (0 after a reboot)",
    ] {
        assert!(r.stdout.contains(want), "{want:?} not in {}", r.stdout);
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("class=\"timeline-gap\""), "{page}");
    assert!(page.contains("oom_crit_lost"), "{page}");
}
