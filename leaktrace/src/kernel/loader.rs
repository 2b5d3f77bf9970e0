//! Loading the kernel programs, and the probe table that decides, for each
//! job, which hook attaches on this kernel and what it falls back to.
//!
//! The data path is the first decision: the task iterator (sampled once per
//! interval, nothing on the page-fault path) when the kernel has it, else
//! the per-fault hooks on kmem:rss_stat and exceptions:page_fault_user.
//! `-v` and the status line say which one is live and why.
use std::{
    fmt::Write as _,
    os::fd::{AsFd, OwnedFd},
};

use anyhow::{bail, Context, Result};
use aya::{
    programs::{links::FdLink, BtfTracePoint, FEntry, FExit, Iter, KProbe, PerfEvent, TracePoint},
    Btf as AyaBtf, Ebpf, EbpfLoader,
};
use leaktrace_common::globals as g;
use leaktrace_common::member;
use serde::Serialize;

use super::{
    btf::{Btf, RssLayout},
    iter::{link_fd_by_id, own_link_fd, TaskIter},
    layout::TaskLayout,
    probes::{Hook, HookKind, ProbeSpec, FAULT_PATH, FLOOR_PROBES, PROBES, SAMPLER},
    stacks::{probe_perf_events, StackMode},
    tracefs,
};

/// The compiled kernel programs, built by `cargo xtask build`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/leaktrace.bpf.o"));
pub const EBPF_TOOLCHAIN: &str = env!("LEAKTRACE_EBPF_TOOLCHAIN");

