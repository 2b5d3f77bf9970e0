//! Growth rates and the trend classification. Pure functions over RSS
//! samples, so they are tested on synthetic series without a kernel.
//!
//! # The rule (also in docs/trend.md)
//!
//! Inputs: the samples `(t, rss)` of one process over the long window
//! (60 s by default), the newest last. Let the noise floor be
//! `θ = max(4 MiB, 3% of the smallest RSS in the window)`. Changes smaller
//! than θ are noise.
//!
//! 1. **growing**: sustained growth. Checked on the short window (10 s)
//!    first, then on the long window (catches slow leaks). A window is
//!    growing when all of these hold:
//!    - net rise (last − first) ≥ θ;
//!    - no single interval explains it: the largest one-interval rise is at
//!      most half the net rise (a one-off allocation is a *step*, not a leak);
//!    - at least 3 intervals rose, and at least 60% of intervals did not fall;
//!    - the newest sample is near the top: ≥ max − 25% of the net rise
//!      (a burst that has just been freed is not growth).
//!
//!    On the long window the growth must also still be going on: the
//!    short-window slope is at least 25% of the long-window slope.
//! 2. Otherwise, over the long window, let `rise` be the largest upward move
//!    (max over i<j of x_j − x_i) and `drop` the largest downward move.
//!    - rise < θ → **stable** (including a process that only shrank);
//!    - drop ≥ max(θ, rise/2) → **spike**: memory rose and was released
//!      (an allocate/free loop stays a spike even when sampled at a peak);
//!    - otherwise → **step**: it jumped and has kept it (seed 001's hourly
//!      gunicorn step).
//!
//! One burst that is freed again is therefore a spike, never growing, and
//! random noise below θ is stable.
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trend {
    Growing,
    Step,
    Spike,
    Stable,
}

impl Trend {
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Growing => "growing",
            Trend::Step => "step",
            Trend::Spike => "spike",
            Trend::Stable => "stable",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub short_window_s: f64,
    pub long_window_s: f64,
    pub min_noise_bytes: f64,
    pub noise_fraction: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            short_window_s: 10.0,
            long_window_s: 60.0,
            min_noise_bytes: 4.0 * 1024.0 * 1024.0,
            noise_fraction: 0.03,
        }
    }
}

/// The samples of `series` (sorted by time) within `window_s` of the newest.
pub fn window(series: &[(f64, f64)], window_s: f64) -> &[(f64, f64)] {
    let Some(&(t_last, _)) = series.last() else {
        return series;
    };
    // Small tolerance so that a sample exactly `window_s` old is included.
    let start = series.partition_point(|&(t, _)| t < t_last - window_s - 1e-6);
    &series[start..]
}

/// Least-squares slope in bytes per second; 0 with fewer than 2 samples.
pub fn slope(series: &[(f64, f64)]) -> f64 {
    let n = series.len() as f64;
    if series.len() < 2 {
        return 0.0;
    }
    let mt = series.iter().map(|s| s.0).sum::<f64>() / n;
    let mx = series.iter().map(|s| s.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(t, x) in series {
        num += (t - mt) * (x - mx);
        den += (t - mt) * (t - mt);
    }
    if den <= 0.0 {
        0.0
    } else {
        num / den
    }
}

fn noise_floor(w: &[(f64, f64)], p: &Params) -> f64 {
    let min = w.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    p.min_noise_bytes.max(p.noise_fraction * min.max(0.0))
}

fn is_growing(w: &[(f64, f64)], theta: f64) -> bool {
    if w.len() < 4 {
        return false;
    }
    let first = w[0].1;
    let last = w[w.len() - 1].1;
    let net = last - first;
    if net < theta {
        return false;
    }
    let deltas: Vec<f64> = w.windows(2).map(|p| p[1].1 - p[0].1).collect();
    let largest = deltas.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if largest > 0.5 * net {
        return false;
    }
    let rising = deltas.iter().filter(|&&d| d > 0.0).count();
    let not_falling = deltas.iter().filter(|&&d| d >= 0.0).count();
    if rising < 3 || (not_falling as f64) < 0.6 * deltas.len() as f64 {
        return false;
    }
    let max = w.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
    last >= max - 0.25 * net
}

/// Largest upward and downward moves (x_j − x_i and x_i − x_j for i < j).
fn excursions(w: &[(f64, f64)]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut rise, mut drop) = (0.0f64, 0.0f64);
    for &(_, x) in w {
        rise = rise.max(x - lo);
        drop = drop.max(hi - x);
        lo = lo.min(x);
        hi = hi.max(x);
    }
    (rise, drop)
}

