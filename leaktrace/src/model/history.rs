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
