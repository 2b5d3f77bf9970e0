use super::*;

use crate::model::incident::{GroupInfo, GroupKind, GrowerSeries, Incident};

/// An incident as the model writes it (the assembler's sample), changed
/// by `f`, as its events.jsonl line.
pub(super) fn inc_line(f: impl FnOnce(&mut Incident)) -> String {
    let mut i = crate::model::incident::tests::sample_incident();
    i.growers.clear();
    i.memcg_history.clear();
    i.victim_history.clear();
    i.evidence_dir = None;
    i.grower_evidence_dir = None;
    i.report_complete = true;
    i.lost_events = 0;
    i.report_lines_dropped = 0;
    i.closed_early = false;
    f(&mut i);
    crate::fmt::json_line(&i).unwrap()
}

/// The victim of an incident line, changed by `f`.
pub(super) fn victim(i: &mut Incident, pid: u32, comm: &str, f: impl FnOnce(&mut crate::model::incident::Victim)) {
    let v = i.victim.as_mut().expect("the sample has a victim");
    v.pid = pid;
    v.comm = comm.into();
    f(v);
}

/// A summary line as `record` writes it (the fields the report reads).
pub(super) fn summary_line(ts: u64, rows: &[(u32, &str, &str, u64)]) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|(pid, comm, cg, rss)| serde_json::json!({"pid": pid, "comm": comm, "cgroup": cg, "rss_bytes": rss}))
        .collect();
    serde_json::json!({"type": "summary", "ts_ms": ts, "processes": rows, "dropped_lines": 0, "kernel": {}})
        .to_string()
}

fn evidence_line(ts: u64, pid: u32, comm: &str, reason: &str, detail: &str, dir: &str) -> String {
    serde_json::json!({"type": "evidence", "ts_ms": ts, "pid": pid, "comm": comm, "reason": reason,
        "detail": detail, "dir": dir, "error": null})
    .to_string()
}

