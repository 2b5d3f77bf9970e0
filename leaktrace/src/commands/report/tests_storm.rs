//! Reports that stay readable in an OOM storm (issue 24): storms grouped,
//! a bounded page and timeline, filters, host and kernel named, newlines
//! in stacks shown as newlines.
use super::tests::{inc_line, summary_line, tmp, victim};
use super::*;

use crate::{fmt, model::incident::VictimChoice};

const T0: u64 = 1_795_000_000_000;

/// A storm of `n` kills of `comm` in `memcg`, `gap_ms` apart from `t0`,
/// every 10th judged wrong and every 3rd a sibling, with pids from `pid0`.
fn storm(n: usize, t0: u64, gap_ms: u64, memcg: &str, comm: &str, pid0: u32) -> Vec<String> {
    (0..n)
        .map(|k| {
            inc_line(|i| {
                i.ts_ms = t0 + k as u64 * gap_ms;
                i.constraint = "memcg".into();
                i.memcg = Some(memcg.into());
                i.summary = format!("memcg OOM in {memcg}: killed pid {} ({comm})", pid0 + k as u32);
                victim(i, pid0 + k as u32, comm, |v| v.cgroup = memcg.into());
                let c = match k {
                    k if k % 10 == 0 => VictimChoice::Wrong,
                    k if k % 3 == 0 => VictimChoice::Sibling,
                    _ => VictimChoice::TopGrower,
                };
                i.victim_choice = Some(c);
                i.victim_was_top_grower = c == VictimChoice::TopGrower;
                i.victim_history = (0..40).map(|p| (i.ts_ms - 40_000 + p * 1000, p << 20)).collect();
            })
        })
        .collect()
}

fn host_summary(ts: u64) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&summary_line(ts, &[])).unwrap();
    v["host"] = "node-7<b>".into();
    v["kernel_release"] = "6.18.0-test".into();
    v.to_string()
}

/// 1,000 kills of one pool (plus 2 lone kills elsewhere): one storm entry
/// with its count and one verdict, the page under 1 MB, the timeline a
/// handful of marks, the text a few blocks.
#[test]
fn a_thousand_kill_storm_is_one_entry_and_a_bounded_page() {
    let mut lines = vec![host_summary(T0 - 1000)];
    lines.extend(storm(1000, T0, 150, "/pool", "worker", 10_000));
    lines.extend(storm(1, T0 + 400_000, 1, "/other", "lone", 50));
    lines.extend(storm(1, T0 + 900_000, 1, "/other", "lone", 51));
    let rec = Recording::from_lines(lines.iter().map(String::as_str));
    let incs = incidents(&rec);
    let e = entries(&incs);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].is_storm() && e[0].members.len() == 1000);
    let c = Choices::of(&incs, &e[0]);
    assert_eq!((c.wrong, c.sibling, c.top_grower), (100, 300, 600), "{c:?}");
    let h = render_html(Path::new("/rec"), &rec);
    eprintln!("1,000 kills: {} bytes of HTML", h.len());
    assert!(h.len() < 1_000_000, "{} bytes", h.len());
    assert_eq!(h.matches("class=\"storm\"").count(), 1);
    assert!(h.contains("data-kills=\"1000\""));
    assert!(h.contains("OOM storm: 1000 kills in /pool (1000 of worker)"), "storm heading");
    assert!(h.contains("NO for 100 of 1000"));
    assert!(h.contains("<details><summary>all 1000 kills</summary>"));
    // Every kill keeps an anchor, the first in its own section.
    assert!(h.contains("id=\"incident-1\"") && h.contains("id=\"incident-1000\""));
    let marks = h.matches("class=\"timeline-mark\"").count();
    assert!((1..=20).contains(&marks), "{marks} timeline marks");
    assert!(h.contains("\u{d7}1000"), "the storm's band is labelled with its count");
    assert!(h.contains("host node-7&lt;b&gt;, kernel 6.18.0-test, recorded"), "host named, escaped");
    let t = render_text(Path::new("/rec"), &rec);
    assert_eq!(t.matches("\n== ").count(), 3, "{t}");
    assert!(t.contains("== OOM storm, incidents 1 to 1000: 1000 kills in /pool (1000 of worker)"), "{t}");
    assert!(t.contains("victims' pids: 10000 10001"), "{t}");
    assert!(t.contains("and 900 more"), "{t}");
    assert!(t.contains("host node-7<b>, kernel 6.18.0-test"), "{t}");
    assert!(t.len() < 20_000, "{} bytes of text", t.len());
}

