//! Whether the top grower was the victim's sibling doing the same work
//! (docs/verdict.md, "Siblings"): in a pool of identical workers the OOM
//! killer picks the largest, and another worker that grew more in the
//! window is no proof that the choice was wrong.
use super::*;

/// The victim and the top grower are siblings doing the same work: the
/// same comm, in the same memcg, the same command line and executable
/// where leaktrace has read both, and the victim rose in the window by at
/// least half of the grower's rise (they grew alike). `victim_rise` is the
/// victim's own rise in the window (0 when it did not grow notably).
///
/// leaktrace reads a process's command line and executable from /proc
/// after it first samples it, so a worker born a second before the kill
/// often has neither yet (seen in tests/tests/verdict_pool.rs): an unread
/// one does not count against the pair, and the comm stands in for it.
pub(super) fn siblings(victim: &Victim, victim_rise: u64, grower: &Grower, g: &ProcSnapshot) -> bool {
    let same = |a: &str, b: &str| a.is_empty() || b.is_empty() || a == b;
    let named = !victim.comm.is_empty() && victim.comm == g.comm;
    let same_group = !victim.cgroup.is_empty() && victim.cgroup == g.cgroup;
    let alike = victim_rise.saturating_mul(2) >= grower.growth_bytes;
    named && same_group && same(&victim.exe, &g.exe) && same(&victim.cmdline, &g.cmdline) && alike
}

/// The verdict's answer from who grew the most and whether it was a
/// sibling of the victim.
pub(super) fn choice(grower: Option<&Grower>, victim: Option<&Victim>, sibling: bool) -> VictimChoice {
    match (grower, victim) {
        (None, _) => VictimChoice::NothingGrew,
        (Some(g), Some(v)) if g.pid == v.pid => VictimChoice::TopGrower,
        (Some(_), Some(_)) if sibling => VictimChoice::Sibling,
        _ => VictimChoice::Wrong,
    }
}
