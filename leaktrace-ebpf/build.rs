//! cfg(bpf_target_arch = "..."): the architecture the eBPF object is for
//! (`AYA_BPF_TARGET_ARCH=aarch64` for the arm64 build; the host's by
//! default). Kprobe arguments and perf-event registers are read by it.
fn main() -> aya_build::Result<()> {
    aya_build::emit_bpf_target_arch_cfg()
}
