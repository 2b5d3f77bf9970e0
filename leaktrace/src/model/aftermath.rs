//! What an OOM kill set off: the processes around the victim (its parent
//! and ancestors, its siblings, its memcg) that exited soon after it. The
//! kernel sends their exit records (`exit_reason::AFTER_OOM_KILL`, for
//! `AFTER_KILL_NS` after a victim dies); this keeps the recent ones and
//! says which followed which victim.
use std::collections::VecDeque;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kernel::exits::ExitSample;

/// Exit records kept (victims and exits around them).
pub const KEPT: usize = 512;
/// Exits up to this long after the victim's count as set off by the kill.
pub const WINDOW_NS: u64 = leaktrace_common::AFTER_KILL_NS;

/// One exit that followed a kill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AfterExit {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// "parent", "sibling", "same memcg" or "ancestor".
    pub relation: String,
    /// Seconds after the victim's death.
    pub after_s: f64,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, when one did (e.g. "SIGTERM").
    pub signal: Option<String>,
}

#[derive(Clone, Copy)]
struct Kept {
    pid: u32,
    ppid: u32,
    comm: [u8; 16],
    exit_ns: u64,
    memcg_id: u64,
    status: u32,
    victim: bool,
}

#[derive(Default)]
pub struct Aftermath {
    recent: VecDeque<Kept>,
}

/// A signal's name (the common ones), else its number.
fn signal_name(n: u32) -> String {
    let name = match n {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return format!("signal {n}"),
    };
    name.into()
}

impl Aftermath {
    pub fn record(&mut self, e: &ExitSample) {
        if !(e.oom_victim || e.after_kill) {
            return;
        }
        if self.recent.len() == KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(Kept {
            pid: e.tgid,
            ppid: e.ppid,
            comm: e.comm,
            exit_ns: e.exit_ns,
            memcg_id: e.memcg_id,
            status: e.exit_code,
            victim: e.oom_victim,
        });
    }

    /// The exits that followed the death of victim `pid`, in order.
    pub fn after(&self, pid: u32) -> Vec<AfterExit> {
        let Some(v) = self
            .recent
            .iter()
            .rev()
            .find(|k| k.victim && k.pid == pid)
            .copied()
        else {
            return Vec::new();
        };
        self.recent
            .iter()
            .filter(|k| !k.victim && k.exit_ns >= v.exit_ns && k.exit_ns - v.exit_ns <= WINDOW_NS)
            .map(|k| {
                let relation = if k.pid == v.ppid {
                    "parent"
                } else if k.ppid == v.ppid {
                    "sibling"
                } else if k.memcg_id == v.memcg_id && v.memcg_id != 0 {
                    "same memcg"
                } else {
                    "ancestor"
                };
                let sig = k.status & 0x7f;
                AfterExit {
                    pid: k.pid,
                    ppid: k.ppid,
                    comm: crate::fmt::comm_str(&k.comm),
                    relation: relation.into(),
                    after_s: (k.exit_ns - v.exit_ns) as f64 / 1e9,
                    exit_code: (sig == 0).then_some(((k.status >> 8) & 0xff) as i32),
                    signal: (sig != 0).then(|| signal_name(sig)),
                }
            })
            .collect()
    }
}

/// "the kill of 1613 was followed by the exits of 1612 (SIGTERM, +0.4 s)
/// and its parent 1611 (exit 0, +0.6 s)".
pub fn sentence(victim: u32, exits: &[AfterExit]) -> Option<String> {
    if exits.is_empty() {
        return None;
    }
    let each: Vec<String> = exits
        .iter()
        .take(5)
        .map(|e| {
            let how = match (&e.signal, e.exit_code) {
                (Some(s), _) => s.clone(),
                (None, Some(c)) => format!("exit {c}"),
                _ => "exit".into(),
            };
            let who = if e.relation == "parent" { "its parent " } else { "" };
            format!("{who}{} ({how}, +{:.1} s)", e.pid, e.after_s)
        })
        .collect();
    let more = exits.len().saturating_sub(5);
    let list = match each.len() {
        1 => each[0].clone(),
        n => format!("{} and {}", each[..n - 1].join(", "), each[n - 1]),
    };
    Some(format!(
        "the kill of {victim} was followed by the exits of {list}{}",
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(pid: u32, ppid: u32, ns: u64, status: u32, victim: bool) -> ExitSample {
        ExitSample {
            tgid: pid,
            ppid,
            comm: *b"worker\0\0\0\0\0\0\0\0\0\0",
            exit_ns: ns,
            start_ns: 0,
            birth: None,
            peak_bytes: None,
            memcg_id: 7,
            exit_code: status,
            oom_victim: victim,
            after_kill: !victim,
            args: Vec::new(),
        }
    }

    #[test]
    fn the_exits_after_a_kill_are_named_in_order() {
        let mut a = Aftermath::default();
        a.record(&exit(1613, 1611, 1_000_000_000, 9, true));
        a.record(&exit(1612, 1611, 1_400_000_000, 15, false));
        a.record(&exit(1611, 1, 1_600_000_000, 0, false));
        a.record(&exit(99, 1, 30_000_000_000, 0, false));
        let e = a.after(1613);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            (e[0].relation.as_str(), e[0].signal.as_deref()),
            ("sibling", Some("SIGTERM"))
        );
        assert_eq!((e[1].relation.as_str(), e[1].exit_code), ("parent", Some(0)));
        assert_eq!(
            sentence(1613, &e).unwrap(),
            "the kill of 1613 was followed by the exits of 1612 (SIGTERM, +0.4 s) and its parent 1611 (exit 0, +0.6 s)"
        );
        assert!(a.after(42).is_empty());
    }
}
