//! The live view in a real terminal: `leaktrace watch` inside a tmux pane
//! (80x24, the common server pane, and 200x50), driven with `send-keys`
//! and read back with `capture-pane`. Run through `cargo xtask test`
//! (serially, as root; xtask installs tmux when missing). Each test
//! kills its tmux server, its helpers and its memcg on drop, also when
//! it fails.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

/// A tmux server of its own (-L), with one session running the live
/// view. Drop quits the view, then kills the server.
struct Tmux {
    socket: String,
    tmux: std::path::PathBuf,
}

impl Tmux {
    fn start(tag: &str, cols: u16, rows: u16, extra: &str) -> Self {
        require_root();
        let tmux = ensure_package("tmux", "tmux");
        let t = Self {
            socket: format!("leaktrace-test-{}-{tag}", std::process::id()),
            tmux,
        };
        let cmd = format!("{} watch --interval 1 {extra}", leaktrace_bin().display());
        t.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "lt",
            "-x",
            &cols.to_string(),
        ])
        .args(["-y", &rows.to_string(), &cmd])
        // The pane stays when leaktrace exits: a test sees that it died,
        // and what it printed last.
        .args([";", "set-option", "-t", "lt", "remain-on-exit", "on"])
        .status()
        .ok()
        .filter(|s| s.success())
        .unwrap_or_else(|| panic!("tmux new-session failed"));
        let size = t.output(&[
            "display-message",
            "-p",
            "-t",
            "lt",
            "#{pane_width}x#{pane_height}",
        ]);
        assert_eq!(size.trim(), format!("{cols}x{rows}"), "the pane's size");
        t.wait(Duration::from_secs(30), "the first sample", |s| {
            s.contains("processes (")
        });
        t
    }

    fn run(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.tmux);
        c.args(["-L", &self.socket]).args(args);
        c
    }

    fn output(&self, args: &[&str]) -> String {
        let o = self.run(args).output().expect("running tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Sends tmux key names ("Enter", "Escape", "Tab", "F1") or text.
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = self
                .run(&["send-keys", "-t", "lt", k])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "tmux send-keys {k}");
            // Each key on its own read: an Escape followed at once by a
            // key would read as Alt+key.
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn text(&self, s: &str) {
        let ok = self
            .run(&["send-keys", "-t", "lt", "-l", s])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tmux send-keys -l {s}");
    }

    fn screen(&self) -> String {
        self.output(&["capture-pane", "-p", "-t", "lt"])
    }

    /// Waits until the screen passes `f`; returns it.
    fn wait(&self, timeout: Duration, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            let dead = self.output(&["display-message", "-p", "-t", "lt", "#{pane_dead}"]);
            assert!(
                dead.trim() != "1",
                "the live view exited while waiting for {what}:\n{s}"
            );
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // q first, so that leaktrace detaches its programs itself.
        let _ = self
            .run(&["send-keys", "-t", "lt", "q"])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let dead = self
                .run(&["display-message", "-p", "-t", "lt", "#{pane_dead}"])
                .stderr(Stdio::null())
                .output();
            match dead {
                Ok(o) if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() != "1" => {}
                _ => break,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.run(&["kill-server"]).stderr(Stdio::null()).status();
    }
}

/// The rows of the table whose header line starts with `first` ("PID" or
/// "LEADER"), cut at the header's column starts: (titles, rows of cells).
fn table(screen: &str, first: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let lines: Vec<&str> = screen.lines().collect();
    let h = lines
        .iter()
        .position(|l| l.starts_with(&format!("{first} ")))
        .unwrap_or_else(|| panic!("no {first} header on the screen:\n{screen}"));
    let header: Vec<char> = lines[h].chars().collect();
    // Column starts: a non-space after a space (titles hold one space at
    // most, "GROWTH 10s", so two spaces or more part columns... titles
    // are left-aligned to their column, so a start is a non-space after
    // two spaces, or after one space that ends a cell).
    let mut starts = vec![0];
    let mut titles = Vec::new();
    let mut i = 0;
    while i < header.len() {
        if i > 0 && header[i] != ' ' && header[i - 1] == ' ' && !is_title_continuation(&header, i) {
            starts.push(i);
        }
        i += 1;
    }
    for (n, s) in starts.iter().enumerate() {
        let e = starts.get(n + 1).copied().unwrap_or(header.len());
        titles.push(header[*s..e].iter().collect::<String>().trim().to_string());
    }
    let mut rows = Vec::new();
    for l in &lines[h + 1..] {
        if l.trim().is_empty() || l.contains("─") {
            break;
        }
        let c: Vec<char> = l.chars().collect();
        let cells = starts
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let e = starts.get(n + 1).copied().unwrap_or(c.len()).min(c.len());
                c.get(*s..e)
                    .map_or(String::new(), |x| x.iter().collect::<String>().trim().to_string())
            })
            .collect();
        rows.push(cells);
    }
    (titles, rows)
}

