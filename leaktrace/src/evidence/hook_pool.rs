//! The one place --exec-on-trigger and --exec-on-oom commands are started
//! from: at most HOOKS_RUNNING_MAX run at once, at most HOOKS_QUEUE_MAX
//! wait, and a further one is dropped: counted (limit `exec_queue`, the
//! metric lost_events_total{kind="hooks"}), and its exec.json says so. An
//! OOM storm of hundreds of kills therefore starts a handful of commands,
//! not hundreds (issue 21).
//!
//! The process group of every running command is known here, so that the
//! recorder kills them all when it exits, by any path (`kill_all`). A
//! kill -9 of the recorder cannot run that: then PR_SET_PDEATHSIG
//! (exec.rs) kills each command, and the hooks' cgroup (hook_sandbox.rs)
//! is emptied by the next recorder.
use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
};

use crate::limits::{HOOKS_QUEUE_MAX, HOOKS_RUNNING_MAX};

use super::exec::{ExecJob, ExecOutcome};

type After = Box<dyn FnOnce(ExecOutcome) + Send>;

struct State {
    running: usize,
    queue: VecDeque<(ExecJob, After)>,
    /// Process groups of the commands running now (at most
    /// HOOKS_RUNNING_MAX).
    groups: Vec<libc::pid_t>,
    /// The recorder is exiting: nothing more starts.
    closed: bool,
    /// The most commands that ran at once.
    peak: usize,
    started: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    running: 0,
    queue: VecDeque::new(),
    groups: Vec::new(),
    closed: false,
    peak: 0,
    started: 0,
});

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `job` when a slot is free, then `after` with its outcome (on the
/// worker thread). False if it was dropped: the queue was full or the
/// recorder is exiting; exec.json then says so.
pub fn submit(job: ExecJob, after: impl FnOnce(ExecOutcome) + Send + 'static) -> bool {
    let mut s = state();
    let why = if s.closed {
        Some("the recorder is exiting".to_string())
    } else if s.running < HOOKS_RUNNING_MAX {
        s.running += 1;
        s.peak = s.peak.max(s.running);
        drop(s);
        let after = Box::new(after) as After;
        if std::thread::Builder::new()
            .name("lt-exec".into())
            .spawn(move || worker(job, after))
            .is_err()
        {
            state().running -= 1;
            crate::limits::HOOKS_QUEUE.hit();
        }
        return true;
    } else if s.queue.len() < HOOKS_QUEUE_MAX {
        s.queue.push_back((job, Box::new(after)));
        drop(s);
        crate::limits::HOOKS_RUNNING.hit();
        return true;
    } else {
        Some(format!(
            "dropped: {HOOKS_RUNNING_MAX} commands were running and {HOOKS_QUEUE_MAX} waiting (limit exec_queue)"
        ))
    };
    drop(s);
    crate::limits::HOOKS_QUEUE.hit();
    super::exec::write_dropped(&job, why.unwrap_or_default());
    false
}

/// Runs jobs until the queue is empty. The thread that spawned a command
/// waits for it: PR_SET_PDEATHSIG fires when that thread ends, so it must
/// outlive the command.
fn worker(mut job: ExecJob, mut after: After) {
    loop {
        state().started += 1;
        let out = super::exec::run_exec(job, &Pool);
        after(out);
        let mut s = state();
        match s.queue.pop_front() {
            Some((j, a)) if !s.closed => {
                (job, after) = (j, a);
            }
            _ => {
                s.running -= 1;
                return;
            }
        }
    }
}

/// The pool as exec.rs sees it: where the running commands' process
/// groups are kept.
struct Pool;

impl super::exec::Groups for Pool {
    fn started(&self, pgid: libc::pid_t) -> bool {
        let mut s = state();
        s.groups.push(pgid);
        !s.closed
    }

    fn finished(&self, pgid: libc::pid_t) -> bool {
        let mut s = state();
        s.groups.retain(|g| *g != pgid);
        s.closed
    }
}

/// (commands started, the most that ran at once, dropped).
pub fn counts() -> (u64, usize, u64) {
    let s = state();
    (s.started, s.peak, crate::limits::HOOKS_QUEUE.hits())
}

/// At the recorder's exit: nothing more starts, what waits is dropped, and
/// every running command's process group and the hooks' cgroup are killed;
/// their exec.json then says "the recorder exited".
pub fn kill_all() {
    let (groups, dropped) = {
        let mut s = state();
        s.closed = true;
        let q: Vec<_> = s.queue.drain(..).collect();
        (s.groups.clone(), q)
    };
    for g in groups {
        // SAFETY: a process group this recorder started.
        unsafe { libc::killpg(g, libc::SIGKILL) };
    }
    for (job, _) in dropped {
        crate::limits::HOOKS_QUEUE.hit();
        super::exec::write_dropped(&job, "dropped: the recorder exited before it could run".into());
    }
    super::hook_sandbox::kill_all();
    // The workers see their commands die and write exec.json: wait for
    // them (bounded), so that no killed command is left without one.
    let deadline = std::time::Instant::now() + EXIT_WAIT;
    while state().running > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// How long the recorder's exit waits for killed commands' exec.json.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
