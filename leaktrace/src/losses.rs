//! Output that could not be written: a line of events.jsonl, a bundle, an
//! incident file or an exec.json lost to a full disk or a removed
//! directory. Each such write is counted here, wherever it failed, and the
//! count is in the metrics (`leaktrace_lost_events_total{kind="outputs"}`)
//! and in the line printed at exit. Like `limits`, this sits at the bottom
//! of the module graph.
use std::sync::atomic::{AtomicU64, Ordering};

static OUTPUT_WRITES: AtomicU64 = AtomicU64::new(0);

pub fn output_write_failed() {
    OUTPUT_WRITES.fetch_add(1, Ordering::Relaxed);
}

/// Output writes that failed so far.
pub fn output_write_failures() -> u64 {
    OUTPUT_WRITES.load(Ordering::Relaxed)
}