/// A fresh directory for one test (removed first if a run left it).
pub(super) fn tmp(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("lt-report-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn dates_and_rendering_from_a_synthetic_recording() {
    assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(when(1_795_304_114_687), "2026-11-21 23:35:14 UTC");
    let inc = inc_line(|i| {
        i.ts_ms = 2500;
        i.summary = "memcg OOM in /a: killed pid 9 (big)".into();
        i.constraint = "global".into();
        i.memcg = None;
        victim(i, 9, "big", |v| {
            v.cmdline = "big <x>".into();
            v.cgroup = "/a".into();
        });
        i.victim_was_top_grower = false;
        let g = i.top_grower.as_mut().unwrap();
        (g.pid, g.comm, g.growth_bytes, g.window_s) = (7, "grower".into(), 3145728, 60.0);
        i.victim_history = vec![(1500, 2097152)];
    });
    let events = Recording::from_lines([
        summary_line(1000, &[(7, "grower", "", 1048576)]).as_str(),
        summary_line(2000, &[(7, "grower", "", 4194304)]).as_str(),
        inc.as_str(),
    ]);
    assert_eq!(events.skipped_lines(), 0);
    let t = render_text(Path::new("/rec"), &events);
    assert!(t.contains("1 OOM incident(s)"), "{t}");
    assert!(
        t.contains("right victim: NO - pid 7 (grower) grew 3.0 MiB"),
        "{t}"
    );
    let h = render_html(Path::new("/rec"), &events);
    assert!(h.contains("class=\"timeline\""));
    assert!(
        h.contains("href=\"#incident-1\""),
        "the timeline links the incident"
    );
    assert!(h.contains("class=\"oom-marker\""));
    assert!(h.contains("id=\"incident-1\" data-victim-pid=\"9\""));
    assert!(h.contains("big &lt;x&gt;"), "escaped");
    // The grower, from the summaries of the incident's scope; the
    // victim's one point is no line.
    assert_eq!(h.matches("<polyline").count(), 1, "{h}");
    assert!(h.contains("class=\"series grower\" data-pid=\"7\""));
    assert!(!h.contains("victim big (9)"), "no legend entry for one point");
}

fn with_limit() -> String {
    inc_line(|i| {
        i.ts_ms = 100000;
        i.constraint = "memcg".into();
        i.memcg = Some("/lt".into());
        (i.memcg_limit_bytes, i.memcg_usage_bytes) = (Some(134217728), Some(134217728));
        i.invoker.pid = 5;
        victim(i, 5, "leaker", |v| v.cgroup = "/lt".into());
        i.victim_was_top_grower = true;
        i.victim_history = vec![(40000, 1048576), (70000, 67108864), (99000, 132120576)];
        i.memcg_history = vec![(40000, 2097152), (70000, 69206016), (99500, 134217728)];
        let g = |pid, comm: &str, growth_bytes, history| GrowerSeries {
            pid,
            comm: comm.into(),
            growth_bytes,
            history,
        };
        i.growers = vec![
            g(6, "lonely", 1, vec![(90000, 1)]),
            g(8, "helper", 4194304, vec![(50000, 1048576), (98000, 5242880)]),
        ];
        i.victim_group = Some(GroupInfo {
            kind: GroupKind::Pool,
            leader_pid: 4,
            comm: "master".into(),
            members: 3,
            rss_bytes: 140000000,
            pss_bytes: None,
            growth_bytes_per_sec_long: 0.0,
            trend: crate::model::trend::Trend::Stable,
        });
    })
}

#[test]
fn the_chart_has_its_limit_ticks_and_only_series_with_data() {
    let rec = Recording::from_lines([
        // A large process outside the memcg must not set the scale.
        summary_line(90000, &[(1, "huge", "/other", 1_000_000_000_000)]).as_str(),
        summary_line(95000, &[(1, "huge", "/other", 2_000_000_000_000)]).as_str(),
        with_limit().as_str(),
    ]);
    assert_eq!(rec.skipped_lines(), 0);
    let h = render_html(Path::new("/rec"), &rec);
    assert_eq!(h.matches("class=\"limit-line\"").count(), 1, "{h}");
    assert!(h.contains("memcg limit 128 MiB"), "{h}");
    assert!(h.matches("class=\"tick y\"").count() >= 3);
    assert!(h.matches("class=\"tick x\"").count() >= 3);
    assert!(h.contains(">\u{2212}30 s<"), "time from the kill: {h}");
    // memcg usage, the victim and one grower; the one-point grower
    // and the process outside the memcg are not drawn.
    assert_eq!(h.matches("<polyline").count(), 3, "{h}");
    assert_eq!(h.matches("class=\"legend-item\"").count(), 3, "{h}");
    assert!(h.contains("helper (8)"));
    assert!(!h.contains("lonely") && !h.contains("huge"), "{h}");
    // The top of the scale is a tick of at most 2x the limit.
    assert!(h.contains(">160 MiB<"), "{h}");
    assert!(h.contains("a pool of 3 processes led by pid 4 (master)"));
    assert!(!h.contains("class=\"flame\""), "no bundle, no flame graph");
}

#[test]
fn without_history_the_limit_is_still_drawn() {
    let rec = Recording::from_lines([inc_line(|i| {
        i.ts_ms = 100000;
        i.constraint = "memcg".into();
        i.memcg = Some("/lt".into());
        i.memcg_limit_bytes = Some(134217728);
        victim(i, 5, "x", |_| {});
    })
    .as_str()]);
    let h = render_html(Path::new("/rec"), &rec);
    assert!(h.contains("class=\"limit-line\""), "{h}");
    assert!(!h.contains("<polyline"), "{h}");
    assert!(!h.contains("legend-item"), "{h}");
}

#[test]
fn the_summary_fallback_keeps_to_the_incident_scope() {
    let s = |ts: u64, pid: u32, cg: &str, rss: u64| summary_line(ts, &[(pid, &format!("p{pid}"), cg, rss)]);
    let lines = [
        s(1000, 2, "/lt/child", 1 << 20),
        s(2000, 2, "/lt/child", 8 << 20),
        s(1000, 3, "/ltx", 1 << 20),
        s(2000, 3, "/ltx", 80 << 20),
        inc_line(|i| {
            i.ts_ms = 3000;
            i.constraint = "memcg".into();
            i.memcg = Some("/lt".into());
            victim(i, 5, "v", |_| {});
        }),
    ];
    let rec = Recording::from_lines(lines.iter().map(String::as_str));
    let h = render_html(Path::new("/rec"), &rec);
    assert!(h.contains("data-pid=\"2\""), "in /lt/child: {h}");
    assert!(!h.contains("data-pid=\"3\""), "/ltx is not under /lt");
}

const STACKS_TXT: &str = "# leaktrace stacks.txt: where pid 5 (leaker) touches its memory\n\
# user stacks of page faults, sampled in the kernel (1 in 16 faults) since it became a suspect;\n\
# symbolized with blazesym from the live process's ELF symbols and DWARF, in a child process.\n\
# 10 sampled faults in 3 distinct stacks. Bytes = samples x 16 x page size (4096 B), an estimate.\n\
\n== stack 1: 6 sampled faults (60.0%), ~0.4 MiB touched\n\
  0x0000000000401000 leak_into_cache+0x1f (src/main.rs:12)\n\
  0x0000000000402000 main+0x10 (src/main.rs:30)\n\
  0x0000000000403000 __libc_start_main+0x80\n\
\n== stack 2: 3 sampled faults (30.0%), ~0.2 MiB touched\n\
  0x0000000000409000 ?? (no symbol)\n\
  0x0000000000401500 operator new(unsigned long)+0x5 (new.cc:1)\n\
  0x0000000000402000 main+0x10 (src/main.rs:31)\n\
  0x0000000000403000 __libc_start_main+0x80\n";

#[test]
fn stacks_txt_becomes_a_tree_root_first() {
    let f = parse_stacks_txt(STACKS_TXT);
    assert_eq!(f.root.count, 10);
    let libc = &f.root.children["__libc_start_main"];
    let main = &libc.children["main"];
    assert_eq!((libc.count, main.count), (9, 9), "merged prefixes");
    assert_eq!(main.children["leak_into_cache"].count, 6);
    let new = &main.children["operator new(unsigned long)"];
    assert_eq!(new.children["?? 0x409000"].count, 3);
    assert_eq!(f.root.children["(stacks not listed in stacks.txt)"].count, 1);
    assert_eq!(f.depth, 4);
    assert_eq!(bytes_per_sample(STACKS_TXT), Some(16.0 * 4096.0));
    let svg = flame_svg(&f);
    // all, libc, main, leak_into_cache, operator new, ??, not listed.
    assert_eq!(svg.matches("<g class=\"frame\">").count(), 7, "{svg}");
    assert_eq!(svg.matches("<rect").count(), 7);
    assert!(
        svg.contains("<title>main \u{2014} 9 samples (90.0%)</title>"),
        "{svg}"
    );
    // The root at the bottom: its rect is the lowest.
    let y = |name: &str| -> f64 {
        let at = svg.find(&format!("<title>{name} ")).unwrap();
        let rest = &svg[at..];
        let y = &rest[rest.find(" y=\"").unwrap() + 4..];
        y[..y.find('"').unwrap()].parse().unwrap()
    };
    assert!(y("all") > y("__libc_start_main") && y("main") > y("leak_into_cache"));
}

#[test]
fn a_folded_bundle_gets_a_flame_graph_even_when_the_recording_moved() {
    let dir = tmp("folded");
    let b = dir.join("evidence").join("1-2-leaker");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join("stacks.folded"),
        "main;a;b 3\nmain;a;c 1\nmain;d 4\ntorn line\n",
    )
    .unwrap();
    std::fs::write(b.join("stacks.txt"), STACKS_TXT).unwrap();
    let ev = evidence_line(500, 5, "leaker", "rss", "d", "/gone/evidence/1-2-leaker");
    let rec = Recording::from_lines([
        ev.as_str(),
        inc_line(|i| {
            i.ts_ms = 1000;
            victim(i, 5, "leaker", |_| {});
            i.evidence_dir = Some("/gone/evidence/1-2-leaker".into());
        })
        .as_str(),
    ]);
    assert_eq!(rec.skipped_lines(), 0);
    let h = render_html(&dir, &rec);
    assert_eq!(h.matches("class=\"flame\"").count(), 1, "{h}");
    // all, main, a, b, c, d: identical prefixes merged.
    assert_eq!(h.matches("<g class=\"frame\">").count(), 6, "{h}");
    assert!(
        h.contains("<title>a \u{2014} 4 samples (50.0%), ~256.0 KiB touched</title>"),
        "{h}"
    );
    assert!(h.contains("from stacks.folded"));
    assert!(
        h.contains("leak_into_cache+0x1f"),
        "the top stack of stacks.txt, as text"
    );
    let t = render_text(&dir, &rec);
    assert!(t.contains("leak_into_cache+0x1f"), "{t}");
    // Not linked from an incident: a section of its own.
    let rec = Recording::from_lines([ev.as_str()]);
    let h = render_html(&dir, &rec);
    assert!(h.contains("id=\"evidence-1\""), "{h}");
    assert!(h.contains("href=\"#evidence-1\""), "the timeline links it");
    assert_eq!(h.matches("class=\"flame\"").count(), 1, "{h}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_strings_torn_lines_and_bad_bytes_do_not_break_the_report() {
    let mut rec = Recording::default();
    let inc = inc_line(|i| {
        i.ts_ms = 5;
        i.summary = "killed \u{1b}[2J".into();
        i.invoker.comm = "\u{1b}]52;c;aGk=\u{7}".into();
        victim(i, 2, "x\u{202e}y", |v| {
            v.cmdline = "\u{1b}[2J<script>alert(1)</script>".into();
            v.cgroup = "/a\u{9b}".into();
        });
    });
    rec.add_line(inc.as_bytes());
    // Bytes that are not UTF-8 inside a string: decoded lossily.
    let mut bad = summary_line(6, &[(2, "@@", "", 1)]).into_bytes();
    let at = bad.windows(2).position(|w| w == b"@@").unwrap();
    bad[at..at + 2].copy_from_slice(b"\xff\xfe");
    rec.add_line(&bad);
    rec.add_line(b"{\"type\":\"summ");
    rec.add_line(b"\xff\xff\xff\n");
    rec.finish();
    assert_eq!((rec.lines, rec.skipped_lines()), (4, 2));
    assert_eq!(rec.skipped.get(&Skip::NotJson), Some(&2));
    let t = render_text(Path::new("/r"), &rec);
    assert!(
        t.contains("2 of 4 lines skipped (not readable as leaktrace v1 records): 2 not JSON"),
        "{t}"
    );
    for bad in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
        assert!(!t.contains(bad), "{bad:?} in {t}");
    }
    assert!(t.contains("\\x1b[2J"), "made visible: {t}");
    let h = render_html(Path::new("/r"), &rec);
    assert!(!h.contains("<script"), "{h}");
    assert!(!h.contains('\x1b'));
    assert!(h.contains("&lt;script&gt;"));
    assert!(h.contains("2 of 4 lines skipped"), "the page says so too");
}

