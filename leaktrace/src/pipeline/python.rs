//! Finds out, off the sampling thread, whether a new suspect runs CPython
//! and how to walk its frames (in the sandboxed child), then tells the
//! kernel (`PY_PROCS`). A suspect's faults are sampled from the moment it
//! is one; its Python frames from the moment this answers.
use std::sync::{
    mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
    Arc, Mutex,
};

use crate::{evidence, kernel::stacks::Stacks};

/// Suspects waiting to be looked at; past it they are looked at on a
/// later tick.
const QUEUE: usize = 64;

/// The sampling thread's end.
pub struct Detector {
    tx: SyncSender<u32>,
}

impl Detector {
    /// Starts the detector thread.
    pub fn start(stacks: Arc<Mutex<Stacks>>) -> anyhow::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        super::spawn("lt-python", move || run(rx, stacks))?;
        Ok(Self { tx })
    }

    /// New suspects (from `PyStacks::follow`). One that does not fit the
    /// queue is forgotten, so the next tick offers it again.
    pub fn offer(&self, stacks: &mut Stacks, pids: Vec<u32>) {
        for pid in pids {
            match self.tx.try_send(pid) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    if let Some(py) = stacks.py.as_mut() {
                        py.status.remove(&pid);
                    }
                }
            }
        }
    }
}

fn run(rx: Receiver<u32>, stacks: Arc<Mutex<Stacks>>) {
    for pid in rx {
        let answer = match evidence::langstacks::python_kind(pid) {
            None => Err("not CPython".to_string()),
            Some(_) => evidence::pyframes::detect(pid),
        };
        match &answer {
            Ok(t) => log::info!(
                "pid {pid}: CPython {} ({}, offsets: {}): Python frames are read at its sampled faults",
                crate::fmt::term(&t.version),
                crate::fmt::term(&t.binary),
                t.layout.source
            ),
            Err(e) if e != "not CPython" => {
                log::info!(
                    "pid {pid}: CPython, but its frames cannot be read: {}",
                    crate::fmt::term(e)
                )
            }
            Err(_) => {}
        }
        if let Ok(mut s) = stacks.lock() {
            if let Some(py) = s.py.as_mut() {
                py.set(pid, answer);
            }
        }
    }
}
