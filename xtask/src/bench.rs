use std::path::Path;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// Page-fault-heavy loop with and without leaktrace attached.
    Overhead,
}

pub fn run(_root: &Path, _bin: &Path, _which: Bench) -> Result<()> {
    anyhow::bail!("not yet")
}