/// "10s"/"60s" after "GROWTH ", "SUM" after "RSS ": the second word of a
/// two-word title.
fn is_title_continuation(h: &[char], i: usize) -> bool {
    let before: String = h[..i].iter().collect();
    let after: String = h[i..].iter().take(3).collect();
    (before.ends_with("GROWTH ") && (after == "10s" || after == "60s"))
        || (before.ends_with("RSS ") && after == "SUM")
}

fn col<'a>(t: &'a (Vec<String>, Vec<Vec<String>>), title: &str) -> Vec<&'a str> {
    let i =
        t.0.iter()
            .position(|x| x == title)
            .unwrap_or_else(|| panic!("no column {title} in {:?}", t.0));
    t.1.iter().map(|r| r[i].as_str()).collect()
}

/// "163.3 MiB" or "+5.0 MiB/s" in bytes; None if it is not a number with
/// its unit.
fn parse_bytes(s: &str) -> Option<f64> {
    let s = s.strip_suffix("/s").unwrap_or(s);
    let (num, unit) = s.split_once(' ')?;
    let m = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let n: f64 = num.trim_start_matches('+').parse().ok()?;
    Some(n * m)
}

/// A helper renamed to `name` (prctl), holding `mib` MiB.
fn named_helper(name: &[u8], mib: u32) -> Proc {
    let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
    let mut p =
        Proc::spawn(Command::new(HELPER).args(["--comm", &hex, "step", &mib.to_string(), "0", "300"]));
    p.wait_line("ready", Duration::from_secs(10));
    p
}

#[test]
fn help_screen_lists_every_key_and_closes() {
    let t = Tmux::start("help", 80, 24, "");
    for open in ["?", "h", "F1"] {
        t.keys(&[open]);
        let s = t.wait(Duration::from_secs(5), "the help screen", |s| {
            s.contains("help: any key closes")
        });
        for k in [
            "?  h  F1",
            "s    ",
            "/    ",
            "Space",
            "Tab  Shift-Tab",
            "Enter",
            "Esc",
            "Ctrl-C",
            "q    ",
        ] {
            assert!(
                s.contains(k),
                "{k:?} not on the help screen (opened with {open}):\n{s}"
            );
        }
        assert!(s.contains("growth > rss > pss > uss > name > pid"), "{s}");
        t.keys(&["Escape"]);
        t.wait(Duration::from_secs(5), "the help screen to close", |s| {
            !s.contains("help: any key closes") && s.contains("processes (")
        });
    }
}

#[test]
fn s_cycles_the_sort_and_the_rows_follow_it() {
    let t = Tmux::start("sort", 200, 50, "");
    t.wait(Duration::from_secs(5), "sort: growth in the header", |s| {
        s.contains("sort: growth")
    });
    t.keys(&["s"]);
    let s = t.wait(Duration::from_secs(5), "sort: rss", |s| {
        s.contains("sort: rss") && s.contains("by rss")
    });
    let tab = table(&s, "PID");
    let rss: Vec<f64> = col(&tab, "RSS")
        .iter()
        .map(|c| parse_bytes(c).unwrap_or_else(|| panic!("RSS cell {c:?}")))
        .collect();
    assert!(rss.len() >= 5, "rows: {rss:?}\n{s}");
    assert!(
        rss.windows(2).all(|w| w[0] >= w[1]),
        "RSS not descending: {rss:?}\n{s}"
    );
    t.keys(&["s", "s", "s"]);
    let s = t.wait(Duration::from_secs(5), "sort: name", |s| s.contains("sort: name"));
    let tab = table(&s, "PID");
    let names = col(&tab, "COMM");
    assert!(
        names.windows(2).all(|w| w[0] <= w[1]),
        "COMM not A to Z: {names:?}\n{s}"
    );
    t.keys(&["s"]);
    let s = t.wait(Duration::from_secs(5), "sort: pid", |s| s.contains("sort: pid"));
    let tab = table(&s, "PID");
    let pids: Vec<u32> = col(&tab, "PID").iter().map(|c| c.parse().unwrap()).collect();
    assert!(
        pids.windows(2).all(|w| w[0] < w[1]),
        "PIDs not ascending: {pids:?}\n{s}"
    );
    t.keys(&["s"]);
    t.wait(Duration::from_secs(5), "back to sort: growth", |s| {
        s.contains("sort: growth")
    });
}

