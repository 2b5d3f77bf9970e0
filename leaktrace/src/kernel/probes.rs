//! The probe table: for each hook family, the jobs it does, the hooks
//! that can do each job (best first: the next one is the fallback), and
//! whether leaktrace can run without it. The kernel programs are in
//! `leaktrace-ebpf/src/probes/<family>.rs`; the loader (`loader.rs`) walks
//! these tables, tries each candidate and says which hook is live and
//! why the others were skipped. What a hook needs from the kernel follows
//! from its kind: tp_btf, fentry/fexit and iterators need BTF (and
//! fentry/fexit a kernel that allows BPF trampolines), kprobes need
//! CONFIG_KPROBES, classic tracepoints need their tracefs format (the
//! field offsets the loader hands the programs as globals).
//!
//! docs/adding-a-hook.md lists every step of adding one.
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    TpBtf,
    Tracepoint,
    /// A BPF iterator (`group` is the iterator type, e.g. "task").
    Iter,
    /// fentry/fexit on the kernel function `event` (needs BTF and a kernel
    /// that allows BPF trampolines).
    FEntry,
    FExit,
    /// kprobe/kretprobe on the kernel function `event` (CONFIG_KPROBES).
    KProbe,
    KRetProbe,
}

impl HookKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            HookKind::TpBtf => "tp_btf",
            HookKind::Tracepoint => "tracepoint",
            HookKind::Iter => "iter",
            HookKind::FEntry => "fentry",
            HookKind::FExit => "fexit",
            HookKind::KProbe => "kprobe",
            HookKind::KRetProbe => "kretprobe",
        }
    }
}

/// One way of doing a job: a program in the object and where it attaches.
pub struct Hook {
    pub program: &'static str,
    pub kind: HookKind,
    pub group: &'static str,
    pub event: &'static str,
}

/// A job and its candidate hooks, best first.
pub struct ProbeSpec {
    pub job: &'static str,
    pub what: &'static str,
    pub required: bool,
    pub candidates: &'static [Hook],
}

/// The default data path: a task iterator read once per interval.
pub static SAMPLER: ProbeSpec = ProbeSpec {
    job: "sampler",
    what: "every process's RSS, faults, memcg and oom_score_adj, read once per interval (task iterator)",
    required: false,
    candidates: &[
        Hook {
            program: "task_iter_direct",
            kind: HookKind::Iter,
            group: "task",
            event: "direct BTF loads",
        },
        Hook {
            program: "task_iter_probe",
            kind: HookKind::Iter,
            group: "task",
            event: "bpf_probe_read_kernel",
        },
    ],
};

/// The per-fault hooks: the fallback data path.
pub static FAULT_PATH: &[ProbeSpec] = &[
    ProbeSpec {
        job: "rss",
        what: "absolute RSS counters per process",
        required: true,
        candidates: &[
            Hook {
                program: "rss_stat_btf_direct",
                kind: HookKind::TpBtf,
                group: "kmem",
                event: "rss_stat",
            },
            Hook {
                program: "rss_stat_btf",
                kind: HookKind::TpBtf,
                group: "kmem",
                event: "rss_stat",
            },
            Hook {
                program: "rss_stat_tp",
                kind: HookKind::Tracepoint,
                group: "kmem",
                event: "rss_stat",
            },
        ],
    },
    ProbeSpec {
        job: "faults",
        what: "user page-fault rate per process",
        required: false,
        candidates: &[
            Hook {
                program: "page_fault_user_btf",
                kind: HookKind::TpBtf,
                group: "exceptions",
                event: "page_fault_user",
            },
            Hook {
                program: "page_fault_user_tp",
                kind: HookKind::Tracepoint,
                group: "exceptions",
                event: "page_fault_user",
            },
        ],
    },
];