/// Hostile strings in every string field the page draws (comm, summary,
/// memcg, frames, dir) are escaped; a line whose numbers are strings is
/// not an incident: it is skipped and counted, and none of its strings
/// reach the page.
#[test]
fn hostile_strings_in_charts_flames_and_numbers_are_escaped() {
    let dir = tmp("hostile");
    let b = dir.join("b");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join("stacks.folded"),
        "main;<script>alert(1)</script>;\"><img src=x onerror=alert(1)> 5\n\u{1b}[2J;x\u{202e}y 2\n",
    )
    .unwrap();
    let inc = inc_line(|i| {
        i.ts_ms = 100000;
        i.summary = "</title><script>x</script>".into();
        i.constraint = "memcg".into();
        i.memcg = Some("/a\"><script>".into());
        i.memcg_limit_bytes = Some(1_000_000);
        i.invoker.comm = "<zz1>".into();
        // An incident may lack its victim (the kill was not seen): the
        // page says "?" for its pid.
        i.victim = None;
        i.victim_history = vec![(1, 1), (2, 2)];
        i.growers = vec![GrowerSeries {
            pid: 3,
            comm: "<script>g".into(),
            growth_bytes: 4,
            history: vec![(1, 1), (2, 5)],
        }];
        i.top_grower.as_mut().unwrap().comm = "<script>".into();
        i.victim_was_top_grower = false;
        i.evidence_dir = Some(b.display().to_string());
    });
    // The old test's line: numbers that are strings. Not an incident.
    let mistyped = r#"{"type":"oom_kill","ts_ms":100000,"summary":"<zz4>","invoker":{"pid":"<zz0>","comm":"<zz5>"},"victim":{"pid":"\"><script>","comm":"<svg onload=x>"},"top_grower":{"pid":"<zz2>","comm":"<script>"}}"#;
    let ev = evidence_line(1, 3, "<script>", "<zz6>", "<zz7>", "/x/<script>");
    let mistyped_ev = r#"{"type":"evidence","ts_ms":1,"pid":"<zz3>","comm":"<zz8>","reason":"r","detail":"d","dir":"/x/<zz9>","error":null}"#;
    let rec = Recording::from_lines([ev.as_str(), mistyped_ev, inc.as_str(), mistyped]);
    assert_eq!(rec.skipped_lines(), 2);
    assert_eq!(rec.skipped.get(&Skip::Unreadable("oom_kill")), Some(&1));
    assert_eq!(rec.skipped.get(&Skip::Unreadable("evidence")), Some(&1));
    let h = render_html(&dir, &rec);
    let lower = h.to_ascii_lowercase();
    for bad in [
        "<script",
        "<img",
        "<svg onload",
        "<zz",
        "&lt;zz0",
        "&lt;zz2",
        "&lt;zz3",
        "&lt;zz4",
        "&lt;zz5",
        "&lt;zz8",
        "&lt;zz9",
        "\x1b",
        "\u{202e}",
    ] {
        assert!(!lower.contains(bad), "{bad:?} in {h}");
    }
    assert!(
        h.contains("&lt;zz1&gt;") && h.contains("&lt;zz6&gt;"),
        "escaped strings of typed records: {h}"
    );
    assert!(h.contains("2 of 4 lines skipped"), "{h}");
    assert!(h.contains("1 not readable as its type (oom_kill)"), "{h}");
    assert!(
        h.contains("data-victim-pid=\"?\""),
        "an incident without a victim"
    );
    assert!(h.contains("class=\"flame\""));
    assert!(
        h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the frame is shown, escaped"
    );
    assert!(h.contains("\\x1b[2J"), "control characters made visible");
    let t = render_text(&dir, &rec);
    assert!(!t.contains('\x1b'));
    assert!(
        !t.contains("zz0") && !t.contains("zz4") && !t.contains("zz8"),
        "{t}"
    );
    assert!(t.contains("2 of 4 lines skipped"), "{t}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scales_ticks_and_frames_are_sane() {
    assert_eq!(short_bytes((128u64 << 20) as f64), "128 MiB");
    assert_eq!(short_bytes(1.25 * (1u64 << 30) as f64), "1.25 GiB");
    assert_eq!(short_bytes(0.0), "0 B");
    assert_eq!(byte_step(135.0 * (1u64 << 20) as f64), (32u64 << 20) as f64);
    assert_eq!(time_step(60_000, 8), 10_000);
    assert_eq!(time_step(30 * 86_400_000, 7), 4 * 86_400_000);
    assert_eq!(rel_label(-30_000, 10_000), "\u{2212}30 s");
    assert_eq!(rel_label(-120_000, 60_000), "\u{2212}2 min");
    assert_eq!(strip_offset("f(a+0x1)+0x1f (x.c:1)"), "f(a+0x1)");
    assert_eq!(strip_offset("g+0x2"), "g");
    assert_eq!(txt_frame("  0x00000000004011a0 ??"), Some("?? 0x4011a0".into()));
    assert_eq!(txt_frame("  (symbolization failed: x)"), None);
    let mut f = Flame::default();
    let deep: Vec<String> = (0..1000).map(|i| format!("f{i}")).collect();
    f.add(deep.iter().map(String::as_str), 1);
    assert_eq!(f.depth, FLAME_DEPTH);
}

