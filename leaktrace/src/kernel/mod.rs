//! Everything that talks to the kernel: loading and attaching the programs
//! (`loader`, with the offsets from `btf`, `layout` and `tracefs`), and
//! reading what they produce: the task iterator (`iter`, the default data
//! path) or the per-fault hooks' maps (`hooks`, the fallback), the exits
//! of short lives (`exits`), the OOM rings (`oom_ring`) and the sampled
//! fault stacks of suspects (`stacks`).
pub mod btf;
pub mod counters;
pub mod exits;
pub mod hooks;
pub mod iter;
pub mod layout;
pub mod lazyring;
pub mod loader;
pub mod oom_ring;
pub mod probes;
pub mod pystacks;
pub mod stacks;
pub mod tracefs;

use anyhow::Result;

pub use counters::Counters;

/// One process as sampled from the kernel, whatever the data path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSample {
    pub tgid: u32,
    pub ppid: u32,
    /// With the tgid, the identity of the process (a reused pid has
    /// another start time). CLOCK_MONOTONIC ns on the iterator path; on
    /// the hooks path, /proc's start time in ns.
    pub start_ns: u64,
    /// The comm bytes, NUL-padded: any bytes a process chose.
    pub comm: [u8; 16],
    pub threads: u32,
    /// Bytes of RSS per kernel counter: file, anon, swap entries, shmem.
    pub rss: [u64; 4],
    /// The mm's lazily updated high-water mark (0 when unknown).
    pub hiwater_bytes: u64,
    pub total_vm_bytes: u64,
    /// Page faults of the whole group (minor + major), and major alone.
    pub faults: u64,
    pub maj_faults: u64,
    /// kernfs id of the memory cgroup; 0 when unknown.
    pub memcg_id: u64,
    /// Changes at every exec; 0 when unknown.
    pub exec_id: u64,
    pub forks: u64,
    pub reclaim_ns: u64,
    /// (CLOCK_MONOTONIC ns, RSS bytes) when the current image was born by
    /// fork or exec while leaktrace ran.
    pub birth: Option<(u64, u64)>,
    pub oom_score_adj: i32,
    /// Read while the process was exiting (its mm already gone).
    pub no_mm: bool,
    /// Nothing changed since the last whole record: only `tgid` is set.
    pub unchanged: bool,
}

/// A data path: one call per interval returns every live process.
pub trait Sampler: Send {
    /// "iterator" or "hooks".
    fn name(&self) -> &'static str;
    /// `out` gets the processes whose record changed (every process on
    /// a full pass), `live` the tgid of every process of the pass.
    fn sample(&mut self, out: &mut Vec<ProcSample>, live: &mut Vec<u32>) -> Result<SampleStats>;
    /// Ask for whole records of every process in the next pass (the
    /// tracker met an unchanged process it did not know).
    fn resync(&mut self) {}
    /// The pids in the kernel's per-process maps (for tests: exited
    /// processes must leave them).
    fn map_keys(&self) -> Vec<u32>;
}

/// What one sampling pass cost and found.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, schemars::JsonSchema)]
pub struct SampleStats {
    pub processes: usize,
    /// Wall time of the pass in ms (kernel time included).
    pub pass_ms: f64,
    /// Records that could not be decoded (iterator) or /proc entries that
    /// could not be read for a reason other than the process being gone.
    pub errors: u64,
}

/// The iterator path. `life` is PROC_LIFE, read only for `map_keys`;
/// `ctl` is ITER_CTL.
pub struct IterSampler {
    pub iter: iter::TaskIter,
    pub life: Option<aya::maps::HashMap<aya::maps::MapData, u32, leaktrace_common::Life>>,
    pub ctl: Option<aya::maps::Array<aya::maps::MapData, u64>>,
    pub passes: u64,
    pub resync: bool,
}

/// Every this many passes, every process gets a whole record anyway.
pub const FULL_PASS_EVERY: u64 = 60;

impl Sampler for IterSampler {
    fn resync(&mut self) {
        self.resync = true;
    }
    fn map_keys(&self) -> Vec<u32> {
        self.life
            .as_ref()
            .map(|m| m.keys().filter_map(|k| k.ok()).collect())
            .unwrap_or_default()
    }
    fn name(&self) -> &'static str {
        "iterator"
    }
    fn sample(&mut self, out: &mut Vec<ProcSample>, live: &mut Vec<u32>) -> Result<SampleStats> {
        let full = self.resync || self.passes.is_multiple_of(FULL_PASS_EVERY);
        if let Some(c) = self.ctl.as_mut() {
            c.set(leaktrace_common::iter_ctl::FULL, full as u64, 0)?;
        }
        self.resync = false;
        self.passes += 1;
        let t = std::time::Instant::now();
        let st = self.iter.read_pass(out, live)?;
        Ok(SampleStats {
            processes: st.processes,
            pass_ms: t.elapsed().as_secs_f64() * 1000.0,
            errors: st.decode_errors,
        })
    }
}
