//! The two tables' columns, their cells, and the filter and sort applied
//! to their rows. Pure: tested without a terminal. Every string a process
//! controls goes through `fmt::term` here, before it can reach a cell.
use std::cmp::Reverse;

use super::{
    layout::{Col, KEEP},
    state::{matches, SortKey},
};
use crate::{
    fmt::{bytes, term},
    host::attribution::{label, Attribution},
    model::sample::{GroupRow, ProcessRow},
};

/// Widest a text cell is made before it is cut (comm, unit): text may be
/// cut, numbers never are.
const TEXT_CAP: u16 = 24;
const COMM_CAP: u16 = 16;

/// The process table; `drop` is the order columns go as the window
/// narrows (lowest first).
pub const PROC_COLS: [Col; 15] = [
    Col {
        title: "PID",
        drop: KEEP,
        flex: None,
    },
    Col {
        title: "COMM",
        drop: KEEP,
        flex: None,
    },
    Col {
        title: "UNIT/CGROUP",
        drop: 8,
        flex: None,
    },
    Col {
        title: "TREND",
        drop: 10,
        flex: None,
    },
    Col {
        title: "GROWTH 10s",
        drop: KEEP,
        flex: None,
    },
    Col {
        title: "GROWTH 60s",
        drop: 9,
        flex: None,
    },
    Col {
        title: "RSS",
        drop: KEEP,
        flex: None,
    },
    Col {
        title: "PSS",
        drop: 6,
        flex: None,
    },
    Col {
        title: "USS",
        drop: 5,
        flex: None,
    },
    Col {
        title: "ANON",
        drop: 7,
        flex: None,
    },
    Col {
        title: "FILE",
        drop: 4,
        flex: None,
    },
    Col {
        title: "SHMEM",
        drop: 3,
        flex: None,
    },
    Col {
        title: "SWAP",
        drop: 2,
        flex: None,
    },
    Col {
        title: "FLT/s",
        drop: 1,
        flex: None,
    },
    Col {
        title: "CMDLINE",
        drop: 0,
        flex: Some(10),
    },
];

pub const GROUP_COLS: [Col; 10] = [
    Col {
        title: "LEADER",
        drop: KEEP,
        flex: None,
    },
    Col {
        title: "COMM",
        drop: KEEP,
        flex: None,
    },
    Col {
        title: "MEMBERS",
        drop: 6,
        flex: None,
    },
    Col {
        title: "RSS SUM",
        drop: 2,
        flex: None,
    },
    Col {
        title: "PSS",
        drop: KEEP,
        flex: None,
    },
    Col {
        title: "USS",
        drop: 3,
        flex: None,
    },
    Col {
        title: "GROWTH 10s",
        drop: KEEP,
        flex: None,
    },
    Col {
        title: "GROWTH 60s",
        drop: 4,
        flex: None,
    },
    Col {
        title: "TREND",
        drop: 5,
        flex: None,
    },
    Col {
        title: "EXE",
        drop: 0,
        flex: Some(10),
    },
];

/// The column a sort order reads, kept on screen while it sorts.
pub fn proc_sort_col(k: SortKey) -> usize {
    match k {
        SortKey::Growth => 4,
        SortKey::Rss => 6,
        SortKey::Pss => 7,
        SortKey::Uss => 8,
        SortKey::Name => 1,
        SortKey::Pid => 0,
    }
}

pub fn group_sort_col(k: SortKey) -> usize {
    match k {
        SortKey::Growth => 6,
        SortKey::Rss => 3,
        SortKey::Pss => 4,
        SortKey::Uss => 5,
        SortKey::Name => 1,
        SortKey::Pid => 0,
    }
}

/// A rate with its unit even when it is nil ("0 B/s", not "0").
pub fn rate(v: f64) -> String {
    let r = crate::fmt::rate(v);
    if r == "0" {
        "0 B/s".into()
    } else {
        r
    }
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |b| bytes(b as f64))
}

/// The unit, container or pod when the cgroup path names one, else the
/// path; escaped.
pub fn where_of(a: &Attribution, cgroup: &str) -> String {
    label(a).map_or_else(|| term(cgroup).into_owned(), |l| term(&l).into_owned())
}

