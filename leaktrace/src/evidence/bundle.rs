//! Evidence bundles: one directory per trigger, built in a hidden
//! temporary directory of 0600 files, then renamed into place, so a reader
//! never sees half a bundle. Every file operation goes through directory
//! handles (`OutDir`), never a path, and only names that match the bundle
//! pattern are ever deleted.
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Trigger, TriggerArgs};
use crate::{model::sample::ProcessRow, outdir::OutDir};

/// `<ts_ms>-<pid>-<comm>`, the name of a bundle, as `write_bundle` makes
/// it: digits, '-', digits, '-', then at most 15 of [A-Za-z0-9_-].
pub fn is_bundle_name(name: &str) -> bool {
    let mut parts = name.splitn(3, '-');
    let digits = |s: Option<&str>| {
        s.is_some_and(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
    };
    digits(parts.next())
        && digits(parts.next())
        && parts.next().is_some_and(|c| {
            c.len() <= 15
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A half-built bundle: `.tmp-` and a bundle name.
fn is_temp_bundle_name(name: &str) -> bool {
    name.strip_prefix(".tmp-").is_some_and(is_bundle_name)
}

fn safe_comm(c: &str) -> String {
    c.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(15)
        .collect()
}

/// Everything that goes into one bundle besides the /proc copies.
pub struct BundleInput<'a> {
    pub root: &'a OutDir,
    pub ts_ms: u64,
    pub row: &'a ProcessRow,
    pub trigger: &'a Trigger,
    pub limit: u64,
    pub limit_source: &'a str,
    pub args: &'a TriggerArgs,
    pub timeline: Vec<(u64, u64)>,
    pub stacks: String,
    /// More files (stacks.folded, stacks.raw.json, python_stacks.txt):
    /// name and content, each already bounded by its maker.
    pub extra_files: Vec<(&'static str, Vec<u8>)>,
    /// More meta.json fields (stack_files, python, go).
    pub extra_meta: serde_json::Map<String, serde_json::Value>,
}

/// meta.json of a bundle.
#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Meta<'a> {
    ts_ms: u64,
    pid: u32,
    comm: &'a str,
    cmdline: &'a str,
    cgroup: &'a str,
    /// unit, slice, runtime, container_id, pod_uid (null when they do not
    /// apply; docs/attribution.md).
    #[serde(flatten)]
    attribution: &'a crate::host::attribution::Attribution,
    trigger: &'a Trigger,
    thresholds: Thresholds,
    limit_bytes: u64,
    limit_source: &'a str,
    rss_bytes: u64,
    rss_anon_bytes: u64,
    rss_file_bytes: u64,
    rss_shmem_bytes: u64,
    growth_bytes_per_sec: f64,
    growth_bytes_per_sec_long: f64,
    trend: crate::model::trend::Trend,
    stack_period: u32,
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Thresholds {
    rss_pct: f64,
    time_to_limit_s: f64,
    psi_full_pct: f64,
}

/// Writes `<root>/evidence/<ts>-<pid>-<comm>/`: built in a hidden temp
/// directory (0700) and renamed into place, so a reader never sees half a
/// bundle. Returns the bundle's path and a handle on it.
pub fn write_bundle(b: &BundleInput) -> Result<(PathBuf, OutDir)> {
    let ev = b.root.subdir("evidence")?;
    let name = format!("{}-{}-{}", b.ts_ms, b.row.pid, safe_comm(&b.row.comm));
    let tmp_name = format!(".tmp-{name}");
    if ev.exists(&tmp_name) {
        let _ = ev.remove_bundle(&tmp_name);
    }
    let tmp = ev.mkdir_new(&tmp_name)?;
    let res = fill_bundle(b, &tmp).and_then(|()| {
        ev.rename(&tmp_name, &ev, &name)
            .with_context(|| format!("renaming {} into place", tmp.path().display()))?;
        ev.open_subdir(&name)
    });
    if res.is_err() {
        // A full disk must not leave half bundles behind.
        let _ = ev.remove_bundle(&tmp_name);
    }
    res.map(|d| (d.path().to_path_buf(), d))
}

fn fill_bundle(b: &BundleInput, tmp: &OutDir) -> Result<()> {
    let meta = Meta {
        ts_ms: b.ts_ms,
        pid: b.row.pid,
        comm: &b.row.comm,
        cmdline: &b.row.cmdline,
        cgroup: &b.row.cgroup,
        attribution: &b.row.attribution,
        trigger: b.trigger,
        thresholds: Thresholds {
            rss_pct: b.args.rss_pct,
            time_to_limit_s: b.args.time_to_limit,
            psi_full_pct: b.args.psi_full,
        },
        limit_bytes: b.limit,
        limit_source: b.limit_source,
        rss_bytes: b.row.rss_bytes,
        rss_anon_bytes: b.row.rss_anon_bytes,
        rss_file_bytes: b.row.rss_file_bytes,
        rss_shmem_bytes: b.row.rss_shmem_bytes,
        growth_bytes_per_sec: b.row.growth_bytes_per_sec,
        growth_bytes_per_sec_long: b.row.growth_bytes_per_sec_long,
        trend: b.row.trend,
        stack_period: b.args.stack_period,
        extra: &b.extra_meta,
    };
    tmp.write_atomic("meta.json", crate::fmt::json_line(&meta)?.as_bytes())?;
    for f in [
        "status",
        "smaps_rollup",
        "cgroup",
        "oom_score",
        "oom_score_adj",
        "limits",
    ] {
        // Kernel-made files, small; capped all the same.
        let path = PathBuf::from(format!("/proc/{}/{f}", b.row.pid));
        let data = crate::host::procfs::read_capped(&path, 64 * 1024)
            .map(|(d, _)| d)
            .unwrap_or_else(|e| format!("unreadable: {e}\n").into_bytes());
        tmp.write_atomic(f, &data)?;
    }
    #[derive(Serialize)]
    struct Timeline<'a> {
        pid: u32,
        points: &'a [(u64, u64)],
    }
    tmp.write_atomic(
        "timeline.json",
        &serde_json::to_vec(&Timeline {
            pid: b.row.pid,
            points: &b.timeline,
        })?,
    )?;
    tmp.write_atomic("stacks.txt", b.stacks.as_bytes())?;
    for (name, data) in &b.extra_files {
        tmp.write_atomic(name, data)?;
    }
    Ok(())
}

/// Removes the half-built bundles a crash left behind (names `.tmp-` plus
/// a bundle name, nothing else); returns how many.
pub fn clean_temp_bundles(root: &OutDir) -> usize {
    let Ok(ev) = root.open_subdir("evidence") else {
        return 0;
    };
    let mut n = 0;
    for name in ev.names().unwrap_or_default() {
        let Some(name) = name.to_str() else { continue };
        if is_temp_bundle_name(name) && ev.remove_bundle(name).is_ok() {
            n += 1;
            crate::limits::TEMP_BUNDLES.hit();
        }
    }
    n
}

/// Keeps the bundles under `max_bytes` in total, deleting the oldest. Only
/// names that match the bundle pattern are counted or deleted; anything
/// else in the directory is left alone.
pub fn enforce_budget(root: &OutDir, max_bytes: u64) {
    let Ok(ev) = root.open_subdir("evidence") else {
        return;
    };
    let mut dirs: Vec<(String, u64)> = ev
        .names()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| is_bundle_name(n))
        .map(|n| {
            let size = ev.tree_size(&n);
            (n, size)
        })
        .collect();
    // Names start with the timestamp in ms (13 digits until 2286).
    dirs.sort();
    let mut total: u64 = dirs.iter().map(|d| d.1).sum();
    for (name, size) in dirs {
        if total <= max_bytes {
            break;
        }
        if ev.remove_bundle(&name).is_ok() {
            crate::limits::EVIDENCE_BYTES.hit();
            total = total.saturating_sub(size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        evidence::tests_support::{args, row},
        model::trend::Trend,
    };
    use std::fs;

    const MIB: u64 = 1 << 20;

    #[test]
    fn bundle_names_are_recognised_exactly() {
        assert!(is_bundle_name("1795304114687-42-python3"));
        assert!(is_bundle_name("1000-42-"));
        assert!(!is_bundle_name("1000-42"));
        assert!(!is_bundle_name("important.db"));
        assert!(!is_bundle_name("1000-42-a/b"));
        assert!(!is_bundle_name("1000-x-a"));
        assert!(!is_bundle_name("1000-42-sixteen_chars_xx"));
        assert!(is_temp_bundle_name(".tmp-1000-42-x"));
        assert!(!is_temp_bundle_name(".tmp-notes"));
    }

    #[test]
    fn bundle_is_atomic_private_and_budget_spares_other_names() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("lt-ev-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        let root = OutDir::open(&path).unwrap();
        let a = args();
        let r = row(MIB, 0.0, Trend::Stable);
        let t = Trigger {
            reason: "pid",
            detail: "x".into(),
            secs_left: None,
        };
        let b = BundleInput {
            root: &root,
            ts_ms: 1000,
            row: &r,
            trigger: &t,
            limit: 100 * MIB,
            limit_source: "lim",
            args: &a,
            timeline: vec![(1, 2)],
            stacks: "stack\n".into(),
            extra_files: vec![("stacks.folded", b"main;f 1\n".to_vec())],
            extra_meta: Default::default(),
        };
        let (d, _) = write_bundle(&b).unwrap();
        assert!(d.ends_with("evidence/1000-42-x"));
        assert_eq!(fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(
            fs::metadata(d.join("meta.json")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(fs::read_dir(path.join("evidence")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')));
        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(d.join("meta.json")).unwrap()).unwrap();
        assert_eq!(meta["trigger"]["reason"], "pid");
        for k in ["unit", "slice", "runtime", "container_id", "pod_uid"] {
            assert!(meta.get(k).is_some(), "meta.json lacks {k}: {meta}");
        }
        // A crash leaves a temp bundle; the next start removes it, and
        // only it.
        fs::create_dir(path.join("evidence/.tmp-2000-43-y")).unwrap();
        fs::write(path.join("evidence/.tmp-2000-43-y/meta.json"), b"{").unwrap();
        fs::write(path.join("evidence/notes.txt"), b"keep").unwrap();
        assert_eq!(clean_temp_bundles(&root), 1);
        assert!(!path.join("evidence/.tmp-2000-43-y").exists());
        // Budget 0 deletes every bundle and nothing else.
        enforce_budget(&root, 0);
        let left: Vec<_> = fs::read_dir(path.join("evidence"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, vec!["notes.txt".to_string()]);
        let _ = fs::remove_dir_all(&path);
    }
}
