//! What the live view keeps between samples: the sample on screen (frozen
//! while paused), each shown process's RSS history, the incidents and the
//! evidence bundles. Every collection has a bound; what goes past it is
//! counted and shown.
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use crate::{
    evidence::EvidenceEvent,
    model::{incident::Incident, sample::Sample},
};

/// Incidents kept whole for their detail screen; older ones are counted.
pub const MAX_INCIDENTS: usize = 256;
/// Evidence events kept for the process detail screens.
pub const MAX_BUNDLES: usize = 256;
/// RSS points kept per process (the sparkline's reach).
pub const HISTORY_POINTS: usize = 240;

#[derive(Default)]
pub struct Data {
    /// The newest sample, and the one on screen (the same unless paused).
    pub latest: Option<Arc<Sample>>,
    pub shown: Option<Arc<Sample>>,
    /// RSS per sample of the processes in the latest sample (the sample
    /// holds the top rows only, so its size bounds this map).
    pub history: HashMap<u32, VecDeque<u64>>,
    /// (arrival number, incident), oldest first.
    pub incidents: VecDeque<(u64, Arc<Incident>)>,
    pub incidents_total: u64,
    pub bundles: VecDeque<Arc<EvidenceEvent>>,
    /// Evidence events that went past MAX_BUNDLES.
    pub bundles_dropped: u64,
}

impl Data {
    pub fn add_sample(&mut self, s: Arc<Sample>, paused: bool) {
        self.history
            .retain(|pid, _| s.processes.iter().any(|p| p.pid == *pid));
        for p in &s.processes {
            let h = self.history.entry(p.pid).or_default();
            if h.len() == HISTORY_POINTS {
                h.pop_front();
            }
            h.push_back(p.rss_bytes);
        }
        if !paused || self.shown.is_none() {
            self.shown = Some(s.clone());
        }
        self.latest = Some(s);
    }

    /// Resuming shows the newest sample at once.
    pub fn resume(&mut self) {
        self.shown = self.latest.clone();
    }

    pub fn add_incident(&mut self, i: Arc<Incident>) {
        self.incidents_total += 1;
        if self.incidents.len() == MAX_INCIDENTS {
            self.incidents.pop_front();
        }
        self.incidents.push_back((self.incidents_total, i));
    }

    /// Incidents that arrived but are no longer kept.
    pub fn incidents_dropped(&self) -> u64 {
        self.incidents_total - self.incidents.len() as u64
    }

    pub fn add_bundle(&mut self, e: Arc<EvidenceEvent>) {
        if self.bundles.len() == MAX_BUNDLES {
            self.bundles.pop_front();
            self.bundles_dropped += 1;
        }
        self.bundles.push_back(e);
    }

    pub fn incident(&self, seq: u64) -> Option<&Incident> {
        self.incidents
            .iter()
            .find(|(n, _)| *n == seq)
            .map(|(_, i)| i.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::tui::rows::tests::row;

    fn sample(pids: &[u32]) -> Arc<Sample> {
        Arc::new(Sample {
            kind: "sample",
            ts_ms: 0,
            interval_s: 1.0,
            processes_total: pids.len(),
            processes: pids.iter().map(|p| row(*p, "x", *p as u64, 0.0, None)).collect(),
            groups: vec![],
            cgroups: vec![],
            kernel: Default::default(),
            ledger: None,
        })
    }

    #[test]
    fn history_is_bounded_and_follows_the_sample() {
        let mut d = Data::default();
        for _ in 0..HISTORY_POINTS + 5 {
            d.add_sample(sample(&[1, 2]), false);
        }
        assert_eq!(d.history[&1].len(), HISTORY_POINTS);
        d.add_sample(sample(&[2]), false);
        assert!(
            !d.history.contains_key(&1),
            "gone from the sample, gone from the map"
        );
    }

    #[test]
    fn a_pause_freezes_the_screen_and_a_resume_catches_up() {
        let mut d = Data::default();
        d.add_sample(sample(&[1]), false);
        d.add_sample(sample(&[1, 2]), true);
        assert_eq!(d.shown.as_ref().unwrap().processes.len(), 1);
        assert_eq!(d.history[&1].len(), 2, "history still grows while paused");
        d.resume();
        assert_eq!(d.shown.as_ref().unwrap().processes.len(), 2);
    }
}