pub fn proc_cells(p: &ProcessRow) -> Vec<String> {
    vec![
        p.pid.to_string(),
        term(&p.comm).into_owned(),
        where_of(&p.attribution, &p.cgroup),
        p.trend.as_str().to_string(),
        rate(p.growth_bytes_per_sec),
        rate(p.growth_bytes_per_sec_long),
        bytes(p.rss_bytes as f64),
        opt_bytes(p.pss_bytes),
        opt_bytes(p.uss_bytes),
        bytes(p.rss_anon_bytes as f64),
        bytes(p.rss_file_bytes as f64),
        bytes(p.rss_shmem_bytes as f64),
        bytes(p.swap_bytes as f64),
        format!("{:.0}", p.faults_per_sec),
        term(&p.cmdline).into_owned(),
    ]
}

pub fn group_cells(g: &GroupRow) -> Vec<String> {
    vec![
        g.leader_pid.to_string(),
        term(&g.comm).into_owned(),
        g.members.to_string(),
        bytes(g.rss_bytes as f64),
        opt_bytes(g.pss_bytes),
        opt_bytes(g.uss_bytes),
        rate(g.growth_bytes_per_sec),
        rate(g.growth_bytes_per_sec_long),
        g.trend.as_str().to_string(),
        term(&g.exe).into_owned(),
    ]
}

/// The widest cell of each column over `rows`, text columns capped.
pub fn content_widths(cols: &[Col], rows: &[Vec<String>]) -> Vec<u16> {
    (0..cols.len())
        .map(|i| {
            let w = rows
                .iter()
                .map(|r| super::layout::width(&r[i]))
                .max()
                .unwrap_or(0);
            match cols[i].title {
                "COMM" => w.min(COMM_CAP),
                "UNIT/CGROUP" => w.min(TEXT_CAP),
                _ => w,
            }
        })
        .collect()
}

fn attribution_fields(a: &Attribution) -> [&str; 5] {
    fn f(o: &Option<String>) -> &str {
        o.as_deref().unwrap_or("")
    }
    [
        f(&a.unit),
        f(&a.slice),
        f(&a.runtime),
        f(&a.container_id),
        f(&a.pod_uid),
    ]
}

/// The filter on name, unit, container or cgroup.
pub fn proc_matches(filter: &str, p: &ProcessRow) -> bool {
    let a = attribution_fields(&p.attribution);
    matches(filter, &[&p.comm, &p.cgroup, a[0], a[1], a[2], a[3], a[4]])
}

pub fn group_matches(filter: &str, g: &GroupRow) -> bool {
    let a = attribution_fields(&g.attribution);
    matches(filter, &[&g.comm, &g.exe, a[0], a[1], a[2], a[3], a[4]])
}

/// Largest first for sizes and growth (unknown last), A to Z for names,
/// lowest first for pids; ties by pid.
pub fn sort_processes(rows: &mut [&ProcessRow], k: SortKey) {
    match k {
        SortKey::Growth => rows.sort_by(|a, b| {
            b.growth_bytes_per_sec
                .total_cmp(&a.growth_bytes_per_sec)
                .then(a.pid.cmp(&b.pid))
        }),
        SortKey::Rss => rows.sort_by_key(|p| (Reverse(p.rss_bytes), p.pid)),
        SortKey::Pss => rows.sort_by_key(|p| (Reverse(p.pss_bytes), p.pid)),
        SortKey::Uss => rows.sort_by_key(|p| (Reverse(p.uss_bytes), p.pid)),
        SortKey::Name => rows.sort_by(|a, b| a.comm.cmp(&b.comm).then(a.pid.cmp(&b.pid))),
        SortKey::Pid => rows.sort_by_key(|p| p.pid),
    }
}