/// Process lifecycle (probes/lifecycle.rs): births, execs and deaths.
pub static LIFECYCLE: &[ProbeSpec] = &[
    ProbeSpec {
        job: "fork",
        what: "births (RSS at fork) and fork rate per process",
        required: false,
        candidates: &[
            Hook {
                program: "task_newtask_btf",
                kind: HookKind::TpBtf,
                group: "task",
                event: "task_newtask",
            },
            Hook {
                program: "task_newtask_tp",
                kind: HookKind::Tracepoint,
                group: "task",
                event: "task_newtask",
            },
        ],
    },
    ProbeSpec {
        job: "exec",
        what: "births by exec (RSS and argv at exec)",
        required: false,
        candidates: &[Hook {
            program: "sched_process_exec",
            kind: HookKind::Tracepoint,
            group: "sched",
            event: "sched_process_exec",
        }],
    },
    ProbeSpec {
        job: "exit",
        what: "the lives of processes that grew and died between two samples; map cleanup",
        required: false,
        candidates: &[Hook {
            program: "sched_process_exit",
            kind: HookKind::Tracepoint,
            group: "sched",
            event: "sched_process_exit",
        }],
    },
];

/// Allocation stalls (probes/reclaim.rs): direct and memcg reclaim.
pub static RECLAIM: &[ProbeSpec] = &[
    ProbeSpec {
        job: "reclaim-direct-begin",
        what: "direct reclaim starts (allocation stalls)",
        required: false,
        candidates: &[Hook {
            program: "direct_reclaim_begin",
            kind: HookKind::Tracepoint,
            group: "vmscan",
            event: "mm_vmscan_direct_reclaim_begin",
        }],
    },
    ProbeSpec {
        job: "reclaim-direct-end",
        what: "direct reclaim ends",
        required: false,
        candidates: &[Hook {
            program: "direct_reclaim_end",
            kind: HookKind::Tracepoint,
            group: "vmscan",
            event: "mm_vmscan_direct_reclaim_end",
        }],
    },
    ProbeSpec {
        job: "reclaim-memcg-begin",
        what: "memcg reclaim starts (a cgroup at its limit)",
        required: false,
        candidates: &[Hook {
            program: "memcg_reclaim_begin",
            kind: HookKind::Tracepoint,
            group: "vmscan",
            event: "mm_vmscan_memcg_reclaim_begin",
        }],
    },
    ProbeSpec {
        job: "reclaim-memcg-end",
        what: "memcg reclaim ends",
        required: false,
        candidates: &[Hook {
            program: "memcg_reclaim_end",
            kind: HookKind::Tracepoint,
            group: "vmscan",
            event: "mm_vmscan_memcg_reclaim_end",
        }],
    },
];