/// Which data path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DataPath {
    /// The task iterator where the kernel has it, else the per-fault hooks.
    Auto,
    /// Only the task iterator (an error if the kernel refuses it).
    Iterator,
    /// The per-fault hooks on kmem:rss_stat and exceptions:page_fault_user.
    Hooks,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub path: DataPath,
    /// Classic tracepoints even where tp_btf works (to test the fallback).
    pub force_classic: bool,
    /// Benchmark floor: empty programs on the two per-fault hooks, next
    /// to the iterator.
    pub bench_floor: bool,
    pub verbose: u8,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Skipped {
    pub program: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ProbeResult {
    pub job: &'static str,
    pub required: bool,
    /// e.g. "tp_btf kmem:rss_stat"
    pub live: Option<String>,
    pub program: Option<&'static str>,
    pub skipped: Vec<Skipped>,
    /// Off by design: the chosen data path does not use this job (the
    /// iterator path leaves the per-fault hooks detached). Not a fault,
    /// so the hook_live metric leaves it out (sinks/metrics.rs).
    #[serde(skip)]
    pub unused: bool,
}

/// Kernel facilities leaktrace checks for and reports, besides the hooks.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
    /// "iterator" or "hooks", and why.
    pub data_path: &'static str,
    pub data_path_why: String,
    /// The task iterator, when it is the data path.
    pub iter: Option<TaskIter>,
    /// How suspects' faults are sampled, if they can be.
    pub stack_mode: Option<StackMode>,
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

/// Offsets of classic tracepoint fields, from tracefs (none without it:
/// the programs that need them are not attached then).
struct TpOffsets {
    root: Option<std::path::PathBuf>,
}

impl TpOffsets {
    fn field(&self, group: &str, event: &str, name: &str) -> Option<u64> {
        tracefs::read_format(self.root.as_deref()?, group, event)
            .ok()
            .and_then(|t| tracefs::field(&t, name))
            .map(|f| f.offset)
    }
}

/// Loads the object with every offset it needs set as a read-only global.
/// What the object needs from the kernel's BTF, computed before it is loaded.
struct Offsets {
    rss: Option<RssLayout>,
    /// Arguments of kmem:rss_stat's raw tracepoint prototype: 3 from 6.2
    /// (void *, mm, member), 4 before (void *, mm, member, count).
    rss_stat_args: Option<usize>,
    task: Option<[u64; leaktrace_common::off::NUM]>,
}

fn offsets(notes: &mut Vec<String>, btf: Option<&Btf>) -> Result<Offsets> {
    let layout = btf.map(RssLayout::from_btf);
    if let Some(Err(e)) = &layout {
        notes.push(format!("rss_stat via tp_btf unavailable: {e}"));
    }
    let task = btf.map(TaskLayout::from_btf);
    let task_offs = match &task {
        Some(Ok(t)) => {
            if !t.missing.is_empty() {
                notes.push(format!(
                    "kernel BTF lacks {}; those values read as 0",
                    t.missing.join(", ")
                ));
            }
            Some(t.offs)
        }
        Some(Err(e)) => {
            notes.push(format!("task iterator unavailable: {e}"));
            None
        }
        None => None,
    };
    if let Some(btf) = btf {
        for (name, want) in [
            ("MM_FILEPAGES", member::FILE as i64),
            ("MM_ANONPAGES", member::ANON as i64),
            ("MM_SWAPENTS", member::SWAP as i64),
            ("MM_SHMEMPAGES", member::SHMEM as i64),
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
    Ok(Offsets {
        rss_stat_args: btf.and_then(|b| b.tracepoint_args("rss_stat")),
        rss: layout.and_then(|r| r.ok()),
        task: task_offs,
    })
}

/// The names aya looks up in the BTF to load the tp_btf, iterator and
/// fentry programs of these tables.
fn attach_targets(tables: &[&[ProbeSpec]]) -> Vec<(String, u32)> {
    use super::btf::{KIND_FUNC, KIND_TYPEDEF};
    let mut v = vec![("do_exit".to_string(), KIND_FUNC)];
    for t in tables {
        for spec in t.iter() {
            for h in spec.candidates {
                match h.kind {
                    HookKind::TpBtf => v.push((format!("btf_trace_{}", h.event), KIND_TYPEDEF)),
                    HookKind::Iter => v.push((format!("bpf_iter_{}", h.group), KIND_FUNC)),
                    HookKind::FEntry | HookKind::FExit => v.push((h.event.to_string(), KIND_FUNC)),
                    HookKind::Tracepoint | HookKind::KProbe | HookKind::KRetProbe => {}
                }
            }
        }
    }
    v
}

/// Loads the object with every offset it needs set as a read-only
/// global. `skeleton` is the BTF aya gets: see `Btf::skeleton`.
fn load_object(tp: &TpOffsets, o: &Offsets, skeleton: Option<Vec<u8>>) -> Result<(Ebpf, Option<AyaBtf>)> {
    let page_shift = crate::fmt::page_size().trailing_zeros() as u64;
    let l = o.rss;
    let f = |name: &str, default: u64| tp.field("kmem", "rss_stat", name).unwrap_or(default);
    let (tp_mm_id, tp_curr, tp_member, tp_size) =
        (f("mm_id", 8), f("curr", 12), f("member", 16), f("size", 24));
    let exit_group_dead = tp
        .field("sched", "sched_process_exit", "group_dead")
        .unwrap_or(u64::MAX);
    let newtask_flags = tp.field("task", "task_newtask", "clone_flags").unwrap_or(32);
    let fld = |group: &str, event: &str, name: &str| tp.field(group, event, name).unwrap_or(u64::MAX);
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
    .map(|f| fld("oom", "mark_victim", f))
    .collect();
    let console_msg = fld("printk", "console", "msg");
    let sig_offs: Vec<u64> = ["sig", "pid", "result"]
        .iter()
        .map(|f| fld("signal", "signal_generate", f))
        .collect();
    let reap_pid = fld("oom", "wake_reaper", "pid");
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
    let offs = o.task.unwrap_or([u64::MAX; leaktrace_common::off::NUM]);

    // EbpfLoader::new() parses the whole kernel BTF (about 25 MB): drop it
    // at once, before the skeleton is parsed, so the two never coexist.
    // Declared before the loader, which borrows it.
    #[allow(clippy::needless_late_init)]
    let aya_btf: Option<AyaBtf>;
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    aya_btf = skeleton
        .as_deref()
        .and_then(|b| AyaBtf::parse(b, aya::Endianness::default()).ok());
    drop(skeleton);
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
    loader.override_global(g::TASK_OFFS, offs.as_slice(), true);
    let ebpf = loader
        .load(OBJECT)
        .context("loading the eBPF object into the kernel")?;
    drop(loader);
    Ok((ebpf, aya_btf))
}

/// What one candidate hook needs to attach.
struct Ctx<'a> {
    aya_btf: Option<&'a AyaBtf>,
    rss_layout: bool,
    task_layout: bool,
    force_classic: bool,
    rss_stat_args: Option<usize>,
    /// kprobe_events exists in tracefs.
    kprobes: bool,
    /// Why tracefs cannot be used (classic tracepoints and kprobes are
    /// then skipped with this reason).
    no_tracefs: Option<&'a str>,
    verbose: u8,
}

/// Attaches one hook; for an iterator, also reads one pass to check that
/// it works, and returns its reader.
fn attach(ebpf: &mut Ebpf, hook: &Hook, c: &Ctx) -> Result<Option<TaskIter>, String> {
    let verbose = c.verbose;
    if c.force_classic && hook.kind == HookKind::TpBtf {
        return Err("skipped: --force-classic".into());
    }
    if hook.program.starts_with("rss_stat_btf") && c.rss_stat_args.is_some_and(|n| n != 3) {
        return Err(format!(
            "this kernel's rss_stat prototype has {} arguments (before 6.2: mm, member, count, with \
             mm->rss_stat an atomic_long_t array); the programs are built for 6.2's (mm, member) \
             with per-CPU counters, so the classic tracepoint, whose record carries the value, is used",
            c.rss_stat_args.unwrap_or(0).saturating_sub(1)
        ));
    }
    if hook.program.starts_with("rss_stat_btf") && !c.rss_layout {
        return Err("struct offsets not available from kernel BTF".into());
    }
    if hook.kind == HookKind::Iter && !c.task_layout {
        return Err("struct offsets not available from kernel BTF".into());
    }
    let prog = ebpf
        .program_mut(hook.program)
        .ok_or("program missing from the object")?;
    match hook.kind {
        HookKind::TpBtf => {
            let btf = c.aya_btf.ok_or("no kernel BTF")?;
            let p: &mut BtfTracePoint = prog.try_into().map_err(|e| describe(&e, verbose))?;
            p.load(hook.event, btf)
                .map_err(|e| format!("load: {}", describe(&e, verbose)))?;
            p.attach()
                .map_err(|e| format!("attach: {}", describe(&e, verbose)))?;
            Ok(None)
        }
        HookKind::FEntry => {
            let btf = c.aya_btf.ok_or("no kernel BTF")?;
            let p: &mut FEntry = prog.try_into().map_err(|e| describe(&e, verbose))?;
            p.load(hook.event, btf)
                .map_err(|e| format!("load: {}", describe(&e, verbose)))?;
            p.attach()
                .map_err(|e| format!("attach: {}", describe(&e, verbose)))?;
            Ok(None)
        }
        HookKind::FExit => {
            let btf = c.aya_btf.ok_or("no kernel BTF")?;
            let p: &mut FExit = prog.try_into().map_err(|e| describe(&e, verbose))?;
            p.load(hook.event, btf)
                .map_err(|e| format!("load: {}", describe(&e, verbose)))?;
            p.attach()
                .map_err(|e| format!("attach: {}", describe(&e, verbose)))?;
            Ok(None)
        }
        HookKind::KProbe | HookKind::KRetProbe => {
            if let Some(why) = c.no_tracefs {
                return Err(format!("kprobe_events cannot be checked: {why}"));
            }
            if !c.kprobes {
                return Err("no kprobe_events in tracefs (CONFIG_KPROBES off)".into());
            }
            let p: &mut KProbe = prog.try_into().map_err(|e| describe(&e, verbose))?;
            p.load().map_err(|e| format!("load: {}", describe(&e, verbose)))?;
            p.attach(hook.event, 0)
                .map_err(|e| format!("attach: {}", describe(&e, verbose)))?;
            Ok(None)
        }
        HookKind::Tracepoint => {
            if let Some(why) = c.no_tracefs {
                return Err(format!("needs tracefs: {why}"));
            }
            let p: &mut TracePoint = prog.try_into().map_err(|e| describe(&e, verbose))?;
            p.load().map_err(|e| format!("load: {}", describe(&e, verbose)))?;
            p.attach(hook.group, hook.event)
                .map_err(|e| format!("attach: {}", describe(&e, verbose)))?;
            Ok(None)
        }
        HookKind::Iter => {
            let btf = c.aya_btf.ok_or("no kernel BTF")?;
            let p: &mut Iter = prog.try_into().map_err(|e| describe(&e, verbose))?;
            p.load(hook.group, btf)
                .map_err(|e| format!("load: {}", describe(&e, verbose)))?;
            let id = p
                .attach()
                .map_err(|e| format!("attach: {}", describe(&e, verbose)))?;
            let link = p.take_link(id).map_err(|e| describe(&e, verbose))?;
            let fd_link: FdLink = link
                .try_into()
                .map_err(|e: aya::programs::links::LinkError| describe(&e, verbose))?;
            let info = fd_link.info().map_err(|e| describe(&e, verbose))?;
            // Our own fd first (CAP_BPF is enough); by id needs CAP_SYS_ADMIN.
            let own: OwnedFd = own_link_fd(info.id())
                .or_else(|_| link_fd_by_id(info.id()))
                .map_err(|e| format!("link fd: {e}"))?;
            let mut it = TaskIter::new(own, crate::fmt::page_size());
            let (mut out, mut live) = (Vec::new(), Vec::new());
            let st = it.read_pass(&mut out, &mut live).map_err(|e| format!("first read: {e:#}"))?;
            if st.processes == 0 {
                return Err("first read returned no processes".into());
            }
            Ok(Some(it))
        }
    }
}

fn try_spec(ebpf: &mut Ebpf, spec: &ProbeSpec, c: &Ctx) -> (ProbeResult, Option<TaskIter>) {
    let mut res = ProbeResult {
        job: spec.job,
        required: spec.required,
        live: None,
        program: None,
        skipped: Vec::new(),
        unused: false,
    };
    let mut iter = None;
    for hook in spec.candidates {
        let target = match hook.kind {
            HookKind::Iter => format!("iter/{} ({})", hook.group, hook.event),
            HookKind::FEntry | HookKind::FExit | HookKind::KProbe | HookKind::KRetProbe => {
                format!("{} {}", hook.kind.as_str(), hook.event)
            }
            _ => format!("{} {}:{}", hook.kind.as_str(), hook.group, hook.event),
        };
        match attach(ebpf, hook, c) {
            Ok(it) => {
                res.live = Some(target);
                res.program = Some(hook.program);
                iter = it;
                break;
            }
            Err(reason) => res.skipped.push(Skipped {
                program: hook.program,
                reason: format!("{target}: {reason}"),
            }),
        }
    }
    (res, iter)
}

fn required_missing(res: &ProbeResult, what: &str) -> anyhow::Error {
    let why: Vec<String> = res
        .skipped
        .iter()
        .map(|s| format!("{} ({})", s.program, s.reason))
        .collect();
    anyhow::anyhow!(
        "required hook '{}' ({}) could not attach on this kernel: {}",
        res.job,
        what,
        why.join("; ")
    )
}

fn not_needed(spec: &ProbeSpec, why: &str) -> ProbeResult {
    ProbeResult {
        job: spec.job,
        required: false,
        live: None,
        program: None,
        skipped: vec![Skipped {
            program: spec.candidates.first().map(|h| h.program).unwrap_or(""),
            reason: why.to_string(),
        }],
        unused: true,
    }
}

fn memdbg(stage: &str) {
    if std::env::var_os("LEAKTRACE_MEMDBG").is_some() {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let f = |k: &str| s.lines().find(|l| l.starts_with(k)).unwrap_or("").to_string();
        eprintln!("memdbg {stage}: {} {}", f("VmRSS"), f("VmHWM"));
    }
}

pub fn load(opts: LoadOptions) -> Result<Loaded> {
    let verbose = opts.verbose;
    let mut notes = Vec::new();
    bump_memlock(&mut notes);

    let (tracefs_root, no_tracefs) = match tracefs::ensure_mounted() {
        Ok((root, mounted)) => {
            if mounted {
                notes.push(format!("mounted tracefs at {}", root.display()));
            }
            (Some(root), None)
        }
        Err(why) => {
            log::warn!("{why}; the classic tracepoints (exec, exit, reclaim, OOM victim and reaper hooks) are not attached");
            (None, Some(why))
        }
    };
    memdbg("start");
    let kernel_btf = match Btf::from_sys_fs() {
        Ok(b) => Some(b),
        Err(e) => {
            notes.push(format!(
                "no kernel BTF (/sys/kernel/btf/vmlinux: {e}); tp_btf hooks and the task iterator are \
                 unavailable, using classic tracepoints (needs CONFIG_DEBUG_INFO_BTF=y)"
            ));
            None
        }
    };
    let tp = TpOffsets {
        root: tracefs_root.clone(),
    };
    let offs = offsets(&mut notes, kernel_btf.as_ref())?;
    let skeleton_bytes = kernel_btf.as_ref().map(|b| {
        let mut tables = vec![std::slice::from_ref(&SAMPLER), FAULT_PATH, FLOOR_PROBES];
        tables.extend_from_slice(PROBES);
        let keep = attach_targets(&tables);
        let keep: Vec<(&str, u32)> = keep.iter().map(|(n, k)| (n.as_str(), *k)).collect();
        b.skeleton(&keep)
    });
    drop(kernel_btf);
    memdbg("our btf");
    let (mut ebpf, aya_btf) = load_object(&tp, &offs, skeleton_bytes)?;
    memdbg("object loaded");
    let (rss_layout, task_layout) = (offs.rss, offs.task.is_some());
    let c = Ctx {
        aya_btf: aya_btf.as_ref(),
        rss_layout: rss_layout.is_some(),
        task_layout,
        force_classic: opts.force_classic,
        rss_stat_args: offs.rss_stat_args,
        kprobes: tracefs_root
            .as_ref()
            .is_some_and(|r| r.join("kprobe_events").exists()),
        no_tracefs: no_tracefs.as_deref(),
        verbose,
    };

    let mut probes = Vec::new();
    let (data_path, why, iter) = choose_data_path(&mut ebpf, &c, opts, &mut probes)?;
    // 3. Lifecycle, reclaim and OOM jobs: the same on both paths.
    for spec in PROBES.iter().copied().flatten() {
        let (res, _) = try_spec(&mut ebpf, spec, &c);
        if res.live.is_none() && spec.required {
            return Err(required_missing(&res, spec.what));
        }
        probes.push(res);
    }
    // 4. Fault stacks of suspects.
    let faults_hook_live = probes.iter().any(|p| p.job == "faults" && p.live.is_some());
    let (stack_mode, stacks_row) = stack_job(&mut ebpf, faults_hook_live, data_path == "hooks", verbose);
    probes.push(stacks_row);

    let capabilities = detect_capabilities(&mut ebpf, aya_btf.as_ref(), &c, verbose);
    if !opts.bench_floor {
        probes.push(oom_context_row(&probes, &capabilities));
    }
    drop(aya_btf);
    // The BTF parses are gone: give their memory back to the system
    // (glibc keeps freed heap otherwise; musl's allocator returns it
    // itself and has no malloc_trim).
    // SAFETY: malloc_trim has no preconditions.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
    memdbg("loaded");
    Ok(Loaded {
        ebpf,
        probes,
        capabilities,
        notes,
        data_path,
        data_path_why: why,
        iter,
        stack_mode,
    })
}

/// The data path: the task iterator unless --data-path hooks or the kernel
/// refuses it, then the per-fault hooks (or, for the benchmark, empty
/// programs on them). Returns (path, why, the iterator).
fn choose_data_path(
    ebpf: &mut Ebpf,
    c: &Ctx,
    opts: LoadOptions,
    probes: &mut Vec<ProbeResult>,
) -> Result<(&'static str, String, Option<TaskIter>)> {
    let (mut path, mut iter) = ("hooks", None);
    let why = if opts.path == DataPath::Hooks {
        probes.push(not_needed(
            &SAMPLER,
            "not attached: --data-path hooks samples through the per-fault hooks",
        ));
        "chosen with --data-path hooks".to_string()
    } else {
        let (res, it) = try_spec(ebpf, &SAMPLER, c);
        let why = if it.is_some() {
            path = "iterator";
            iter = it;
            format!(
                "{} reads every process once per interval; nothing runs on page faults",
                res.live.clone().unwrap_or_default()
            )
        } else if opts.path == DataPath::Iterator {
            return Err(required_missing(&res, SAMPLER.what).context("--data-path iterator"));
        } else {
            let reasons: Vec<&str> = res.skipped.iter().map(|s| s.reason.as_str()).collect();
            format!(
                "the task iterator is not available here ({}); every page fault runs a program instead",
                reasons.join("; ")
            )
        };
        probes.push(res);
        why
    };
    let fault_specs: &[ProbeSpec] = if opts.bench_floor {
        FLOOR_PROBES
    } else {
        FAULT_PATH
    };
    for spec in fault_specs {
        if path == "iterator" && !opts.bench_floor {
            probes.push(not_needed(
                spec,
                "not attached: the task iterator samples this once per interval (--data-path hooks attaches it)",
            ));
            continue;
        }
        let (res, _) = try_spec(ebpf, spec, c);
        if res.live.is_none() && spec.required {
            return Err(required_missing(&res, spec.what));
        }
        probes.push(res);
    }
    Ok((path, why, iter))
}

/// Chooses how suspects' faults are sampled: a perf event on each of their
/// threads where the kernel allows it (nothing for anyone else), else the
/// page_fault_user hook when the hooks path has it attached anyway.
fn stack_job(
    ebpf: &mut Ebpf,
    faults_hook_live: bool,
    hooks_path: bool,
    verbose: u8,
) -> (Option<StackMode>, ProbeResult) {
    let mut row = ProbeResult {
        job: "stacks",
        required: false,
        live: None,
        program: None,
        skipped: Vec::new(),
        unused: false,
    };
    if hooks_path && faults_hook_live {
        row.live = Some("page_fault_user hook, 1 in N faults of suspects only".into());
        row.program = Some("page_fault_user_btf");
        return (Some(StackMode::FaultHook), row);
    }
    let perf = (|| -> Result<OwnedFd, String> {
        let prog = ebpf.program_mut("fault_sample").ok_or("program missing")?;
        let p: &mut PerfEvent = prog.try_into().map_err(|e| describe(&e, verbose))?;
        p.load().map_err(|e| format!("load: {}", describe(&e, verbose)))?;
        let fd = p
            .fd()
            .map_err(|e| describe(&e, verbose))?
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?;
        probe_perf_events(&fd).map_err(|e| format!("perf_event_open: {e}"))?;
        Ok(fd)
    })();
    match perf {
        Ok(fd) => {
            row.live = Some("perf_event page-faults on each suspect thread (sample period N)".into());
            row.program = Some("fault_sample");
            (Some(StackMode::PerfEvent(fd)), row)
        }
        Err(reason) => {
            row.skipped.push(Skipped {
                program: "fault_sample",
                reason: format!("perf_event: {reason}"),
            });
            if faults_hook_live {
                row.live = Some("page_fault_user hook, 1 in N faults of suspects only".into());
                row.program = Some("page_fault_user_btf");
                (Some(StackMode::FaultHook), row)
            } else {
                row.skipped.push(Skipped {
                    program: "page_fault_user_btf",
                    reason: "not attached on the iterator path; bundles will say that stacks are unavailable"
                        .into(),
                });
                (None, row)
            }
        }
    }
}

/// Where the OOM killer's own parameters (constraint, memcg, gfp mask,
/// order, totalpages, chosen points) come from: struct oom_control itself
/// when the oom-control hook (fentry or kprobe on oom_kill_process) is
/// live, else the report lines printk:console captured (this development
/// host refuses fentry and has no kprobes).
fn oom_context_row(probes: &[ProbeResult], caps: &[Capability]) -> ProbeResult {
    let report_live = probes.iter().any(|p| p.job == "oom-report" && p.live.is_some());
    let control = probes.iter().find(|p| p.job == "oom-control");
    let mut skipped = Vec::new();
    let live = match control.and_then(|c| c.live.clone()) {
        Some(hook) => Some(format!("struct oom_control ({hook}); report lines as well")),
        None => {
            let why: Vec<String> = control
                .map(|c| c.skipped.iter().map(|s| s.reason.clone()).collect())
                .unwrap_or_default();
            let fentry = caps
                .iter()
                .find(|c| c.name == "fentry" && !c.available)
                .map(|c| format!("; fentry: {}", c.detail))
                .unwrap_or_default();
            skipped.push(Skipped {
                program: "oom_kill_process_fentry",
                reason: format!("struct oom_control unavailable: {}{fentry}", why.join("; ")),
            });
            report_live.then(|| "report-line parsing (printk:console)".to_string())
        }
    };
    ProbeResult {
        job: "oom-context",
        required: false,
        live,
        program: None,
        skipped,
        unused: false,
    }
}

/// Checks the facilities later jobs prefer (fentry for struct data, kprobes),
/// so that `-v` says plainly what this kernel allows.
fn detect_capabilities(ebpf: &mut Ebpf, btf: Option<&AyaBtf>, c: &Ctx, verbose: u8) -> Vec<Capability> {
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
    caps.push(Capability {
        name: "kprobe",
        available: c.kprobes,
        detail: match c.no_tracefs {
            Some(why) => format!("unknown: {why}"),
            None if c.kprobes => "kprobe_events present".into(),
            None => "no kprobe_events in tracefs (CONFIG_KPROBES off)".into(),
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
/// The error names the capabilities that are missing.
pub fn check_privileges() -> Result<(), String> {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0);
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    privilege_error(eff, uid).map_or(Ok(()), Err)
}

/// The capabilities leaktrace needs to load its programs that `eff` (a
/// CapEff mask) lacks, as an error text; None when it has enough. Pure.
fn privilege_error(eff: u64, uid: u32) -> Option<String> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let has = |c: u32| eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) {
        return None;
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(c, _)| !has(*c))
        .map(|(_, n)| n)
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "missing {} (uid {uid}): leaktrace must run as root, or with CAP_BPF and CAP_PERFMON, to load \
         its eBPF programs (grant them with the unit's AmbientCapabilities= or \
         setpriv --ambient-caps=+bpf,+perfmon; docs/operations.md lists the full set)",
        missing.join(" and ")
    ))
}

#[cfg(test)]
mod privilege_tests {
    use super::privilege_error;

    #[test]
    fn names_the_missing_capability() {
        let bpf = 1u64 << 39;
        let perfmon = 1u64 << 38;
        assert_eq!(privilege_error(bpf | perfmon, 65534), None);
        assert_eq!(privilege_error(1 << 21, 0), None);
        let e = privilege_error(bpf, 65534).unwrap_or_default();
        assert!(e.starts_with("missing CAP_PERFMON (uid 65534)"), "{e}");
        let e = privilege_error(perfmon, 65534).unwrap_or_default();
        assert!(e.starts_with("missing CAP_BPF (uid 65534)"), "{e}");
        let e = privilege_error(0, 1000).unwrap_or_default();
        assert!(e.starts_with("missing CAP_BPF and CAP_PERFMON"), "{e}");
    }
}