pub fn sort_groups(rows: &mut [&GroupRow], k: SortKey) {
    match k {
        SortKey::Growth => rows.sort_by(|a, b| {
            b.growth_bytes_per_sec
                .total_cmp(&a.growth_bytes_per_sec)
                .then(a.leader_pid.cmp(&b.leader_pid))
        }),
        SortKey::Rss => rows.sort_by_key(|g| (Reverse(g.rss_bytes), g.leader_pid)),
        SortKey::Pss => rows.sort_by_key(|g| (Reverse(g.pss_bytes), g.leader_pid)),
        SortKey::Uss => rows.sort_by_key(|g| (Reverse(g.uss_bytes), g.leader_pid)),
        SortKey::Name => rows.sort_by(|a, b| a.comm.cmp(&b.comm).then(a.leader_pid.cmp(&b.leader_pid))),
        SortKey::Pid => rows.sort_by_key(|g| g.leader_pid),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::trend::Trend;

    pub fn row(pid: u32, comm: &str, rss_mib: u64, growth: f64, pss: Option<u64>) -> ProcessRow {
        ProcessRow {
            attribution: Default::default(),
            pid,
            ppid: 1,
            comm: comm.into(),
            cmdline: format!("{comm} --serve"),
            exe: format!("/usr/bin/{comm}"),
            cgroup: "/system.slice/x.service".into(),
            cgroup_version: 1,
            memcg_id: 0,
            threads: 1,
            rss_bytes: rss_mib << 20,
            rss_anon_bytes: rss_mib << 19,
            rss_file_bytes: rss_mib << 19,
            rss_shmem_bytes: 0,
            swap_bytes: 0,
            peak_rss_bytes: rss_mib << 20,
            growth_bytes_per_sec: growth,
            growth_bytes_per_sec_long: growth / 2.0,
            growth_of: "rss",
            pss_bytes: pss,
            uss_bytes: pss.map(|p| p / 2),
            uss_growth_bytes_per_sec: None,
            faults_per_sec: 12.0,
            forks_per_sec: 0.0,
            reclaim_stall_ms_per_sec: 0.0,
            trend: Trend::Growing,
            oom_score_adj: 0,
            source: "kernel",
            flagged: false,
        }
    }

    #[test]
    fn each_sort_orders_as_stated() {
        let rows = [
            row(30, "b", 10, 5.0, Some(7)),
            row(10, "c", 30, 1.0, None),
            row(20, "a", 20, 9.0, Some(9)),
        ];
        let order = |k| {
            let mut v: Vec<&ProcessRow> = rows.iter().collect();
            sort_processes(&mut v, k);
            v.iter().map(|p| p.pid).collect::<Vec<_>>()
        };
        assert_eq!(order(SortKey::Growth), [20, 30, 10]);
        assert_eq!(order(SortKey::Rss), [10, 20, 30]);
        assert_eq!(order(SortKey::Pss), [20, 30, 10], "unknown PSS last");
        assert_eq!(order(SortKey::Name), [20, 30, 10]);
        assert_eq!(order(SortKey::Pid), [10, 20, 30]);
    }

    #[test]
    fn the_filter_reads_name_unit_container_and_cgroup_not_other_fields() {
        let mut p = row(1, "nginx", 1, 0.0, None);
        p.attribution.container_id = Some("ab".repeat(32));
        assert!(proc_matches("NGI", &p));
        assert!(proc_matches("x.service", &p), "cgroup path");
        assert!(proc_matches("abab", &p), "container id");
        assert!(!proc_matches("--serve", &p), "not the cmdline");
    }

    #[test]
    fn hostile_names_are_escaped_in_cells() {
        let mut p = row(1, "\u{1b}]0;pwn\u{7}", 1, 0.0, None);
        p.cmdline = "a\u{9b}31m\u{202e}b".into();
        p.cgroup = "/x\ny".into();
        let cells = proc_cells(&p);
        for c in &cells {
            assert!(!c.chars().any(|c| c.is_control() || c == '\u{202e}'), "{c:?}");
        }
        assert_eq!(cells[1], "\\x1b]0;pwn\\x07");
        assert_eq!(cells[2], "/x\\x0ay");
    }

    #[test]
    fn every_number_cell_carries_its_unit() {
        let cells = proc_cells(&row(4194304, "x", 163, 5.0 * 1048576.0, Some(1 << 30)));
        assert_eq!(cells[4], "+5.0 MiB/s");
        assert_eq!(proc_cells(&row(1, "x", 1, 0.2, None))[4], "0 B/s");
        assert_eq!(cells[6], "163.0 MiB");
        assert_eq!(cells[7], "1.0 GiB");
        let w = content_widths(&PROC_COLS, &[cells]);
        assert_eq!(w[0], 7);
        assert_eq!(w[6], 9);
    }
}
