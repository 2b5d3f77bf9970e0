//! Whether the top grower was the victim's sibling doing the same work
//! (docs/verdict.md, "Siblings"): in a pool of identical workers the OOM
//! killer picks the largest, and another worker that grew more in the
//! window is no proof that the choice was wrong.
use super::*;

/// The victim and the top grower are siblings doing the same work: the
/// same comm and the same command line (read for both, not empty), in
/// the same memcg, the same executable where leaktrace has read both, and
/// the victim rose in the window by at least half of the grower's rise
/// (they grew alike). `victim_rise` is the victim's own rise in the window
/// (0 when it did not grow notably).
///
/// The command line must be known on both sides: with the comm alone, an
/// idle process preferred by oom_score_adj next to a grower of the same
/// binary read as a sibling (tests/tests/oom.rs,
/// `innocent_victim_is_flagged`). leaktrace reads a process's command
/// line from /proc after it first samples it; a twin born within about a
/// second of the kill has its parent's while it runs its parent's image
/// (the tracker's `cmdline_or_inherited`), and otherwise is not
/// recognised yet, and the kill still reads "wrong" (docs/verdict.md).
/// The executable is read lazily too, and an
/// unread one does not count against the pair: argv[0] is in the command
/// line.
pub(super) fn siblings(victim: &Victim, victim_rise: u64, grower: &Grower, g: &ProcSnapshot) -> bool {
    let named = !victim.comm.is_empty() && victim.comm == g.comm;
    let same_cmd = !victim.cmdline.is_empty() && victim.cmdline == g.cmdline;
    let same_exe = victim.exe.is_empty() || g.exe.is_empty() || victim.exe == g.exe;
    let same_group = !victim.cgroup.is_empty() && victim.cgroup == g.cgroup;
    let alike = victim_rise.saturating_mul(2) >= grower.growth_bytes;
    named && same_cmd && same_exe && same_group && alike
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
