//! Not a data source: the loader loads (never attaches) this program to
//! find out whether the kernel allows fentry, and reports it with `-v`.
use aya_ebpf::{macros::fentry, programs::FEntryContext};

#[fentry(function = "do_exit")]
pub fn fentry_capability(_ctx: FEntryContext) -> i32 {
    0
}

// Empty programs on the two hot tracepoints, attached only by
// `leaktrace watch --bench-floor` (used by `cargo xtask bench overhead`):
// they measure what any BPF program on these hooks costs, so the benchmark
// can tell the hook's fixed price from leaktrace's own work.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

#[btf_tracepoint(function = "rss_stat")]
pub fn floor_rss_stat(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[btf_tracepoint(function = "page_fault_user")]
pub fn floor_page_fault_user(_ctx: BtfTracePointContext) -> i32 {
    0
}