/// A memcg storm is one entry whatever its victims' comms (a worker
/// killed mid-exec is still "sh"); global OOMs group by command.
#[test]
fn a_memcg_storm_is_not_split_by_comm() {
    let mut lines = storm(20, T0, 500, "/pool", "worker", 100);
    lines.extend(storm(4, T0 + 250, 2000, "/pool", "sh", 500));
    let rec = Recording::from_lines(lines.iter().map(String::as_str));
    let incs = incidents(&rec);
    let e = entries(&incs);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(storm_words(&incs, &e[0]).starts_with("24 kills in /pool (20 of worker, 4 of sh), from"));
    let globals: Vec<String> = storm(3, T0, 100, "", "a", 1)
        .into_iter()
        .chain(storm(3, T0 + 50, 100, "", "b", 9))
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(&l).unwrap();
            v["memcg"] = serde_json::Value::Null;
            v["constraint"] = "global".into();
            v.to_string()
        })
        .collect();
    let rec = Recording::from_lines(globals.iter().map(String::as_str));
    let incs = incidents(&rec);
    let e = entries(&incs);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(storm_words(&incs, &e[0]).starts_with("3 kills in the host (global OOM) (3 of a)"));
}

/// Timeline labels never overlap: each label's box ends before the next
/// one starts, for kills spread at every spacing.
#[test]
fn timeline_labels_do_not_overlap() {
    for gap in [10u64, 900, 5_000, 61_000, 300_000] {
        let mut lines = Vec::new();
        for k in 0..60u32 {
            lines.extend(storm(1, T0 + k as u64 * gap * (1 + (k as u64 % 3)), 1, &format!("/g{k}"), "w", k));
        }
        let rec = Recording::from_lines(lines.iter().map(String::as_str));
        let h = render_html(Path::new("/rec"), &rec);
        let boxes: Vec<(f64, f64)> = h
            .split("<g class=\"timeline-label\"><rect x=\"")
            .skip(1)
            .map(|r| {
                let x: f64 = r[..r.find('"').unwrap()].parse().unwrap();
                let w = r.split("width=\"").nth(1).unwrap();
                (x, x + w[..w.find('"').unwrap()].parse::<f64>().unwrap())
            })
            .collect();
        assert!(!boxes.is_empty());
        for p in boxes.windows(2) {
            assert!(p[0].1 <= p[1].0, "gap {gap}: labels {:?} and {:?} overlap", p[0], p[1]);
        }
    }
}

#[test]
fn filters_select_a_sub_range() {
    let mut lines = vec![host_summary(T0 - 1000)];
    lines.extend(storm(300, T0, 1000, "/pool/a", "worker", 1000));
    lines.extend(storm(5, T0 + 100_500, 100_000, "/svc/nginx.service", "nginx", 7000));
    let all = Recording::from_lines(lines.iter().map(String::as_str));
    let end = all.ts_max.unwrap();
    let pick = |f: Filter| {
        let mut r = Recording::from_lines(lines.iter().map(String::as_str));
        filter::apply(&mut r, &f);
        r
    };
    // The first minute of the storm, by RFC 3339 times.
    let r = pick(Filter {
        since: Some(time_arg(&fmt::rfc3339(T0)).unwrap()),
        until: Some(time_arg(&fmt::rfc3339(T0 + 59_000)).unwrap()),
        ..Filter::default()
    });
    assert_eq!(r.incidents.len(), 60);
    assert_eq!(r.incidents[0].n, 1, "numbers of the whole recording");
    let t = render_text(Path::new("/rec"), &r);
    assert!(t.contains("60 of 305 OOM incident(s)"), "{t}");
    // The last 250 s of the recording (it ends with nginx's last kill, at
    // T0 + 500.5 s), as a duration.
    let r = pick(Filter {
        since: Some(time_arg("250s").unwrap()),
        ..Filter::default()
    });
    assert!(r.incidents.iter().all(|k| k.inc.ts_ms + 250_000 >= end));
    assert_eq!(r.incidents.len(), 49 + 3, "the storm's last 49 kills and 3 of nginx's");
    let r = pick(Filter {
        cgroup: Some("/svc".into()),
        ..Filter::default()
    });
    assert_eq!(r.incidents.len(), 5);
    let r = pick(Filter {
        unit: Some("nginx.service".into()),
        ..Filter::default()
    });
    assert_eq!(r.incidents.len(), 5);
    let r = pick(Filter {
        pid: Some(1042),
        ..Filter::default()
    });
    assert_eq!(r.incidents.len(), 1);
    assert_eq!(r.incidents[0].n, 43);
    let r = pick(Filter {
        incident: Some(43),
        ..Filter::default()
    });
    assert_eq!(r.incidents.len(), 1);
    let t = render_text(Path::new("/rec"), &r);
    assert!(t.contains("== incident 43:"), "one kill of a storm, in full: {t}");
    assert!(t.contains("right victim: "), "{t}");
}