#[test]
fn a_filter_keeps_the_matching_rows_and_escapes_a_hostile_name() {
    let tag = format!("ltv{}", std::process::id() % 10000);
    // The name holds ESC [7m (reverse video): it must show as text.
    let mut name = tag.clone().into_bytes();
    name.extend_from_slice(b"\x1b[7m");
    let h = named_helper(&name, 16);
    let t = Tmux::start("filter", 80, 24, "");
    t.keys(&["/"]);
    t.text(&tag);
    t.keys(&["Enter"]);
    let s = t.wait(Duration::from_secs(10), "only the helper's row", |s| {
        s.contains(&format!("filter: {tag}"))
            && s.contains("processes (1)")
            && s.contains(&h.pid().to_string())
    });
    let tab = table(&s, "PID");
    assert_eq!(col(&tab, "PID"), [h.pid().to_string()], "{s}");
    assert_eq!(
        col(&tab, "COMM"),
        [format!("{tag}\\x1b[7m")],
        "the ESC is shown escaped:\n{s}"
    );
    // Esc clears the filter: every process is back.
    t.keys(&["Escape"]);
    let s = t.wait(Duration::from_secs(5), "the filter cleared", |s| {
        !s.contains("filter:")
    });
    assert!(table(&s, "PID").1.len() > 1, "{s}");
}

#[test]
fn enter_opens_a_process_with_its_history_memory_group_cgroup_and_bundles() {
    let tag = format!("ltd{}", std::process::id() % 10000);
    let h = named_helper(tag.as_bytes(), 32);
    let t = Tmux::start("detail", 80, 24, "");
    t.keys(&["/"]);
    t.text(&tag);
    t.keys(&["Enter"]);
    t.wait(Duration::from_secs(10), "the helper's row", |s| {
        s.contains("processes (1)")
    });
    // A few samples of history for the sparkline.
    std::thread::sleep(Duration::from_secs(3));
    t.keys(&["Enter"]);
    let s = t.wait(Duration::from_secs(5), "the process detail", |s| {
        s.contains(&format!("process {}: Esc closes", h.pid()))
    });
    for want in [
        format!("pid {}  {tag}", h.pid()),
        "RSS history, last".into(),
        "Memory by kind".into(),
        "anon ".into(),
    ] {
        assert!(s.contains(&want), "{want:?} not in the detail:\n{s}");
    }
    let spark = s.lines().find(|l| l.contains('▁') || l.contains('█'));
    assert!(spark.is_some(), "no sparkline:\n{s}");
    // The rest is below the fold at 24 rows: scroll.
    t.keys(&["PageDown", "PageDown"]);
    let s = t.wait(Duration::from_secs(5), "the cgroup and bundles", |s| {
        s.contains("Evidence bundles")
    });
    for want in ["Cgroup (v", "Group:"] {
        assert!(s.contains(want), "{want:?} not in the detail:\n{s}");
    }
    t.keys(&["Escape"]);
    t.wait(Duration::from_secs(5), "the list again", |s| {
        s.contains("processes (1)")
    });
}

