//! Where --exec-on-trigger and --exec-on-oom commands run: a cgroup of
//! this recorder's own (`leaktrace-hooks/<pid>` under the memory and pids
//! controllers, cgroup v2 or v1) with a memory and a process limit, so that
//! an OOM storm's hooks cannot take the host's memory or pid space, and so
//! that every process a hook left behind (also one that called setsid())
//! can be killed when the recorder exits. Where no cgroup can be made (a
//! read-only /sys/fs/cgroup, as under systemd's ProtectControlGroups), the
//! commands get rlimits instead, and exec.json says which.
use std::{
    ffi::CString,
    path::{Path, PathBuf},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// Memory of all of one recorder's hooks together (cgroup), or the
/// address space of each (rlimit fallback).
pub const HOOK_MEMORY_BYTES: u64 = 1 << 30;
/// Processes of all of one recorder's hooks together (cgroup only).
pub const HOOK_PIDS: u64 = 256;

const BASE: &str = "leaktrace-hooks";

pub enum Sandbox {
    /// The cgroup directories (one per hierarchy) and their cgroup.procs.
    Cgroup {
        dirs: Vec<PathBuf>,
        procs: Vec<CString>,
    },
    Rlimits {
        why: String,
    },
}

static SANDBOX: OnceLock<Sandbox> = OnceLock::new();

/// The sandbox, made on first use.
pub fn get() -> &'static Sandbox {
    SANDBOX.get_or_init(|| match make() {
        Ok((dirs, procs)) => Sandbox::Cgroup { dirs, procs },
        Err(why) => {
            log::info!("exec hooks run under rlimits, not in a cgroup: {why}");
            Sandbox::Rlimits { why }
        }
    })
}

impl Sandbox {
    /// For exec.json: where the command ran and under which limits.
    pub fn describe(&self) -> String {
        match self {
            Sandbox::Cgroup { dirs, .. } => format!(
                "cgroup {} (memory {} MiB, {HOOK_PIDS} processes, for all hooks together)",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + "),
                HOOK_MEMORY_BYTES >> 20
            ),
            Sandbox::Rlimits { why } => format!(
                "rlimits (RLIMIT_AS {} MiB per process, no core files); no cgroup: {why}",
                HOOK_MEMORY_BYTES >> 20
            ),
        }
    }
}

/// The roots to use: a cgroup v2 mount with both controllers, else the v1
/// memory and pids hierarchies.
fn roots() -> Result<Vec<PathBuf>, String> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(|e| format!("/proc/mounts: {e}"))?;
    let mut v1 = (None, None);
    for l in mounts.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(mnt), Some(fstype), Some(opts)) = (f.get(1), f.get(2), f.get(3)) else {
            continue;
        };
        let p = PathBuf::from(mnt);
        if *fstype == "cgroup2" {
            let c = std::fs::read_to_string(p.join("cgroup.controllers")).unwrap_or_default();
            let has = |n: &str| c.split_whitespace().any(|x| x == n);
            if has("memory") && has("pids") {
                return Ok(vec![p]);
            }
        } else if *fstype == "cgroup" {
            let has = |n: &str| opts.split(',').any(|x| x == n);
            if has("memory") {
                v1.0 = Some(p.clone());
            }
            if has("pids") {
                v1.1 = Some(p);
            }
        }
    }
    match v1 {
        (Some(m), Some(p)) if m != p => Ok(vec![m, p]),
        (Some(m), Some(_)) => Ok(vec![m]),
        _ => Err("no cgroup hierarchy with the memory and pids controllers".into()),
    }
}

fn write(p: &Path, v: &str) -> Result<(), String> {
    std::fs::write(p, v).map_err(|e| format!("writing {v:?} to {}: {e}", p.display()))
}

