//! Pure logic over what the kernel reported: the per-process tracker and
//! its histories, trends, groups, and OOM incidents with their verdicts.
//! No I/O: every part is unit-tested on synthetic input.
pub mod aftermath;
pub mod filter;
pub mod groups;
pub mod history;
pub mod incident;
pub mod ledger;
pub mod private;
pub mod sample;
pub mod tracker;
pub mod trend;
