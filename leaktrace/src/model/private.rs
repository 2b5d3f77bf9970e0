//! Private (USS) and proportional (PSS) memory of processes and groups,
//! from bounded, rate-limited smaps_rollup reads, with growth rates and
//! trends computed like the RSS ones (trend.rs).
//!
//! RSS does not see copy-on-write copying: when a forked worker writes a
//! page it shares with its parent, the kernel gives it a private copy, its
//! RSS stays the same and the host loses a page (seed 003). The copy moves
//! the page from the worker's shared to its private pages, so its USS
//! grows, and the group's PSS sum (each page counted once across the
//! group) grows by exactly the copied bytes.
//!
//! Reads are costly (the kernel walks every mapping under the mmap lock:
//! docs/performance.md), so they come in rounds every `ROUND_S`, at most
//! `limits::ROLLUP_READS_PER_ROUND` per round, the processes read longest
//! ago first.
use super::{
    history::History,
    trend::{self, Trend},
};
use crate::host::procfs::Rollup;

/// A round of smaps_rollup reads every this many seconds.
pub const ROUND_S: f64 = 3.0;
/// A read older than this is stale: not shown, not in a group's sum.
pub const FRESH_S: f64 = 3.0 * ROUND_S;
/// Histories keep this long (the long trend window is 60 s).
const HISTORY_S: f64 = 300.0;

/// Rates and trend of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub short: f64,
    pub long: f64,
    pub trend: Trend,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            short: 0.0,
            long: 0.0,
            trend: Trend::Stable,
        }
    }
}

fn rates(h: &History, t_now: f64, params: &trend::Params, buf: &mut Vec<(f64, f64)>) -> Rates {
    h.points(t_now - params.long_window_s, buf);
    Rates {
        short: trend::slope(trend::window(buf, params.short_window_s)),
        long: trend::slope(buf),
        trend: trend::classify(buf, params),
    }
}

/// One process's reads: the last one and its USS over time.
#[derive(Debug, Clone, Default)]
pub struct ProcPrivate {
    last: Option<(f64, Rollup)>,
    uss: History,
    /// As of the last `classify`: the read if fresh, and the USS rates.
    pub now: Option<Rollup>,
    pub rates: Rates,
}

impl ProcPrivate {
    /// A read that arrived, taken at time `t`.
    pub fn record(&mut self, t: f64, r: Rollup) {
        self.last = Some((t, r));
        self.uss.push(t, r.uss as f64);
        self.uss.trim_before(t - HISTORY_S);
    }

    /// The last read, when fresh.
    pub fn fresh(&self, t_now: f64) -> Option<Rollup> {
        self.last.filter(|(at, _)| t_now - at <= FRESH_S).map(|l| l.1)
    }

    /// When it was last read (None: never).
    pub fn read_at(&self) -> Option<f64> {
        self.last.map(|l| l.0)
    }

    /// USS rates and trend now (stable while no fresh read).
    pub fn classify(&mut self, t_now: f64, params: &trend::Params, buf: &mut Vec<(f64, f64)>) {
        self.now = self.fresh(t_now);
        self.rates = match self.now {
            Some(_) => rates(&self.uss, t_now, params, buf),
            None => Rates::default(),
        };
    }
}

/// A group's PSS and USS sums over time.
#[derive(Debug, Clone, Default)]
pub struct GroupPrivate {
    pss: History,
    uss: History,
    /// The newest member read in the last sums pushed.
    newest: f64,
}

/// A group's sums, when every member has a fresh read: (Pss, USS, the
/// newest read's time).
pub fn sums<'a>(
    members: impl Iterator<Item = Option<&'a ProcPrivate>>,
    t_now: f64,
) -> Option<(u64, u64, f64)> {
    let (mut pss, mut uss, mut newest) = (0u64, 0u64, f64::NEG_INFINITY);
    for m in members {
        let m = m?;
        let r = m.fresh(t_now)?;
        pss = pss.saturating_add(r.pss);
        uss = uss.saturating_add(r.uss);
        newest = newest.max(m.read_at().unwrap_or(newest));
    }
    newest.is_finite().then_some((pss, uss, newest))
}

impl GroupPrivate {
    /// Takes the sums when a member was read since the last ones (sums
    /// made of the same reads are not new points), and returns the PSS
    /// sum's rates.
    pub fn update(
        &mut self,
        t_now: f64,
        (pss, uss, newest): (u64, u64, f64),
        params: &trend::Params,
        buf: &mut Vec<(f64, f64)>,
    ) -> Rates {
        if newest > self.newest {
            self.newest = newest;
            self.pss.push(newest, pss as f64);
            self.uss.push(newest, uss as f64);
            self.pss.trim_before(newest - HISTORY_S);
            self.uss.trim_before(newest - HISTORY_S);
        }
        rates(&self.pss, t_now, params, buf)
    }
}

