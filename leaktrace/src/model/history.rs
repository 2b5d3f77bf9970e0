//! RSS history of one process, run-length encoded: consecutive samples
//! with the same value are one run. Most processes on a host are idle, so
//! most histories are one run whatever their length, and leaktrace's
//! memory does not grow with the number of idle processes times the
//! history length. Samples are taken at a regular interval, so a run's
//! points are evenly spaced between its first and last time and
//! `points()` gives back exactly the samples that were pushed (up to
//! scheduling jitter inside a run, which does not change the values).
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    t0: f64,
    t1: f64,
    /// Samples in the run (≥ 1).
    n: u32,
    v: f64,
}

#[derive(Debug, Clone, Default)]
pub struct History {
    runs: VecDeque<Run>,
}

impl History {
    pub fn push(&mut self, t: f64, v: f64) {
        if let Some(last) = self.runs.back_mut() {
            if last.v == v && t >= last.t1 {
                last.t1 = t;
                last.n += 1;
                return;
            }
        }
        self.runs.push_back(Run {
            t0: t,
            t1: t,
            n: 1,
            v,
        });
    }

    /// Forgets samples older than `t`.
    pub fn trim_before(&mut self, t: f64) {
        while let Some(first) = self.runs.front_mut() {
            if first.t1 < t {
                self.runs.pop_front();
            } else if first.t0 < t && first.n > 1 {
                // Drop the points of this run that are older than `t`.
                let step = (first.t1 - first.t0) / (first.n - 1) as f64;
                let drop = ((t - first.t0) / step).ceil().min((first.n - 1) as f64) as u32;
                first.t0 += step * drop as f64;
                first.n -= drop;
                break;
            } else {
                break;
            }
        }
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The number of runs (the memory it holds).
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Has the value changed since time `t`?
    #[cfg(test)]
    pub fn changed_since(&self, t: f64) -> bool {
        self.runs.iter().rev().take_while(|r| r.t1 >= t).count() > 1
    }

    /// The samples from time `from` on, oldest first, into `out` (cleared).
    pub fn points(&self, from: f64, out: &mut Vec<(f64, f64)>) {
        out.clear();
        for r in &self.runs {
            if r.t1 < from {
                continue;
            }
            if r.n == 1 {
                out.push((r.t0, r.v));
                continue;
            }
            let step = (r.t1 - r.t0) / (r.n - 1) as f64;
            for i in 0..r.n {
                let t = r.t0 + step * i as f64;
                if t >= from - 1e-9 {
                    out.push((t, r.v));
                }
            }
        }
    }
}

/// RSS history of one process, by tick: a run is the tick it began and
/// its value, and it lasts until the next run begins (or the process's
/// last tick). A process whose value did not change costs nothing per
/// tick: no push, no trim; the tracker keeps the ticks' times once
/// (`TickTimes`). An idle process is one run and no allocation.
#[derive(Debug, Clone, Default)]
pub struct TickHistory {
    /// The current run: (first tick, value).
    last: Option<(u64, f64)>,
    /// Earlier runs, oldest first.
    older: VecDeque<(u64, f64)>,
}

/// The time of each tick over the history window.
#[derive(Debug, Clone, Default)]
pub struct TickTimes {
    /// (tick, seconds), consecutive ticks.
    times: VecDeque<(u64, f64)>,
}

impl TickTimes {
    /// A new tick at time `t`; times before `keep_from` are forgotten.
    pub fn push(&mut self, tick: u64, t: f64, keep_from: f64) {
        self.times.push_back((tick, t));
        while self.times.len() > 1 && self.times.front().is_some_and(|f| f.1 < keep_from) {
            self.times.pop_front();
        }
    }

    /// The oldest tick still known.
    pub fn first(&self) -> Option<u64> {
        self.times.front().map(|f| f.0)
    }

    /// The time of `tick`, if still known.
    pub fn at(&self, tick: u64) -> Option<f64> {
        let first = self.first()?;
        let i = tick.checked_sub(first)? as usize;
        self.times.get(i).map(|x| x.1)
    }

    /// The first known tick at or after time `t`.
    pub fn tick_from(&self, t: f64) -> Option<u64> {
        let i = self.times.partition_point(|x| x.1 < t - 1e-9);
        self.times.get(i).map(|x| x.0)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.times.len()
    }
}

impl TickHistory {
    /// The value at `tick` (a process's samples come at every tick it
    /// lives). Only a change costs anything.
    pub fn push(&mut self, tick: u64, v: f64) {
        match self.last {
            Some((_, lv)) if lv == v => {}
            Some(l) => {
                self.older.push_back(l);
                self.last = Some((tick, v));
            }
            None => self.last = Some((tick, v)),
        }
    }