/// Classifies a series of `(t_seconds, rss_bytes)` samples, oldest first.
pub fn classify(series: &[(f64, f64)], p: &Params) -> Trend {
    let long = window(series, p.long_window_s);
    if long.len() < 2 {
        return Trend::Stable;
    }
    let theta = noise_floor(long, p);
    let short = window(series, p.short_window_s);
    // A long-window leak must still be rising now: the short-window slope is
    // at least a quarter of the long-window one.
    let long_growing = is_growing(long, theta) && slope(short) >= 0.25 * slope(long);
    if is_growing(short, noise_floor(short, p)) || long_growing {
        return Trend::Growing;
    }
    let (rise, drop) = excursions(long);
    if rise < theta {
        Trend::Stable
    } else if drop >= theta.max(rise / 2.0) {
        Trend::Spike
    } else {
        Trend::Step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: f64 = 1024.0 * 1024.0;

    /// Deterministic pseudo-random noise in [-1, 1].
    fn noise(i: usize) -> f64 {
        let mut x = (i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51afd7ed558ccd);
        x ^= x >> 33;
        (x % 2001) as f64 / 1000.0 - 1.0
    }

    fn series(n: usize, f: impl Fn(usize) -> f64) -> Vec<(f64, f64)> {
        (0..n).map(|i| (i as f64, f(i))).collect()
    }

    fn c(s: &[(f64, f64)]) -> Trend {
        classify(s, &Params::default())
    }

    #[test]
    fn flat_with_noise_is_stable() {
        let s = series(60, |i| 100.0 * MIB + 1.5 * MIB * noise(i));
        assert_eq!(c(&s), Trend::Stable);
        // Larger process, larger noise: ±25 MiB on 2 GiB (θ = 3% ≈ 60 MiB
        // peak to peak).
        let s = series(60, |i| 2048.0 * MIB + 25.0 * MIB * noise(i));
        assert_eq!(c(&s), Trend::Stable);
    }

    #[test]
    fn fast_leak_is_growing_with_right_rate() {
        let s = series(12, |i| 2.0 * MIB + 32.0 * MIB * i as f64);
        assert_eq!(c(&s), Trend::Growing);
        let r = slope(window(&s, 10.0));
        assert!((r - 32.0 * MIB).abs() < 0.01 * MIB, "{r}");
    }

    #[test]
    fn slow_noisy_leak_is_growing_on_the_long_window() {
        // 100 KiB/s on 50 MiB with ±40 KiB of noise: invisible in 10 s.
        let s = series(60, |i| {
            50.0 * MIB + 100.0 * 1024.0 * i as f64 + 40.0 * 1024.0 * noise(i)
        });
        assert_eq!(c(&s), Trend::Growing);
        assert!(!is_growing(
            window(&s, 10.0),
            noise_floor(window(&s, 10.0), &Params::default())
        ));
    }

    #[test]
    fn one_allocation_then_hold_is_step() {
        let s = series(20, |i| if i < 5 { 2.0 * MIB } else { 202.0 * MIB });
        assert_eq!(c(&s), Trend::Step);
        // Allocation straddling two samples.
        let s = series(20, |i| match i {
            0..=4 => 2.0 * MIB,
            5 => 102.0 * MIB,
            _ => 202.0 * MIB + 0.3 * MIB * noise(i),
        });
        assert_eq!(c(&s), Trend::Step);
    }

    #[test]
    fn hourly_step_pattern_is_step_not_growing() {
        // Seed 001: a step up at the top of the hour that never comes back.
        let s = series(60, |i| {
            300.0 * MIB + if i >= 30 { 80.0 * MIB } else { 0.0 } + 0.5 * MIB * noise(i)
        });
        assert_eq!(c(&s), Trend::Step);
    }

    #[test]
    fn spikes_are_spikes() {
        let s = series(30, |i| {
            if (10..13).contains(&i) {
                150.0 * MIB
            } else {
                20.0 * MIB
            }
        });
        assert_eq!(c(&s), Trend::Spike);
    }

    #[test]
    fn alloc_free_loop_is_never_growing() {
        // Whatever phase the sampler hits, including ending on a peak.
        for phase in 0..4 {
            let s = series(30, |i| {
                if (i + phase) % 3 == 0 {
                    120.0 * MIB
                } else {
                    20.0 * MIB
                }
            });
            let t = c(&s);
            assert!(t == Trend::Spike || t == Trend::Stable, "phase {phase}: {t:?}");
        }
        // Rising peaks of a free loop: each iteration frees back to base.
        let s = series(30, |i| {
            if i % 2 == 0 {
                20.0 * MIB
            } else {
                60.0 * MIB + i as f64 * MIB
            }
        });
        assert_ne!(c(&s), Trend::Growing);
    }

    #[test]
    fn short_history_is_not_growing() {
        let s = series(3, |i| 2.0 * MIB + 100.0 * MIB * i as f64);
        assert_ne!(c(&s), Trend::Growing);
        assert_eq!(c(&s[..1]), Trend::Stable);
        assert_eq!(slope(&s[..1]), 0.0);
    }

    #[test]
    fn growth_that_stopped_is_no_longer_growing() {
        // Grew for 30 s, then flat for 20 s.
        let s = series(50, |i| 10.0 * MIB + 5.0 * MIB * (i.min(30) as f64));
        assert_ne!(c(&s), Trend::Growing);
    }

    #[test]
    fn window_selects_recent_samples() {
        let s = series(100, |i| i as f64);
        assert_eq!(window(&s, 10.0).len(), 11);
        assert_eq!(window(&s, 1000.0).len(), 100);
        assert!(window(&[], 10.0).is_empty());
    }
}