#[test]
fn python_stacks_are_shown_escaped() {
    let b = tmp("pystacks");
    assert_eq!(python_stacks_html(&b), "");
    std::fs::write(
        b.join("python_stacks.txt"),
        "Thread 1 (idle)\n    fetch_big_file (leak.py:7)\n    <script>x</script> (a.py:1)\n",
    )
    .unwrap();
    let h = python_stacks_html(&b);
    assert!(h.contains("fetch_big_file (leak.py:7)"), "{h}");
    assert!(!h.contains("<script>") && h.contains("&lt;script&gt;"), "{h}");
    std::fs::remove_dir_all(&b).unwrap();
}

/// The report reads what the model writes: an incident made by the
/// assembler from synthetic kernel records, written as its events.jsonl
/// line, is read back by the report's loader as the same `Incident`
/// (every field, before the report trims it), and every fact the text
/// report shows is there. A field renamed in the model is renamed for
/// the report too; a line of another shape is skipped and counted.
#[test]
fn the_report_reads_what_the_model_writes() {
    let inc = crate::model::incident::tests::sample_incident();
    let line = crate::fmt::json_line(&inc).unwrap();
    match parse_line(line.as_bytes()) {
        Ok(Record::Incident(read)) => assert_eq!(*read, inc),
        _ => panic!("not read back as an incident: {line}"),
    }
    let rec = Recording::from_lines([line.as_str()]);
    assert_eq!((rec.lines, rec.skipped_lines()), (1, 0));
    let t = render_text(Path::new("/rec"), &rec);
    let v = inc.victim.as_ref().unwrap();
    let g = inc.top_grower.as_ref().unwrap();
    for want in [
        format!("== incident 1: {}", when(inc.ts_ms)),
        format!("   {}", inc.summary),
        format!(
            "invoker: pid {} ({}), gfp_mask {}, order {}",
            inc.invoker.pid,
            inc.invoker.comm,
            inc.invoker.gfp_mask.as_deref().unwrap(),
            inc.invoker.order.unwrap()
        ),
        format!(
            "victim:  pid {} ({}) `{}` in {}; anon {}, file {}, shmem {}, oom_score_adj {}",
            v.pid,
            v.comm,
            v.cmdline,
            v.cgroup,
            crate::fmt::bytes(v.rss_anon_bytes as f64),
            crate::fmt::bytes(v.rss_file_bytes as f64),
            crate::fmt::bytes(v.rss_shmem_bytes as f64),
            v.oom_score_adj
        ),
        format!(
            "memcg:   {}: usage {} of limit {}",
            inc.memcg.as_deref().unwrap(),
            crate::fmt::bytes(inc.memcg_usage_bytes.unwrap() as f64),
            crate::fmt::bytes(inc.memcg_limit_bytes.unwrap() as f64)
        ),
        format!(
            "right victim: NO - pid {} ({}) grew {} in the {} s before",
            g.pid,
            g.comm,
            crate::fmt::bytes(g.growth_bytes as f64),
            g.window_s
        ),
        format!("stall: {}", inc.stall.diagnosis),
    ] {
        assert!(t.contains(&want), "{want:?} not in {t}");
    }
    let h = render_html(Path::new("/rec"), &rec);
    assert!(h.contains(&format!("data-victim-pid=\"{}\"", v.pid)), "{h}");
    assert!(h.contains(&format!("constraint {}", inc.constraint)), "{h}");
    let freed = crate::fmt::bytes(inc.freed_bytes.unwrap() as f64);
    assert!(h.contains(&format!("the kill freed {freed}")), "{h}");
}