/// The processes to read this round: `cands` holds (pid, when last read)
/// in priority order (suspects and growers, then the largest groups'
/// members), possibly repeated. Keeps the first of each pid, the never
/// read and then the longest unread first, at most `n`. Returns how many
/// had to wait for a later round.
pub fn pick(cands: &mut Vec<(u32, Option<f64>)>, n: usize) -> usize {
    let mut seen = std::collections::HashSet::with_capacity(cands.len());
    cands.retain(|c| seen.insert(c.0));
    // Stable: equal times keep the priority order.
    cands.sort_by(|a, b| match (a.1, b.1) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => x.total_cmp(&y),
    });
    let waiting = cands.len().saturating_sub(n);
    cands.truncate(n);
    waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn roll(pss: u64, uss: u64) -> Rollup {
        Rollup { pss, uss }
    }

    #[test]
    fn a_worker_copying_its_pages_grows_by_uss() {
        // Rounds every 3 s; the worker copies 8 MiB/s of inherited pages.
        let params = trend::Params::default();
        let mut buf = Vec::new();
        let mut p = ProcPrivate::default();
        for i in 0..=20 {
            let t = i as f64 * ROUND_S;
            p.record(t, roll(600 * MIB + 4 * i * 3 * MIB, 8 * i * 3 * MIB));
            p.classify(t, &params, &mut buf);
        }
        assert_eq!(p.rates.trend, Trend::Growing);
        let want = 8.0 * MIB as f64;
        assert!((p.rates.short - want).abs() < 0.01 * want, "{:?}", p.rates);
        assert!((p.rates.long - want).abs() < 0.01 * want, "{:?}", p.rates);
        // No read for longer than FRESH_S: nothing is claimed.
        p.classify(60.0 + FRESH_S + 1.0, &params, &mut buf);
        assert_eq!(p.rates, Rates::default());
        assert_eq!(p.now, None);
        assert!(p.fresh(60.0 + FRESH_S + 1.0).is_none());
    }

    #[test]
    fn group_sums_need_every_member_fresh_and_grow_by_the_copies() {
        let params = trend::Params::default();
        let mut buf = Vec::new();
        let mut g = GroupPrivate::default();
        let (mut a, mut b) = (ProcPrivate::default(), ProcPrivate::default());
        assert_eq!(sums([Some(&a), Some(&b)].into_iter(), 0.0), None);
        let mut last = Rates::default();
        for i in 0..=20u64 {
            let t = i as f64 * ROUND_S;
            // Two workers copy 4 MiB/s each: the group's Pss sum grows
            // 8 MiB/s.
            a.record(t, roll(500 * MIB + 12 * i * MIB, 12 * i * MIB));
            b.record(t + 0.5, roll(500 * MIB + 12 * i * MIB, 12 * i * MIB));
            let s = sums([Some(&a), Some(&b)].into_iter(), t + 1.0).unwrap();
            assert_eq!(s.0, 2 * (500 + 12 * i) * MIB);
            assert_eq!(s.1, 24 * i * MIB);
            // Ticks between reads add no points.
            g.update(t + 1.0, s, &params, &mut buf);
            last = g.update(t + 2.0, s, &params, &mut buf);
        }
        assert_eq!(g.pss.runs(), 21);
        assert_eq!(last.trend, Trend::Growing);
        let want = 8.0 * MIB as f64;
        assert!((last.long - want).abs() < 0.01 * want, "{last:?}");
        // A member not read (or gone): no sum.
        assert_eq!(sums([Some(&a), None].into_iter(), 61.0), None);
        assert_eq!(
            sums([Some(&a), Some(&ProcPrivate::default())].into_iter(), 61.0),
            None
        );
        assert_eq!(sums([Some(&a)].into_iter(), 60.0 + FRESH_S + 1.0), None);
    }

    #[test]
    fn picking_keeps_priority_puts_unread_first_and_counts_the_rest() {
        let mut c = vec![
            (5, Some(9.0)),
            (1, None),
            (5, Some(9.0)),
            (2, Some(3.0)),
            (3, None),
            (4, Some(1.0)),
        ];
        assert_eq!(pick(&mut c, 3), 2);
        assert_eq!(c, vec![(1, None), (3, None), (4, Some(1.0))]);
        let mut c = vec![(1, Some(1.0))];
        assert_eq!(pick(&mut c, 3), 0);
    }
}
