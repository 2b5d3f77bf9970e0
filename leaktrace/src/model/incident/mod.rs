//! OOM incidents: the kernel events from the OOM ring buffer are assembled
//! into one incident per kill. Pure logic: the kernel records come in as
//! [`Record`]s and what leaktrace knows about processes comes through the
//! [`OomContext`] trait, so the assembly is tested without a kernel.
mod assembler;
mod context;
mod finish;
pub mod kernel_text;
pub mod oom_memory;
mod prose;
mod sibling;
mod stall;
#[cfg(test)]
pub(crate) mod tests;
mod types;

pub use assembler::Assembler;
use assembler::{victim_start, Pending};
pub use context::{OomContext, ProcSnapshot};
use finish::*;
use prose::*;
pub use prose::growth_words;
use stall::*;
pub use types::*;

use leaktrace_common::OomConstraint;

use crate::host::attribution::{attribute, Attribution};
use serde::Serialize;

pub use crate::kernel::oom_ring::Record;
use crate::kernel::oom_ring::{
    ConsoleLine, Constraint, Control, HookSource, LineEnd, LockHeld, OomEvent, ReaperStage, Victim as Marked,
};
use kernel_text::{Candidate, Report};

/// Most report lines kept per incident (a global OOM on a busy host prints
/// one line per task).
pub const MAX_LINES: usize = crate::limits::OOM_REPORT_LINES_MAX;
/// Incidents being assembled at once.
const MAX_PENDING: usize = crate::limits::PENDING_INCIDENTS_MAX;
/// How long after the kill to wait for the victim's exit and the reaper.
const SETTLE_NS: u64 = 10_000_000_000;
/// After the victim exited, how long to wait for the reaper to finish.
const AFTER_EXIT_NS: u64 = 1_000_000_000;
/// A report with no victim (nothing killable) is closed after this.
const NO_VICTIM_NS: u64 = 30_000_000_000;
/// Growth below this is not "growing" for the right/wrong victim question.
const MIN_GROWTH: f64 = 4.0 * 1024.0 * 1024.0;
/// The window before the OOM in which growth is compared.
pub const GROWTH_WINDOW_S: f64 = 60.0;
