//! Where a suspect touches its memory: the user stacks of its page faults,
//! sampled in the kernel (`FAULT_STACKS`, `FAULT_STACK_IDS`) and symbolized
//! here with blazesym (ELF symbols and DWARF of the live process).
use std::collections::HashMap as StdHashMap;

use anyhow::{Context, Result};
use aya::{
    maps::{HashMap, MapData, StackTraceMap},
    Ebpf,
};
use blazesym::symbolize::{
    source::{Process, Source},
    Input, Symbolized, Symbolizer,
};
use leaktrace_common::FaultStackKey;

pub struct StackMaps {
    stacks: HashMap<MapData, FaultStackKey, u64>,
    ids: StackTraceMap<MapData>,
    suspects: HashMap<MapData, u32, u32>,
}

impl StackMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Self {
            stacks: HashMap::try_from(
                ebpf.take_map("FAULT_STACKS")
                    .context("map FAULT_STACKS missing")?,
            )?,
            ids: StackTraceMap::try_from(
                ebpf.take_map("FAULT_STACK_IDS")
                    .context("map FAULT_STACK_IDS missing")?,
            )?,
            suspects: HashMap::try_from(ebpf.take_map("SUSPECTS").context("map SUSPECTS missing")?)?,
        })
    }

    /// Makes the kernel's suspect set equal to `want` (tgid -> period).
    pub fn set_suspects(&mut self, want: &StdHashMap<u32, u32>) {
        let have: Vec<u32> = self.suspects.keys().filter_map(|k| k.ok()).collect();
        for k in have {
            if !want.contains_key(&k) {
                let _ = self.suspects.remove(&k);
            }
        }
        for (k, v) in want {
            let _ = self.suspects.insert(k, v, 0);
        }
    }

    /// Sampled stacks of `tgid`: (instruction pointers, sampled faults).
    pub fn collect(&self, tgid: u32) -> Vec<(Vec<u64>, u64)> {
        let mut out = Vec::new();
        for item in self.stacks.iter() {
            let Ok((k, count)) = item else { continue };
            if k.tgid != tgid {
                continue;
            }
            if let Ok(st) = self.ids.get(&k.stack_id, 0) {
                out.push((st.frames().iter().map(|f| f.ip).collect(), count));
            }
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.1));
        out
    }

    /// Drops the samples of processes that are gone.
    pub fn forget_except(&mut self, alive: &dyn Fn(u32) -> bool) {
        let dead: Vec<FaultStackKey> = self
            .stacks
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !alive(k.tgid))
            .collect();
        for k in dead {
            let _ = self.stacks.remove(&k);
        }
        // Stack ids nothing refers to any more: free them, or the stack map
        // fills up and new stacks stop being recorded.
        let used: std::collections::HashSet<u32> = self
            .stacks
            .keys()
            .filter_map(|k| k.ok())
            .map(|k| k.stack_id)
            .collect();
        let unused: Vec<u32> = self
            .ids
            .stack_ids()
            .filter_map(|k| k.ok())
            .filter(|id| !used.contains(id))
            .collect();
        for id in unused {
            let _ = self.ids.remove(&id);
        }
    }
}

/// Formats stacks.txt. Symbolizes against the live process; frames that
/// cannot be symbolized are shown as addresses.
pub fn render(
    pid: u32,
    comm: &str,
    period: u32,
    page: u64,
    stacks: &[(Vec<u64>, u64)],
    top: usize,
) -> String {
    let total: u64 = stacks.iter().map(|s| s.1).sum();
    let mut s = format!(
        "# leaktrace stacks.txt: where pid {pid} ({comm}) touches its memory\n\
         # user stacks of page faults, sampled in the kernel (1 in {period} faults) since it became a suspect;\n\
         # symbolized with blazesym from the live process's ELF symbols and DWARF.\n\
         # {total} sampled faults in {} distinct stacks. Bytes = samples x {period} x page size ({page} B), an estimate.\n",
        stacks.len()
    );
    if stacks.is_empty() {
        s += "# no samples: the process took no page faults while it was a suspect\n";
        return s;
    }
    let sym = Symbolizer::new();
    let src = Source::Process(Process::new(pid.into()));
    for (i, (ips, count)) in stacks.iter().take(top).enumerate() {
        let bytes = count * period as u64 * page;
        s += &format!(
            "\n== stack {}: {count} sampled faults ({:.1}%), ~{:.1} MiB touched\n",
            i + 1,
            *count as f64 * 100.0 / total.max(1) as f64,
            bytes as f64 / 1048576.0
        );
        let syms = match sym.symbolize(&src, Input::AbsAddr(ips.as_slice())) {
            Ok(v) => v,
            Err(e) => {
                s += &format!("  (symbolization failed: {e})\n");
                Vec::new()
            }
        };
        for (j, ip) in ips.iter().enumerate() {
            match syms.get(j) {
                Some(Symbolized::Sym(sy)) => {
                    let loc = sy
                        .code_info
                        .as_ref()
                        .map(|c| format!(" ({}:{})", c.file.to_string_lossy(), c.line.unwrap_or(0)))
                        .unwrap_or_default();
                    s += &format!("  {ip:#018x} {}+{:#x}{loc}\n", sy.name, sy.offset);
                }
                Some(Symbolized::Unknown(reason)) => s += &format!("  {ip:#018x} ?? ({reason})\n"),
                None => s += &format!("  {ip:#018x} ??\n"),
            }
        }
    }
    s
}