#[test]
fn times_parse_as_rfc3339_or_a_duration_before_the_end() {
    assert_eq!(filter::rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(filter::rfc3339_ms("2026-11-21T23:35:14.687Z"), Some(1_795_304_114_687));
    assert_eq!(filter::rfc3339_ms("2026-11-22T00:35:14+01:00"), Some(1_795_304_114_000));
    assert_eq!(filter::rfc3339_ms("2026-11-21 23:35:14Z"), Some(1_795_304_114_000));
    assert_eq!(filter::rfc3339_ms(&fmt::rfc3339(T0)), Some(T0));
    for bad in ["2026-13-01T00:00:00Z", "2026-11-21T23:35:14", "yesterday", "2026-11-21T23:35:14+0100"] {
        assert_eq!(filter::rfc3339_ms(bad), None, "{bad}");
    }
    assert_eq!(time_arg("10m"), Ok(TimeArg::BeforeEnd(600_000)));
    assert_eq!(TimeArg::BeforeEnd(600_000).resolve(T0), T0 - 600_000);
    assert!(time_arg("soon").is_err());
}

/// Stacks keep their newlines in HTML; other control bytes stay visible.
#[test]
fn stacks_show_newlines_as_newlines() {
    let b = tmp("pynl");
    std::fs::write(b.join("python_stacks.txt"), "Thread 1\n    f (a.py:1)\x1b[31m\n").unwrap();
    let h = python_stacks_html(&b);
    assert!(h.contains("Thread 1\n    f (a.py:1)"), "{h}");
    assert!(!h.contains("\\x0a"), "{h}");
    assert!(!h.contains('\x1b') && h.contains("\\x1b"), "{h}");
    std::fs::remove_dir_all(&b).unwrap();
}

/// A victim that allocated at start-up long before the kill is said so,
/// not "grew ... in 0.1 s" as if it spiked at the kill.
#[test]
fn a_start_up_allocation_is_phrased_with_when() {
    use crate::model::incident::{growth_words, VictimGrowth};
    let g = VictimGrowth {
        from_bytes: 3_774_873,
        to_bytes: 70_673_203,
        secs: 0.1,
        ended_before_kill_s: Some(19.0),
        from_birth: true,
        at_kill_bytes: Some(70_673_203),
    };
    assert_eq!(growth_words(&g), "allocated 63.8 MiB at start-up, 19 s before the kill; flat since");
    let late = VictimGrowth {
        ended_before_kill_s: Some(0.0),
        from_birth: false,
        ..g.clone()
    };
    assert_eq!(growth_words(&late), "grew from 3.6 MiB to 67.4 MiB in 0.1 s");
    let mid = VictimGrowth {
        from_birth: false,
        secs: 12.0,
        ended_before_kill_s: Some(30.0),
        at_kill_bytes: Some(20 << 20),
        ..g
    };
    assert_eq!(
        growth_words(&mid),
        "grew from 3.6 MiB to 67.4 MiB in 12 s, ending 30 s before the kill; 20.0 MiB at the kill"
    );
}

/// `report` to a reader that left: no panic, exit 0.
#[test]
fn a_closed_stdout_is_not_an_error() {
    // SAFETY: pipe() fills two fds; the read end is closed at once so the
    // write end gets EPIPE, as under `report | head -1`.
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    // stdout itself cannot be swapped in a threaded test runner; the same
    // error kind is checked on a file of the write end.
    use std::os::fd::FromRawFd;
    // SAFETY: fds[1] is a fresh fd that this File owns from here.
    let mut f = unsafe { std::fs::File::from_raw_fd(fds[1]) };
    let e = std::io::Write::write_all(&mut f, b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "Rust ignores SIGPIPE: EPIPE comes back");
}