/// OOM kills (probes/oom.rs, probes/oomctl.rs): the kernel's report, the
/// victim, the kill, struct oom_control, oom_lock and the reaper. Their
/// records are typed in leaktrace-common (`OomKind` and one record type
/// per kind) and decoded by kernel/oom_ring.rs.
pub static OOM: &[ProbeSpec] = &[
    ProbeSpec {
        job: "oom-report",
        what: "the kernel's OOM report lines, captured in the invoking task (printk:console)",
        required: false,
        candidates: &[
            Hook {
                program: "console_btf",
                kind: HookKind::TpBtf,
                group: "printk",
                event: "console",
            },
            Hook {
                program: "console_tp",
                kind: HookKind::Tracepoint,
                group: "printk",
                event: "console",
            },
        ],
    },
    ProbeSpec {
        job: "oom-victim",
        what: "OOM victims with their RSS (oom:mark_victim); without it there are no OOM incidents",
        required: false,
        candidates: &[Hook {
            program: "oom_mark_victim",
            kind: HookKind::Tracepoint,
            group: "oom",
            event: "mark_victim",
        }],
    },
    ProbeSpec {
        job: "oom-kill-signal",
        what: "the SIGKILL sent by the OOM killer (signal:signal_generate)",
        required: false,
        candidates: &[Hook {
            program: "oom_signal_generate",
            kind: HookKind::Tracepoint,
            group: "signal",
            event: "signal_generate",
        }],
    },
    ProbeSpec {
        job: "oom-control",
        what: "struct oom_control at oom_kill_process() (constraint, totalpages, chosen points, memcg, order, gfp mask)",
        required: false,
        candidates: &[
            Hook {
                program: "oom_kill_process_fentry",
                kind: HookKind::FEntry,
                group: "",
                event: "oom_kill_process",
            },
            Hook {
                program: "oom_kill_process_kprobe",
                kind: HookKind::KProbe,
                group: "",
                event: "oom_kill_process",
            },
        ],
    },
    ProbeSpec {
        job: "oom-lock-enter",
        what: "out_of_memory() entered, oom_lock held (time held = until it returns)",
        required: false,
        candidates: &[
            Hook {
                program: "out_of_memory_fentry",
                kind: HookKind::FEntry,
                group: "",
                event: "out_of_memory",
            },
            Hook {
                program: "out_of_memory_kprobe",
                kind: HookKind::KProbe,
                group: "",
                event: "out_of_memory",
            },
        ],
    },
    ProbeSpec {
        job: "oom-lock-exit",
        what: "out_of_memory() returned: time spent with oom_lock held",
        required: false,
        candidates: &[
            Hook {
                program: "out_of_memory_fexit",
                kind: HookKind::FExit,
                group: "",
                event: "out_of_memory",
            },
            Hook {
                program: "out_of_memory_kretprobe",
                kind: HookKind::KRetProbe,
                group: "",
                event: "out_of_memory",
            },
        ],
    },
    ProbeSpec {
        job: "oom-reaper-wake",
        what: "OOM reaper woken (oom:wake_reaper)",
        required: false,
        candidates: &[Hook {
            program: "oom_wake_reaper",
            kind: HookKind::Tracepoint,
            group: "oom",
            event: "wake_reaper",
        }],
    },
    ProbeSpec {
        job: "oom-reaper-start",
        what: "OOM reaper starts on the victim (oom:start_task_reaping)",
        required: false,
        candidates: &[Hook {
            program: "oom_start_task_reaping",
            kind: HookKind::Tracepoint,
            group: "oom",
            event: "start_task_reaping",
        }],
    },
    ProbeSpec {
        job: "oom-reaper-finish",
        what: "OOM reaper done (oom:finish_task_reaping)",
        required: false,
        candidates: &[Hook {
            program: "oom_finish_task_reaping",
            kind: HookKind::Tracepoint,
            group: "oom",
            event: "finish_task_reaping",
        }],
    },
    ProbeSpec {
        job: "oom-reaper-skip",
        what: "OOM reaper skipped the victim (oom:skip_task_reaping)",
        required: false,
        candidates: &[Hook {
            program: "oom_skip_task_reaping",
            kind: HookKind::Tracepoint,
            group: "oom",
            event: "skip_task_reaping",
        }],
    },
];

/// The jobs of every data path, family by family. Order of candidates =
/// preference.
pub static PROBES: &[&[ProbeSpec]] = &[LIFECYCLE, RECLAIM, OOM];

/// Only for `cargo xtask bench overhead`: empty programs on the same two hot
/// hooks, to measure the fixed cost of any BPF program there.
pub static FLOOR_PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        job: "rss",
        what: "empty program on kmem:rss_stat (benchmark floor)",
        required: true,
        candidates: &[Hook {
            program: "floor_rss_stat",
            kind: HookKind::TpBtf,
            group: "kmem",
            event: "rss_stat",
        }],
    },
    ProbeSpec {
        job: "faults",
        what: "empty program on exceptions:page_fault_user (benchmark floor)",
        required: true,
        candidates: &[Hook {
            program: "floor_page_fault_user",
            kind: HookKind::TpBtf,
            group: "exceptions",
            event: "page_fault_user",
        }],
    },
];
