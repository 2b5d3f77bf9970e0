//! Loading the kernel programs, and the probe table that decides, for each
//! job, which hook attaches on this kernel and what it falls back to.
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use aya::{
    programs::{BtfTracePoint, FEntry, TracePoint},
    Btf as AyaBtf, Ebpf, EbpfLoader,
};
use leaktrace_common::globals as g;
use serde::Serialize;

use crate::{
    btf::{Btf, RssLayout},
    tracefs,
};

/// The compiled kernel programs, built by `cargo xtask build`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/leaktrace.bpf.o"));
pub const EBPF_TOOLCHAIN: &str = env!("LEAKTRACE_EBPF_TOOLCHAIN");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    TpBtf,
    Tracepoint,
}

impl HookKind {
    fn as_str(self) -> &'static str {
        match self {
            HookKind::TpBtf => "tp_btf",
            HookKind::Tracepoint => "tracepoint",
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

/// The probe table. Order of candidates = preference.
pub static PROBES: &[ProbeSpec] = &[
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
    ProbeSpec {
        job: "exit",
        what: "drop exited processes from the kernel maps (else: user-space sweep only)",
        required: false,
        candidates: &[Hook {
            program: "sched_process_exit",
            kind: HookKind::Tracepoint,
            group: "sched",
            event: "sched_process_exit",
        }],
    },
    ProbeSpec {
        job: "fork",
        what: "fork rate per process",
        required: false,
        candidates: &[Hook {
            program: "task_newtask",
            kind: HookKind::Tracepoint,
            group: "task",
            event: "task_newtask",
        }],
    },
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

/// Which hooks to prefer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookChoice {
    Best,
    ForceClassic,
    BenchFloor,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub program: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub job: &'static str,
    pub required: bool,
    /// e.g. "tp_btf kmem:rss_stat"
    pub live: Option<String>,
    pub program: Option<&'static str>,
    pub skipped: Vec<Skipped>,
}

/// Kernel facilities leaktrace checks for and reports, besides the hooks.
#[derive(Debug, Clone, Serialize)]
pub struct Capability {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

pub struct Loaded {
    pub ebpf: Ebpf,
    pub probes: Vec<ProbeResult>,
    pub capabilities: Vec<Capability>,
    pub notes: Vec<String>,
}

/// Full error chain on one line (verifier logs can be long: only with -vv).
fn describe(e: &(dyn std::error::Error + 'static), verbose: u8) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let _ = write!(s, ": {c}");
        src = c.source();
    }
    if verbose < 2 {
        if let Some(i) = s.find("Verifier output") {
            s.truncate(i);
            let keep = s.trim_end_matches([' ', '.', ':']).len();
            s.truncate(keep);
            s.push_str(" (verifier log with -vv)");
        }
    }
    s
}

pub fn load(verbose: u8, choice: HookChoice) -> Result<Loaded> {
    let force_classic = choice == HookChoice::ForceClassic;
    let mut notes = Vec::new();
    bump_memlock(&mut notes);

    let (tracefs_root, mounted) = tracefs::ensure_mounted().context("tracefs is needed for tracepoints")?;
    if mounted {
        notes.push(format!("mounted tracefs at {}", tracefs_root.display()));
    }

    let kernel_btf = match Btf::from_sys_fs() {
        Ok(b) => Some(b),
        Err(e) => {
            notes.push(format!(
                "no kernel BTF (/sys/kernel/btf/vmlinux: {e}); tp_btf hooks are unavailable, \
                 using classic tracepoints (needs CONFIG_DEBUG_INFO_BTF=y for the cheaper hooks)"
            ));
            None
        }
    };
    let aya_btf = AyaBtf::from_sys_fs().ok();
    let layout = kernel_btf.as_ref().map(RssLayout::from_btf);
    if let Some(Err(e)) = &layout {
        notes.push(format!("rss_stat via tp_btf unavailable: {e}"));
    }
    if let Some(btf) = &kernel_btf {
        for (name, want) in [
            ("MM_FILEPAGES", 0),
            ("MM_ANONPAGES", 1),
            ("MM_SWAPENTS", 2),
            ("MM_SHMEMPAGES", 3),
        ] {
            match btf.enum_value(name) {
                Ok(v) if v == want => {}
                Ok(v) => {
                    bail!("kernel has {name} = {v}, leaktrace expects {want}: unsupported kernel")
                }
                Err(_) => notes.push(format!("{name} not in kernel BTF; assuming {want}")),
            }
        }
    }

    // Globals: offsets from BTF and tracefs, never hard-coded.
    let page_shift = crate::procfs::page_size().trailing_zeros() as u64;
    let l = layout.as_ref().and_then(|r| r.as_ref().ok()).copied();
    let rss_fmt = tracefs::read_format(&tracefs_root, "kmem", "rss_stat").ok();
    let f = |name: &str, default: u64| -> u64 {
        rss_fmt
            .as_deref()
            .and_then(|t| tracefs::field(t, name))
            .map(|f| f.offset)
            .unwrap_or(default)
    };
    let tp_mm_id = f("mm_id", 8);
    let tp_curr = f("curr", 12);
    let tp_member = f("member", 16);
    let tp_size = f("size", 24);
    let exit_group_dead = tracefs::read_format(&tracefs_root, "sched", "sched_process_exit")
        .ok()
        .and_then(|t| tracefs::field(&t, "group_dead"))
        .map(|f| f.offset)
        .unwrap_or(u64::MAX);
    let newtask_flags = tracefs::read_format(&tracefs_root, "task", "task_newtask")
        .ok()
        .and_then(|t| tracefs::field(&t, "clone_flags"))
        .map(|f| f.offset)
        .unwrap_or(32);
    let field_off = |group: &str, event: &str, name: &str| -> u64 {
        tracefs::read_format(&tracefs_root, group, event)
            .ok()
            .and_then(|t| tracefs::field(&t, name))
            .map(|f| f.offset)
            .unwrap_or(u64::MAX)
    };
    let mv_offs: Vec<u64> = [
        "pid",
        "total_vm",
        "anon_rss",
        "file_rss",
        "shmem_rss",
        "uid",
        "pgtables",
        "oom_score_adj",
    ]
    .iter()
    .map(|f| field_off("oom", "mark_victim", f))
    .collect();
    let console_msg = field_off("printk", "console", "msg");
    let sig_offs: Vec<u64> = ["sig", "pid", "result"]
        .iter()
        .map(|f| field_off("signal", "signal_generate", f))
        .collect();
    let reap_pid = field_off("oom", "wake_reaper", "pid");
    let (owner, tgid, rss_off, stride, count_off) = l
        .map(|l| {
            (
                l.mm_owner_off,
                l.task_tgid_off,
                l.mm_rss_off,
                l.stride,
                l.count_off,
            )
        })
        .unwrap_or_default();

    let mut loader = EbpfLoader::new();
    loader.btf(aya_btf.as_ref());
    for (name, v) in [
        (g::MM_OWNER_OFF, &owner),
        (g::TASK_TGID_OFF, &tgid),
        (g::MM_RSS_OFF, &rss_off),
        (g::RSS_STRIDE, &stride),
        (g::RSS_COUNT_OFF, &count_off),
        (g::PAGE_SHIFT, &page_shift),
        (g::TP_RSS_MM_ID_OFF, &tp_mm_id),
        (g::TP_RSS_CURR_OFF, &tp_curr),
        (g::TP_RSS_MEMBER_OFF, &tp_member),
        (g::TP_RSS_SIZE_OFF, &tp_size),
        (g::TP_EXIT_GROUP_DEAD_OFF, &exit_group_dead),
        (g::TP_NEWTASK_FLAGS_OFF, &newtask_flags),
    ] {
        loader.override_global(name, v, true);
    }
    loader.override_global(g::TP_MV_OFFS, mv_offs.as_slice(), true);
    loader.override_global(g::TP_SIG_OFFS, sig_offs.as_slice(), true);
    loader.override_global(g::TP_CONSOLE_MSG_OFF, &console_msg, true);
    loader.override_global(g::TP_REAP_PID_OFF, &reap_pid, true);
    let mut ebpf = loader
        .load(OBJECT)
        .context("loading the eBPF object into the kernel")?;

    let mut probes = Vec::new();
    let table = if choice == HookChoice::BenchFloor {
        FLOOR_PROBES
    } else {
        PROBES
    };
    for spec in table {
        let mut res = ProbeResult {
            job: spec.job,
            required: spec.required,
            live: None,
            program: None,
            skipped: Vec::new(),
        };
        for hook in spec.candidates {
            let target = format!("{} {}:{}", hook.kind.as_str(), hook.group, hook.event);
            let attempt = (|| -> Result<(), String> {
                if force_classic && hook.kind == HookKind::TpBtf {
                    return Err("skipped: --force-classic".into());
                }
                if hook.program.starts_with("rss_stat_btf") && l.is_none() {
                    return Err("struct offsets not available from kernel BTF".into());
                }
                let prog = ebpf
                    .program_mut(hook.program)
                    .ok_or("program missing from the object")?;
                match hook.kind {
                    HookKind::TpBtf => {
                        let btf = aya_btf.as_ref().ok_or("no kernel BTF")?;
                        let p: &mut BtfTracePoint = prog.try_into().map_err(|e| describe(&e, verbose))?;
                        p.load(hook.event, btf)
                            .map_err(|e| format!("load: {}", describe(&e, verbose)))?;
                        p.attach()
                            .map_err(|e| format!("attach: {}", describe(&e, verbose)))?;
                    }
                    HookKind::Tracepoint => {
                        let p: &mut TracePoint = prog.try_into().map_err(|e| describe(&e, verbose))?;
                        p.load().map_err(|e| format!("load: {}", describe(&e, verbose)))?;
                        p.attach(hook.group, hook.event)
                            .map_err(|e| format!("attach: {}", describe(&e, verbose)))?;
                    }
                }
                Ok(())
            })();
            match attempt {
                Ok(()) => {
                    res.live = Some(target);
                    res.program = Some(hook.program);
                    break;
                }
                Err(reason) => res.skipped.push(Skipped {
                    program: hook.program,
                    reason: format!("{target}: {reason}"),
                }),
            }
        }
        if res.live.is_none() && spec.required {
            let why: Vec<String> = res
                .skipped
                .iter()
                .map(|s| format!("{} ({})", s.program, s.reason))
                .collect();
            bail!(
                "required hook '{}' ({}) could not attach on this kernel: {}",
                spec.job,
                spec.what,
                why.join("; ")
            );
        }
        probes.push(res);
    }

    let capabilities = detect_capabilities(&mut ebpf, aya_btf.as_ref(), &tracefs_root, verbose);
    if choice != HookChoice::BenchFloor {
        probes.push(oom_context_row(&probes, &capabilities));
    }
    Ok(Loaded {
        ebpf,
        probes,
        capabilities,
        notes,
    })
}

/// Where the OOM killer's own parameters (constraint, memcg, gfp mask,
/// order) come from. fentry on oom_kill_process would give struct
/// oom_control directly; leaktrace does not implement that path yet, and
/// this kernel may not allow fentry at all, so they are parsed from the
/// report lines that printk:console captured.
fn oom_context_row(probes: &[ProbeResult], caps: &[Capability]) -> ProbeResult {
    let report_live = probes.iter().any(|p| p.job == "oom-report" && p.live.is_some());
    let fentry = caps.iter().find(|c| c.name == "fentry");
    let reason = match fentry {
        Some(c) if c.available => {
            "fentry is allowed here, but leaktrace has no fentry oom_kill_process program yet".to_string()
        }
        Some(c) => format!("fentry not allowed on this kernel: {}", c.detail),
        None => "fentry not checked".to_string(),
    };
    ProbeResult {
        job: "oom-context",
        required: false,
        live: report_live.then(|| "report-line parsing (printk:console)".to_string()),
        program: None,
        skipped: vec![Skipped {
            program: "fentry oom_kill_process",
            reason,
        }],
    }
}

/// Checks the facilities later jobs prefer (fentry for struct data, kprobes),
/// so that `-v` says plainly what this kernel allows.
fn detect_capabilities(
    ebpf: &mut Ebpf,
    btf: Option<&AyaBtf>,
    tracefs_root: &std::path::Path,
    verbose: u8,
) -> Vec<Capability> {
    let mut caps = Vec::new();
    caps.push(Capability {
        name: "btf",
        available: btf.is_some(),
        detail: "/sys/kernel/btf/vmlinux".into(),
    });
    // fentry: load (not attach) a program that does nothing.
    let fentry = match (btf, ebpf.program_mut("fentry_capability")) {
        (Some(btf), Some(prog)) => match <&mut FEntry>::try_from(prog) {
            Ok(p) => match p.load("do_exit", btf) {
                Ok(()) => {
                    let _ = p.unload();
                    Ok(())
                }
                Err(e) => Err(describe(&e, verbose)),
            },
            Err(e) => Err(e.to_string()),
        },
        (None, _) => Err("no kernel BTF".into()),
        (_, None) => Err("capability program missing".into()),
    };
    caps.push(Capability {
        name: "fentry",
        available: fentry.is_ok(),
        detail: fentry.err().unwrap_or_else(|| "loads".into()),
    });
    let kprobes = tracefs_root.join("kprobe_events").exists();
    caps.push(Capability {
        name: "kprobe",
        available: kprobes,
        detail: if kprobes {
            "kprobe_events present".into()
        } else {
            "no kprobe_events in tracefs (CONFIG_KPROBES off)".into()
        },
    });
    caps
}

fn bump_memlock(notes: &mut Vec<String>) {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        // Kernels ≥ 5.11 charge BPF memory to the memcg instead; not an error.
        notes.push(format!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::last_os_error()
        ));
    }
}

/// The privilege check: root, or CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN.
pub fn check_privileges() -> Result<(), String> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |c: u32| eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err("leaktrace must run as root (or with CAP_BPF and CAP_PERFMON) to load its eBPF programs; try: sudo leaktrace ...".into())
    }
}