fn make() -> Result<(Vec<PathBuf>, Vec<CString>), String> {
    let me = std::process::id();
    let mut dirs = Vec::new();
    for root in roots()? {
        let v2 = root.join("cgroup.controllers").exists();
        let base = root.join(BASE);
        if v2 {
            // The root has no "no internal processes" rule; BASE holds
            // only the recorders' cgroups.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +pids");
        }
        // First: removing the last stale cgroup removes BASE too, and a
        // BASE made again after its subtree_control was written has no
        // controllers for its children (cgroup v2: no memory.max).
        reap_stale(&base);
        std::fs::create_dir_all(&base).map_err(|e| format!("mkdir {}: {e}", base.display()))?;
        if v2 {
            write(&base.join("cgroup.subtree_control"), "+memory +pids")?;
        }
        let mine = base.join(me.to_string());
        // Not create_dir_all: a BASE another recorder removed meanwhile is
        // an error here, not a BASE without controllers.
        std::fs::create_dir(&mine).map_err(|e| format!("mkdir {}: {e}", mine.display()))?;
        dirs.push(mine.clone());
        let mem = HOOK_MEMORY_BYTES.to_string();
        let pids = HOOK_PIDS.to_string();
        let res = if v2 {
            write(&mine.join("memory.max"), &mem)
                .and_then(|()| write(&mine.join("pids.max"), &pids))
                .map(|()| {
                    let _ = std::fs::write(mine.join("memory.swap.max"), "0");
                })
        } else if mine.join("memory.limit_in_bytes").exists() {
            write(&mine.join("memory.limit_in_bytes"), &mem)
        } else {
            write(&mine.join("pids.max"), &pids)
        };
        if let Err(e) = res {
            remove(&dirs);
            return Err(e);
        }
    }
    let procs = dirs
        .iter()
        .map(|d| CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((dirs, procs))
}

/// Cgroups of recorders that are gone (kill -9): what is left in them is
/// killed, and they are removed.
fn reap_stale(base: &Path) {
    let Ok(rd) = std::fs::read_dir(base) else { return };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: signal 0 only checks that the pid exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            remove(&[e.path()]);
        }
    }
}

/// Kills every process in these cgroups, then removes them (up to 1 s each).
fn remove(dirs: &[PathBuf]) {
    for d in dirs {
        let deadline = Instant::now() + Duration::from_secs(1);
        let _ = std::fs::write(d.join("cgroup.kill"), "1");
        loop {
            let pids: Vec<i32> = std::fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            for p in &pids {
                // SAFETY: the processes in our own hooks' cgroup.
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
            let removed = if pids.is_empty() {
                std::fs::remove_dir(d)
            } else {
                Err(std::io::Error::other(format!("{} process(es) left", pids.len())))
            };
            match removed {
                Ok(()) => {
                    // The shared parent too, when no other recorder has its
                    // cgroup there (rmdir refuses a non-empty one).
                    if let Some(parent) = d.parent().filter(|p| p.ends_with(BASE)) {
                        let _ = std::fs::remove_dir(parent);
                    }
                    break;
                }
                Err(e) if Instant::now() > deadline => {
                    log::warn!("cannot remove the exec hooks' cgroup {}: {e}", d.display());
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// Every process still in the hooks' cgroup is killed and the cgroup
/// removed (at the recorder's exit, whatever the path).
pub fn kill_all() {
    if let Some(Sandbox::Cgroup { dirs, .. }) = SANDBOX.get() {
        remove(dirs);
    }
}

/// In the child, between fork and exec: joins the cgroup, or sets the
/// rlimits. Only async-signal-safe calls.
///
/// # Safety
/// Call only in a `pre_exec` closure.
pub unsafe fn enter(s: &Sandbox) -> std::io::Result<()> {
    match s {
        Sandbox::Cgroup { procs, .. } => {
            for p in procs {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0": the writing process itself.
                let n = libc::write(fd, b"0".as_ptr() as *const libc::c_void, 1);
                libc::close(fd);
                if n != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Sandbox::Rlimits { .. } => {
            for (res, v) in [(libc::RLIMIT_AS, HOOK_MEMORY_BYTES), (libc::RLIMIT_CORE, 0)] {
                let r = libc::rlimit {
                    rlim_cur: v,
                    rlim_max: v,
                };
                if libc::setrlimit(res, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
    }
    Ok(())
}