/// Issue 21: `{"ts_ms":0}` and `{"ts_ms":18446744073709551615}` made the
/// timeline's tick loop wrap and the page grow without bound. A record
/// after TS_MAX is skipped and counted; the loops are bounded whatever
/// the span.
#[test]
fn extreme_times_give_a_bounded_page() {
    let rec = Recording::from_lines([r#"{"ts_ms":0}"#, r#"{"ts_ms":18446744073709551615}"#]);
    assert_eq!(rec.skipped.get(&Skip::NoType), Some(&2));
    assert_eq!(rec.ts_max, None);
    assert!(render_html(Path::new("/r"), &rec).len() < 10_000);
    let max = u64::MAX;
    let lines = [
        evidence_line(0, 1, "a", "rss", "d", "/x/1-1-a"),
        evidence_line(max, 1, "a", "rss", "d", "/x/1-1-b"),
        summary_line(max, &[(1, "a", "", 1)]),
        inc_line(|i| i.ts_ms = max),
        inc_line(|i| {
            i.ts_ms = TS_MAX;
            i.victim_history = vec![(0, 1), (max, 2), (TS_MAX, 3)];
            i.memcg_history = vec![(0, 1), (TS_MAX, 2)];
        }),
    ];
    let rec = Recording::from_lines(lines.iter().map(String::as_str));
    assert_eq!(rec.skipped.get(&Skip::BadTime), Some(&3), "{:?}", rec.skipped);
    assert_eq!((rec.ts_min, rec.ts_max), (Some(0), Some(TS_MAX)));
    let h = render_html(Path::new("/r"), &rec);
    assert!(h.len() < 200_000, "{} bytes", h.len());
    assert!(h.matches("class=\"tick x\"").count() <= 16 + 64, "{h}");
    // The widest span and a kill at either end, drawn directly.
    let sp = timeline_svg(0, TS_MAX, &[], &[], &[], &HashMap::new());
    assert!(sp.matches("class=\"tick x\"").count() <= 16, "{sp}");
    for kill in [0, TS_MAX] {
        let p = Plot {
            label: "x".into(),
            pid: None,
            class: "series victim",
            color: "#000",
            points: vec![(0, 1.0), (TS_MAX, 2.0)],
        };
        let c = chart_svg(&[p], Some(1e300), kill);
        assert!(c.len() < 50_000, "{} bytes", c.len());
    }
    assert!(time_step(u64::MAX, 7) > 0);
}

/// Issue 21: one 500 MB line took report to 506 MiB: the loop that
/// skipped an over-long line buffered the rest of it. Its bytes are now
/// thrown away as they are read.
#[test]
fn an_over_long_line_is_skipped_without_being_held() {
    use std::io::Read as _;
    let cap = 1 << 20;
    let data = (&b"a\n"[..])
        .chain(std::io::repeat(b'x').take(64 << 20))
        .chain(&b"\nb\nlast"[..]);
    let mut rd = std::io::BufReader::with_capacity(1 << 16, data);
    let mut line = Vec::new();
    assert_eq!(next_line(&mut rd, &mut line, cap).unwrap(), Some(true));
    assert_eq!(line, b"a\n");
    assert_eq!(next_line(&mut rd, &mut line, cap).unwrap(), Some(false));
    assert!(line.capacity() <= 2 * cap, "held {} bytes", line.capacity());
    assert_eq!(next_line(&mut rd, &mut line, cap).unwrap(), Some(true));
    assert_eq!(line, b"b\n");
    assert_eq!(next_line(&mut rd, &mut line, cap).unwrap(), Some(true));
    assert_eq!(line, b"last", "a last line without its newline");
    assert_eq!(next_line(&mut rd, &mut line, cap).unwrap(), None);
}

/// What the report keeps is bounded: strings cut to the writer's bounds,
/// at most MAX_INCIDENTS incidents and RETAINED_CAP bytes; the rest is
/// counted and said.
#[test]
fn the_memory_budget_is_kept_and_counted() {
    let huge = "y".repeat(16 * TEXT_CAP);
    let one = inc_line(|i| {
        i.summary = huge.clone();
        victim(i, 5, &huge, |v| v.cmdline = huge.clone());
    });
    let mut rec = Recording::default();
    for _ in 0..MAX_INCIDENTS + 1 {
        rec.add_line(one.as_bytes());
    }
    rec.finish();
    assert_eq!(rec.incidents.len(), MAX_INCIDENTS);
    assert_eq!(rec.skipped.get(&Skip::OverBudget), Some(&1));
    let i = &rec.incidents[0].inc;
    assert_eq!(i.summary.len(), TEXT_CAP);
    let v = i.victim.as_ref().unwrap();
    assert_eq!((v.comm.len(), v.cmdline.len()), (COMM_CAP, TEXT_CAP));
    assert!(rec.retained <= RETAINED_CAP);
    let t = render_text(Path::new("/r"), &rec);
    assert!(t.contains("1 over the report's memory budget"), "{}", &t[..500]);

    let detail = "d".repeat(8192);
    let mut rec = Recording::default();
    for k in 0..MAX_EVIDENCE {
        rec.add_line(evidence_line(k as u64, 1, "c", "rss", &detail, "/x").as_bytes());
    }
    rec.finish();
    let over = rec.skipped.get(&Skip::OverBudget).copied().unwrap_or(0);
    assert!(over > 0, "{} kept", rec.evidence.len());
    assert_eq!(rec.evidence.len() as u64 + over, MAX_EVIDENCE as u64);
    assert!(rec.retained <= RETAINED_CAP, "{}", rec.retained);
}

/// Issue 21: events.jsonl as a symlink to /dev/zero grew without bound,
/// and as a FIFO hung the report. Only regular files are read, never
/// through a symlink.
#[test]
fn only_regular_event_files_are_read() {
    let dir = tmp("irregular");
    std::os::unix::fs::symlink("/dev/zero", dir.join("events.jsonl")).unwrap();
    let e = format!("{:#}", load(&dir).err().expect("a symlink is refused"));
    assert!(e.contains("symlink"), "{e}");
    std::fs::remove_file(dir.join("events.jsonl")).unwrap();
    let fifo =
        std::ffi::CString::new(dir.join("events.jsonl").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates a node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let t = std::time::Instant::now();
    let e = format!("{:#}", load(&dir).err().expect("a FIFO is refused"));
    assert!(e.contains("not a regular file"), "{e}");
    assert!(t.elapsed().as_secs() < 5);
    std::fs::remove_file(dir.join("events.jsonl")).unwrap();
    std::fs::write(dir.join("events.jsonl"), "").unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("events.jsonl.1")).unwrap();
    assert!(load(&dir).is_err(), "a rotation is checked too");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 21: a bundle directory that is a symlink out of the recording,
/// or an absolute `dir` elsewhere, got files from outside embedded in the
/// page. Only bundles inside the recording are read.
#[test]
fn bundles_outside_the_recording_are_not_read() {
    let dir = tmp("contained");
    let outside = tmp("contained-outside");
    std::fs::write(
        outside.join("stacks.txt"),
        STACKS_TXT.replace("leak_into_cache", "SECRET_OUTSIDE"),
    )
    .unwrap();
    std::fs::write(outside.join("python_stacks.txt"), "SECRET_OUTSIDE").unwrap();
    std::fs::create_dir_all(dir.join("evidence")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("evidence").join("1-2-link")).unwrap();
    let inside = dir.join("evidence").join("1-3-real");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(inside.join("stacks.txt"), STACKS_TXT).unwrap();
    let ds = [
        dir.join("evidence/1-2-link").display().to_string(),
        outside.display().to_string(),
        "../../../../../../..".to_string() + &outside.display().to_string(),
        inside.display().to_string(),
    ];
    let lines: Vec<String> = ds
        .iter()
        .enumerate()
        .map(|(k, d)| evidence_line(k as u64, 1, "c", "rss", "d", d))
        .collect();
    let rec = Recording::from_lines(lines.iter().map(String::as_str));
    let h = render_html(&dir, &rec);
    assert!(!h.contains("SECRET_OUTSIDE"), "{h}");
    assert_eq!(h.matches(super::text::OUTSIDE).count(), 3, "{h}");
    assert!(h.contains("leak_into_cache"), "the bundle inside is read: {h}");
    let inc = inc_line(|i| i.evidence_dir = Some(ds[1].clone()));
    let t = render_text(&dir, &Recording::from_lines([inc.as_str()]));
    assert!(
        !t.contains("SECRET_OUTSIDE") && t.contains(super::text::OUTSIDE),
        "{t}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
}

/// Issue 21: `report --html OUT` wrote through a symlink planted at OUT,
/// with mode 0644. It now refuses a symlink, and writes 0600 (0640 with
/// --group-readable) by a rename.
#[test]
fn the_page_is_written_private_and_never_through_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp("out");
    let out = dir.join("r.html");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    output::write_private(&out, "one", false).unwrap();
    assert_eq!(
        (std::fs::read_to_string(&out).unwrap().as_str(), mode(&out)),
        ("one", 0o600)
    );
    output::write_private(&out, "two", true).unwrap();
    assert_eq!(
        (std::fs::read_to_string(&out).unwrap().as_str(), mode(&out)),
        ("two", 0o640)
    );
    let target = dir.join("precious");
    std::fs::write(&target, "keep").unwrap();
    let link = dir.join("link.html");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let e = format!("{:#}", output::write_private(&link, "evil", false).unwrap_err());
    assert!(e.contains("symlink"), "{e}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 21 item 8: the report shows every loss the recording shows: the
/// summaries' counters (per run: they restart with the recorder), the
/// incidents cut short, skipped lines, and the gaps when the recorder
/// was not running.
#[test]
fn losses_and_restarts_are_shown() {
    let status = |ts: u64, boot: &str| {
        serde_json::json!({"type": "status", "schema": 1, "ts_ms": ts, "boot_id": boot, "version": "v"})
            .to_string()
    };
    let summary = |ts: u64, lost: u64, dropped: u64| {
        serde_json::json!({"type": "summary", "ts_ms": ts, "processes": [], "dropped_lines": dropped,
            "kernel": {"oom_lost": lost, "sink_drops": [["json", 1]]}})
        .to_string()
    };
    let lines = [
        status(1_000_000, "a"),
        summary(1_001_000, 3, 2),
        summary(1_002_000, 5, 2),
        status(1_100_000, "b"),
        summary(1_101_000, 1, 0),
        inc_line(|i| {
            i.ts_ms = 1_102_000;
            i.lost_events = 4;
            i.closed_early = true;
        }),
        "{torn".into(),
    ];
    let rec = Recording::from_lines(lines.iter().map(String::as_str));
    let t = render_text(Path::new("/r"), &rec);
    for want in [
        "1 of 7 lines skipped",
        "6 OOM report lines lost in the kernel ring (oom_lost)",
        "2 lines the event log could not write",
        "2 events an output fell behind on",
        "4 kernel events lost while incidents were assembled",
        "1 incident(s) closed early",
        "the recorder started 1 more time(s) (1 after a reboot)",
        &format!(
            "recorder started again at {} after a reboot, nothing recorded since {}",
            when(1_100_000),
            when(1_002_000)
        ),
        "lost: 4 kernel events while it was assembled; ",
    ] {
        let want = want.trim_end_matches("; ");
        assert!(t.contains(want), "{want:?} not in {t}");
    }
    let h = render_html(Path::new("/r"), &rec);
    assert!(h.contains("Losses the recording shows"), "{h}");
    assert_eq!(h.matches("class=\"timeline-gap\"").count(), 1, "{h}");
    // Marks where something was lost: the incident closed early, and each
    // summary whose counters rose (the first of each run, and 3 -> 5).
    assert_eq!(h.matches("class=\"timeline-loss\"").count(), 4, "{h}");
    assert!(h.contains("2 OOM report lines lost in the kernel ring"), "the rise 3 -> 5: {h}");
    assert!(h.contains("Orange: something was lost then"), "{h}");
    assert!(h.contains("the recorder was not running"), "{h}");
}

/// Kills while no recorder ran: the kernel's count since boot at the last
/// summary, against the next status line of the same boot, less the
/// incidents recorded after that summary.
#[test]
fn kills_while_no_recorder_ran_are_counted() {
    let status = |ts: u64, boot: &str, kills: u64| {
        serde_json::json!({"type": "status", "schema": 1, "ts_ms": ts, "boot_id": boot, "version": "v",
            "oom_kills_since_boot": kills})
        .to_string()
    };
    let summary = |ts: u64, kills: u64| {
        serde_json::json!({"type": "summary", "ts_ms": ts, "processes": [], "dropped_lines": 0,
            "kernel": {"limits_hit": {"exec_queue": 3, "<b>x": 9}}, "oom_kills_since_boot": kills})
        .to_string()
    };
    let lines = [
        status(1_000_000, "a", 10),
        summary(1_001_000, 12),
        inc_line(|i| i.ts_ms = 1_001_500),
        // 12 at the summary, 1 recorded after it, 20 at the restart: 7 missed.
        status(1_100_000, "a", 20),
        summary(1_101_000, 20),
        // A reboot: the counts are not comparable.
        status(1_200_000, "b", 2),
    ];
    let rec = Recording::from_lines(lines.iter().map(String::as_str));
    let t = render_text(Path::new("/r"), &rec);
    assert!(
        t.contains("7 OOM kill(s) happened while no recorder ran"),
        "{t}"
    );
    // Limit hits: the max within a run, summed over the two runs.
    assert!(t.contains("6 hit(s) of the limit exec_queue"), "{t}");
    assert!(!t.contains("<b>x"), "not a limit's name: {t}");
}
