//! Whether the top grower was the victim's sibling doing the same work
//! (docs/verdict.md, "Siblings"): in a pool of identical workers the OOM
//! killer picks the largest, and another worker that grew more in the
//! window is no proof that the choice was wrong.
use super::*;

/// The victim and the top grower are siblings doing the same work: the
/// same executable and command line (both known, neither empty), in the
/// same memcg, and the victim rose in the window by at least half of the
/// grower's rise (they grew alike). `victim_rise` is the victim's own
/// rise in the window (0 when it did not grow notably).
pub(super) fn siblings(victim: &Victim, victim_rise: u64, grower: &Grower, g: &ProcSnapshot) -> bool {
    let known = !victim.cmdline.is_empty() && !victim.cgroup.is_empty();
    let same_exe = victim.exe == g.exe;
    let same_cmd = victim.cmdline == g.cmdline;
    let same_group = victim.cgroup == g.cgroup;
    let alike = victim_rise.saturating_mul(2) >= grower.growth_bytes;
    known && same_exe && same_cmd && same_group && alike
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
