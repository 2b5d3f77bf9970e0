//! `--exec-on-oom`: a command run after each OOM incident is written, like
//! earlyoom's notification hooks. Each incident is written to
//! `<DIR>/incidents/<ts_ms>-<victim pid>/incident.json` (0600, through the
//! directory handle), and the command runs with no shell, the same
//! sandbox as --exec-on-trigger (cleared environment with a fixed PATH, its
//! own process group killed whole at the timeout, RLIMIT_FSIZE, output in
//! that directory, at most 4 at once: evidence/hook_pool.rs) and these
//! variables: LEAKTRACE_PID, LEAKTRACE_COMM, LEAKTRACE_CGROUP, LEAKTRACE_UNIT, LEAKTRACE_CONTAINER_ID,
//! LEAKTRACE_POD_UID, LEAKTRACE_WRONG_VICTIM (1 or 0) and
//! LEAKTRACE_INCIDENT (the JSON file). {pid}, {comm} and {incident} are
//! replaced inside arguments. At most MAX_KEPT incident directories are
//! kept; only names of that pattern are ever deleted.
use std::{path::PathBuf, sync::Arc};

use anyhow::Result;

use super::{Event, Flow, Sink};
use crate::{evidence::exec, model::incident::Incident, outdir::OutDir};

/// Incident directories kept.
const MAX_KEPT: usize = 1000;

pub struct ExecOnOomSink {
    argv: Vec<String>,
    root: PathBuf,
    dir: Option<Arc<OutDir>>,
    timeout: f64,
}

/// `<digits>-<digits>`: an incident directory's name.
fn is_incident_name(n: &str) -> bool {
    let mut p = n.splitn(2, '-');
    let digits = |s: Option<&str>| {
        s.is_some_and(|s| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
    };
    digits(p.next()) && digits(p.next())
}

impl ExecOnOomSink {
    pub fn new(argv: Vec<String>, root: PathBuf, timeout: f64) -> Self {
        Self {
            argv,
            root,
            dir: None,
            timeout,
        }
    }

    /// `<root>/incidents`, opened (and vetted) again if it was removed.
    fn incidents(&mut self) -> Result<Arc<OutDir>> {
        if self.dir.as_ref().is_none_or(|d| d.is_deleted()) {
            self.dir = Some(Arc::new(OutDir::open(&self.root)?.subdir("incidents")?));
        }
        Ok(self.dir.clone().expect("set above"))
    }

    fn prune(dir: &OutDir) {
        let mut names: Vec<String> = dir
            .names()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .filter(|n| is_incident_name(n))
            .collect();
        if names.len() <= MAX_KEPT {
            return;
        }
        names.sort_by_key(|n| {
            n.split('-')
                .next()
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0)
        });
        for n in &names[..names.len() - MAX_KEPT] {
            if dir.remove_bundle(n).is_ok() {
                crate::limits::INCIDENT_FILES.hit();
            }
        }
    }

    fn run(&mut self, i: &Incident) -> Result<()> {
        let dir = self.incidents()?;
        let pid = i.victim.as_ref().map_or(0, |v| v.pid);
        let name = format!("{}-{pid}", i.ts_ms);
        let d = match dir.mkdir_new(&name) {
            Ok(d) => d,
            // Two kills in the same ms for the same pid cannot happen; a
            // leftover from an earlier run can.
            Err(_) => dir.open_subdir(&name)?,
        };
        if let Err(e) = d.write_atomic("incident.json", crate::fmt::json_line(i)?.as_bytes()) {
            crate::losses::output_write_failed();
            return Err(e.into());
        }
        let file = d.path().join("incident.json");
        let (comm, cgroup, attr) = i
            .victim
            .as_ref()
            .map(|v| (v.comm.as_str(), v.cgroup.as_str(), v.attribution.clone()))
            .unwrap_or(("", "", Default::default()));
        let argv: Vec<String> = exec::substitute(&self.argv, pid, comm, d.path())
            .into_iter()
            .map(|a| a.replace("{incident}", &file.to_string_lossy()))
            .collect();
        let mut env = exec::place_env(cgroup, &attr);
        env.push((
            "LEAKTRACE_WRONG_VICTIM",
            (i.wrong_victim() as u8).to_string(),
        ));
        env.push(("LEAKTRACE_INCIDENT", file.to_string_lossy().into_owned()));
        let job = exec::ExecJob {
            argv,
            bundle_path: d.path().to_path_buf(),
            bundle: d,
            pid,
            comm: comm.to_string(),
            reason: "oom",
            target: None,
            need_target: false,
            env,
            timeout: self.timeout,
            delay: std::time::Duration::ZERO,
        };
        // Bounded: an OOM storm starts a few commands and drops, counts
        // and records the rest (hook_pool.rs).
        crate::evidence::hook_pool::submit(job, |_| {});
        Self::prune(&dir);
        Ok(())
    }
}

impl Sink for ExecOnOomSink {
    fn name(&self) -> &'static str {
        "exec-on-oom"
    }

    fn handle(&mut self, ev: &Event) -> Result<Flow> {
        if let Event::Incident(i) = ev {
            if let Err(e) = self.run(i) {
                log::warn!("--exec-on-oom for the incident at {}: {e:#}", i.ts_ms);
            }
        }
        Ok(Flow::Continue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_incident_directories_are_pruned() {
        assert!(is_incident_name("1795379267519-4242"));
        assert!(!is_incident_name("notes"));
        assert!(!is_incident_name("1795379267519-42-x"));
        assert!(!is_incident_name("-1"));
    }
}