    /// Forgets runs that ended before `tick`.
    pub fn trim_before(&mut self, tick: u64) {
        while let Some(&(_, _)) = self.older.front() {
            let next = self.older.get(1).or(self.last.as_ref()).map_or(u64::MAX, |n| n.0);
            // The first run ends at next - 1.
            if next <= tick {
                self.older.pop_front();
            } else {
                break;
            }
        }
    }

    /// The number of runs (the memory it holds).
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.older.len() + usize::from(self.last.is_some())
    }

    /// Has the value changed since time `t` (is a sample before the
    /// current run's first at or after `t`)?
    pub fn changed_since(&self, t: f64, times: &TickTimes) -> bool {
        match self.last {
            Some((t0, _)) if !self.older.is_empty() => times.at(t0.saturating_sub(1)).is_some_and(|x| x >= t),
            _ => false,
        }
    }

    /// The tick the current value was first seen (None: no samples).
    pub fn since(&self) -> Option<u64> {
        self.last.map(|l| l.0)
    }

    /// The samples from time `from` to tick `end` (the process's last
    /// tick), oldest first, into `out` (cleared).
    pub fn points(&self, from: f64, end: u64, times: &TickTimes, out: &mut Vec<(f64, f64)>) {
        out.clear();
        let Some(last) = self.last else { return };
        let Some(start) = times.tick_from(from) else {
            return;
        };
        let mut runs = self.older.iter().chain(std::iter::once(&last)).peekable();
        while let Some(&(t0, v)) = runs.next() {
            let run_end = runs.peek().map_or(end, |n| n.0.saturating_sub(1)).min(end);
            let mut k = t0.max(start);
            while k <= run_end {
                match times.at(k) {
                    Some(t) => out.push((t, v)),
                    None => break,
                }
                k += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_one_run_and_points_come_back() {
        let mut h = History::default();
        for i in 0..300 {
            h.push(i as f64, 5.0);
        }
        assert_eq!(h.runs(), 1);
        let mut p = Vec::new();
        h.points(290.0, &mut p);
        assert_eq!(p.len(), 10);
        assert_eq!(p[0], (290.0, 5.0));
        assert!(!h.changed_since(200.0));
        h.push(300.0, 6.0);
        assert!(h.changed_since(299.0));
        h.points(0.0, &mut p);
        assert_eq!(p.len(), 301);
        assert_eq!(p[299], (299.0, 5.0));
        assert_eq!(p[300], (300.0, 6.0));
    }

    #[test]
    fn tick_history_costs_nothing_while_idle_and_gives_the_samples_back() {
        let mut times = TickTimes::default();
        let mut h = TickHistory::default();
        for k in 1..=300u64 {
            times.push(k, k as f64, k as f64 - 100.0);
            // Only the first and the changes are pushed by the tracker;
            // pushing the same value again changes nothing.
            h.push(k, 5.0);
        }
        assert_eq!(h.runs(), 1);
        assert_eq!(times.len(), 101);
        let mut p = Vec::new();
        h.points(290.0, 300, &times, &mut p);
        assert_eq!(p.len(), 11);
        assert_eq!(p[0], (290.0, 5.0));
        assert!(!h.changed_since(250.0, &times));
        times.push(301, 301.0, 201.0);
        h.push(301, 6.0);
        assert!(h.changed_since(300.0, &times));
        assert!(!h.changed_since(300.5, &times));
        h.points(0.0, 301, &times, &mut p);
        assert_eq!(p.len(), 101);
        assert_eq!(p[99], (300.0, 5.0));
        assert_eq!(p[100], (301.0, 6.0));
        // A process gone at tick 300 ends there.
        h.points(0.0, 300, &times, &mut p);
        assert_eq!(p.last(), Some(&(300.0, 5.0)));
        h.trim_before(301);
        assert_eq!(h.runs(), 1);
    }

    #[test]
    fn trimming_keeps_the_tail_of_a_run() {
        let mut h = History::default();
        for i in 0..10 {
            h.push(i as f64, 1.0);
        }
        h.push(10.0, 2.0);
        h.trim_before(4.5);
        let mut p = Vec::new();
        h.points(0.0, &mut p);
        assert_eq!(p.first(), Some(&(5.0, 1.0)));
        assert_eq!(p.len(), 6);
        h.trim_before(11.0);
        assert!(h.is_empty());
    }
}