#[test]
fn enter_opens_an_oom_incident_with_its_summary_verdict_and_stall() {
    let cg = MemCg::new("liveview", 64 * MB);
    let t = Tmux::start("incident", 80, 24, "");
    let mut h = Proc::spawn(&mut cg.command(&[HELPER, "grow", "32", "8", "5"]));
    let pid = h.pid();
    let st = h.wait();
    assert!(
        !st.success(),
        "the helper must have been OOM-killed, exited with {st}"
    );
    assert_eq!(cg.oom_kills(), 1);
    // Only this test's cgroup: another OOM on the host cannot be opened
    // by mistake.
    let name = cg.path.trim_start_matches('/').to_string();
    t.keys(&["/"]);
    t.text(&name);
    t.keys(&["Enter"]);
    t.wait(Duration::from_secs(20), "the OOM kill in the list", |s| {
        s.contains("OOM kills: ")
    });
    t.keys(&["Tab", "Tab"]);
    t.wait(Duration::from_secs(5), "the incidents focused", |s| {
        s.contains("▶ OOM kills")
    });
    t.keys(&["Enter"]);
    let s = t.wait(Duration::from_secs(5), "the incident detail", |s| {
        s.contains("Esc closes") && s.contains("OOM kill #")
    });
    assert!(s.contains("Summary"), "{s}");
    // The whole summary, the verdict and the stall, page by page.
    let mut all = s.clone();
    for _ in 0..12 {
        t.keys(&["PageDown"]);
        all.push_str(&t.screen());
    }
    for want in [
        "Verdict".to_string(),
        format!("victim {pid} lt-helper"),
        "Reasons".into(),
        format!("memcg {}", cg.path),
        "Stall".into(),
        "stalled tasks".into(),
        "Kernel report:".into(),
        format!("Killed process {pid} (lt-helper)"),
    ] {
        assert!(all.contains(&want), "{want:?} not in the incident detail:\n{all}");
    }
}

#[test]
fn every_number_keeps_its_unit_at_80_columns_and_full_width() {
    // A grower named ltunits: 4 MiB/s for two minutes (it prints
    // `ready` only when done: not waited for).
    let hex: String = b"ltunits".iter().map(|b| format!("{b:02x}")).collect();
    let g = Proc::spawn(Command::new(HELPER).args(["--comm", &hex, "grow", "4", "120", "0"]));
    for (cols, rows) in [(80u16, 24u16), (200, 50)] {
        let t = Tmux::start(&format!("units{cols}"), cols, rows, "");
        // Growth needs two samples or more.
        std::thread::sleep(Duration::from_secs(4));
        let s = t.screen();
        let tab = table(&s, "PID");
        assert!(tab.1.len() >= 3, "{s}");
        let mut numbers = 0;
        for title in [
            "GROWTH 10s",
            "GROWTH 60s",
            "RSS",
            "PSS",
            "USS",
            "ANON",
            "FILE",
            "SHMEM",
            "SWAP",
        ] {
            let Some(i) = tab.0.iter().position(|x| x == title) else {
                assert!(
                    s.contains("hidden:") && s.contains(title),
                    "{title} neither shown nor listed as hidden:\n{s}"
                );
                continue;
            };
            for r in &tab.1 {
                let c = &r[i];
                let growth = title.starts_with("GROWTH");
                // A number with its unit, or "-" for a PSS/USS not read.
                let ok = parse_bytes(c).is_some() && (!growth || c.ends_with("/s"))
                    || (matches!(title, "PSS" | "USS") && c == "-");
                assert!(ok, "{title} cell {c:?} has no unit at {cols} columns:\n{s}");
                numbers += 1;
            }
        }
        assert!(numbers >= 3 * 3, "{s}");
        // The grower's row, filtered: its pid whole, its growth with its
        // unit.
        t.keys(&["/"]);
        t.text("ltunits");
        t.keys(&["Enter"]);
        let f = t.wait(Duration::from_secs(10), "the grower's row", |s| {
            s.contains("processes (1)")
        });
        let one = table(&f, "PID");
        assert_eq!(col(&one, "PID"), [g.pid().to_string()], "pid cut?\n{f}");
        let growth = col(&one, "GROWTH 10s")[0];
        assert!(
            growth.starts_with('+') && (growth.ends_with(" MiB/s") || growth.ends_with(" KiB/s")),
            "the grower's growth {growth:?}:\n{f}"
        );
        t.keys(&["Escape"]);
        if cols == 80 {
            let hidden = s
                .lines()
                .find(|l| l.starts_with("hidden:"))
                .unwrap_or_else(|| panic!("{s}"));
            // "hidden: A B C; groups: X Y": the processes' part.
            let procs = hidden.split(';').next().unwrap_or_default();
            assert!(procs.contains("CMDLINE"), "{s}");
            for shown in &tab.0 {
                assert!(
                    !procs.contains(&format!(" {shown}")),
                    "{shown} shown and hidden: {hidden}"
                );
            }
        } else {
            assert!(s.contains("hidden: none"), "{s}");
            assert_eq!(tab.0.len(), 15, "every process column at 200: {:?}", tab.0);
        }
    }
}

