//! The struct member offsets the kernel programs read (`TASK_OFFS`),
//! taken from the running kernel's BTF. Nothing is hard-coded for one
//! kernel: a member this kernel lacks is `u64::MAX`, which the programs
//! read as 0, and the loader says which ones are missing.
use leaktrace_common::off;

use super::btf::{Btf, BtfError, RssLayout};

pub struct TaskLayout {
    pub offs: [u64; off::NUM],
    /// Optional members this kernel does not have (reported with -v).
    pub missing: Vec<&'static str>,
}

/// The members every data path needs; without them there is no layout.
const REQUIRED: &[(usize, &str, &str)] = &[
    (off::TASK_PID, "task_struct", "pid"),
    (off::TASK_TGID, "task_struct", "tgid"),
    (off::TASK_FLAGS, "task_struct", "flags"),
    (off::TASK_MM, "task_struct", "mm"),
    (off::TASK_SIGNAL, "task_struct", "signal"),
    (off::TASK_START_TIME, "task_struct", "start_time"),
];

const OPTIONAL: &[(usize, &str, &str)] = &[
    (off::TASK_COMM, "task_struct", "comm"),
    (off::TASK_REAL_PARENT, "task_struct", "real_parent"),
    (off::TASK_GROUP_LEADER, "task_struct", "group_leader"),
    (off::TASK_MIN_FLT, "task_struct", "min_flt"),
    (off::TASK_MAJ_FLT, "task_struct", "maj_flt"),
    (off::TASK_EXEC_ID, "task_struct", "self_exec_id"),
    (off::TASK_EXIT_CODE, "task_struct", "exit_code"),
    (off::TASK_CGROUPS, "task_struct", "cgroups"),
    (off::CSS_CGROUP, "cgroup_subsys_state", "cgroup"),
    (off::CGROUP_KN, "cgroup", "kn"),
    (off::KN_ID, "kernfs_node", "id"),
    (off::MM_HIWATER_RSS, "mm_struct", "hiwater_rss"),
    (off::MM_TOTAL_VM, "mm_struct", "total_vm"),
    (off::MM_ARG_START, "mm_struct", "arg_start"),
    (off::MM_ARG_END, "mm_struct", "arg_end"),
    (off::SIG_OOM_SCORE_ADJ, "signal_struct", "oom_score_adj"),
    (off::SIG_MIN_FLT, "signal_struct", "min_flt"),
    (off::SIG_MAJ_FLT, "signal_struct", "maj_flt"),
    (off::SIG_NR_THREADS, "signal_struct", "nr_threads"),
    (off::SIG_MAXRSS, "signal_struct", "maxrss"),
];

/// struct oom_control and mem_cgroup->css, for the oom-control hook. Not
/// part of `missing` (that list is about the task sampler): a kernel
/// without one of them just gets 0 there.
const OOM_CONTROL: &[(usize, &str, &str)] = &[
    (off::OC_MEMCG, "oom_control", "memcg"),
    (off::OC_GFP_MASK, "oom_control", "gfp_mask"),
    (off::OC_ORDER, "oom_control", "order"),
    (off::OC_TOTALPAGES, "oom_control", "totalpages"),
    (off::OC_CHOSEN, "oom_control", "chosen"),
    (off::OC_CHOSEN_POINTS, "oom_control", "chosen_points"),
    (off::OC_CONSTRAINT, "oom_control", "constraint"),
    (off::MEMCG_CSS, "mem_cgroup", "css"),
];

impl TaskLayout {
    pub fn from_btf(btf: &Btf) -> Result<Self, BtfError> {
        let mut offs = [u64::MAX; off::NUM];
        for (i, s, m) in REQUIRED {
            offs[*i] = btf.member(s, m)?.0 as u64;
        }
        let mut missing = Vec::new();
        for (i, s, m) in OPTIONAL {
            match btf.member(s, m) {
                Ok((o, _)) => offs[*i] = o as u64,
                Err(_) => missing.push(*m),
            }
        }
        for (i, s, m) in OOM_CONTROL {
            if let Ok((o, _)) = btf.member(s, m) {
                offs[*i] = o as u64;
            }
        }
        // task->thread.fsbase (x86_64 only; elsewhere absent, and CPython
        // 3.8-3.10 threads are then not matched).
        if let (Ok((t, _)), Ok((f, _))) = (
            btf.member("task_struct", "thread"),
            btf.member("thread_struct", "fsbase"),
        ) {
            offs[off::TASK_FSBASE] = t as u64 + f as u64;
        }
        let rss = RssLayout::from_btf(btf)?;
        offs[off::MM_RSS] = rss.mm_rss_off + rss.count_off;
        offs[off::MM_RSS_STRIDE] = rss.stride;
        // css_set->subsys[memory_cgrp_id]: one offset into the array of
        // css pointers.
        match (btf.member("css_set", "subsys"), btf.enum_value("memory_cgrp_id")) {
            (Ok((o, _)), Ok(id)) if id >= 0 => offs[off::CSS_SET_MEMCG] = o as u64 + 8 * id as u64,
            _ => missing.push("css_set.subsys[memory_cgrp_id]"),
        }
        Ok(Self { offs, missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF has everything the iterator reads.
    #[test]
    fn running_kernel_layout_is_complete() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("skipping: /sys/kernel/btf/vmlinux not readable");
            return;
        };
        let l = TaskLayout::from_btf(&btf).expect("task layout");
        assert!(l.missing.is_empty(), "missing: {:?}", l.missing);
        assert!(l.offs[off::TASK_TGID] > 0 && l.offs[off::TASK_TGID] < 8192);
        assert_ne!(l.offs[off::CSS_SET_MEMCG], u64::MAX);
        for i in [
            off::OC_CHOSEN,
            off::OC_CONSTRAINT,
            off::OC_TOTALPAGES,
            off::MEMCG_CSS,
        ] {
            assert_ne!(l.offs[i], u64::MAX, "oom_control member {i}");
        }
    }
}