#[test]
fn space_freezes_the_screen_and_resumes_it() {
    let hex: String = b"ltpause".iter().map(|b| format!("{b:02x}")).collect();
    let g = Proc::spawn(Command::new(HELPER).args(["--comm", &hex, "grow", "8", "60", "0"]));
    let t = Tmux::start("pause", 80, 24, "");
    t.keys(&["/"]);
    t.text("ltpause");
    t.keys(&["Enter"]);
    let pid = g.pid().to_string();
    let rss = |s: &str| col(&table(s, "PID"), "RSS").first().map(|c| c.to_string());
    t.wait(Duration::from_secs(10), "the grower's row", |s| {
        s.contains("processes (1)") && s.contains(&pid)
    });
    t.keys(&[" "]);
    let a = t.wait(Duration::from_secs(5), "PAUSED in the header", |s| {
        s.contains("PAUSED")
    });
    // It grows 8 MiB/s: three samples later its RSS has moved, but not on
    // a paused screen.
    std::thread::sleep(Duration::from_secs(3));
    let b = t.screen();
    assert_eq!(rss(&a), rss(&b), "the paused screen changed:\n{a}\n{b}");
    t.keys(&[" "]);
    let first = rss(&a);
    t.wait(Duration::from_secs(5), "the screen to move again", |s| {
        !s.contains("PAUSED") && rss(s).is_some() && rss(s) != first
    });
}

/// The selection stays on its process when the rows reorder under it: the
/// selected helper (8 MiB, first by RSS) is overtaken by a second one that
/// allocates 32 MiB later, and the highlighted row is still the first
/// helper, now on the second row.
#[test]
fn the_selection_follows_its_process_when_the_rows_reorder() {
    let tag = format!("ltf{}", std::process::id() % 10000);
    let a = named_helper(format!("{tag}a").as_bytes(), 8);
    let hex: String = format!("{tag}b").bytes().map(|b| format!("{b:02x}")).collect();
    // Allocates 32 MiB 20 s after it starts: after the selection is made.
    let b = Proc::spawn(Command::new(HELPER).args(["--comm", &hex, "step", "32", "20", "300"]));
    let t = Tmux::start("follow", 200, 50, "");
    t.keys(&["/"]);
    t.text(&tag);
    t.keys(&["Enter", "s"]);
    let (pa, pb) = (a.pid().to_string(), b.pid().to_string());
    // The highlighted row (reverse video in capture-pane -e) and the
    // first row of the table.
    let highlighted = |t: &Tmux| -> Option<String> {
        let raw = t.output(&["capture-pane", "-p", "-e", "-t", "lt"]);
        raw.lines()
            .find(|l| reverse_video(l))
            .and_then(|l| strip_sgr(l).split_whitespace().next().map(str::to_string))
    };
    let first_pid = |s: &str| col(&table(s, "PID"), "PID").first().map(|c| c.to_string());
    let s = t.wait(Duration::from_secs(10), "the two helpers, by RSS", |s| {
        s.contains("processes (2)") && s.contains("sort: rss") && first_pid(s).as_deref() == Some(&pa)
    });
    assert_eq!(
        highlighted(&t).as_deref(),
        Some(pa.as_str()),
        "the first row is selected:\n{s}\n{:?}",
        t.output(&["capture-pane", "-p", "-e", "-t", "lt"])
    );
    let s = t.wait(Duration::from_secs(30), "the second helper to overtake", |s| {
        first_pid(s).as_deref() == Some(&pb)
    });
    // Give the highlight a draw to catch up, then read it.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        highlighted(&t).as_deref(),
        Some(pa.as_str()),
        "the selection left {pa} when {pb} moved above it:\n{s}"
    );
}

/// The SGR sequences at the start of a capture-pane -e line turn on
/// reverse video (parameter 7: `ESC[7m`, `ESC[0;7m`).
fn reverse_video(line: &str) -> bool {
    let mut rest = line;
    while let Some(r) = rest.strip_prefix("\x1b[") {
        let Some(end) = r.find('m') else { return false };
        if r[..end].split(';').any(|p| p == "7") {
            return true;
        }
        rest = &r[end + 1..];
    }
    false
}

/// The line without its SGR sequences.
fn strip_sgr(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("\x1b[") {
        out.push_str(&rest[..i]);
        rest = match rest[i + 2..].find('m') {
            Some(e) => &rest[i + 2 + e + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}
