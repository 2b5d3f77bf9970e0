//! `leaktrace report DIR`: a recording turned into something a person
//! reads after the fact: incidents in time order as text, or one
//! self-contained HTML page (static SVG and CSS, no script): a timeline of
//! the incidents, and for each one a chart of the victim, the top growers
//! and the memcg against its limit, and a flame graph of the fault stacks
//! of its evidence bundle. docs/report.md describes the page.
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt::Write as _,
    io::{BufRead, Read},
    path::{Path, PathBuf},
};

mod chart;
mod flame;
mod html;
mod load;
pub mod offline;
#[cfg(test)]
mod tests;
mod text;

use chart::*;
use flame::*;
use html::*;
use load::*;
pub use load::{load, Recording};
use text::*;

use crate::fmt::{term, when};

use anyhow::{bail, Context, Result};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The directory given to `leaktrace record --dir`.
    pub dir: PathBuf,
    /// Write one self-contained HTML page (timeline, charts, flame graphs)
    /// here. Then nothing goes to stdout unless --text is given.
    #[arg(long, value_name = "OUT.html")]
    pub html: Option<PathBuf>,
    /// With --html: print the text report on stdout as well (without
    /// --html it always is).
    #[arg(long)]
    pub text: bool,
    /// Print the bundles' stacks symbolized on this machine from their
    /// stacks.raw.json (build-ids and file offsets): for bundles recorded
    /// on another machine. A binary is used only if its build-id matches;
    /// DIR may also be one bundle. Nothing else is printed.
    #[arg(long)]
    pub symbolize: bool,
    /// With --symbolize: also look for debug files under
    /// DIR/.build-id/xx/yyyy.debug (repeatable; /usr/lib/debug always).
    #[arg(long = "debug-dir", value_name = "DIR")]
    pub debug_dirs: Vec<PathBuf>,
}

/// Longest line `report` reads (an incident with a full task dump is about
/// 1 MiB); a longer one is skipped and counted.
const LINE_CAP: usize = 32 << 20;
/// How far back from the newest summary the summaries are kept, to draw
/// the growers of an incident when the incident does not carry them.
const RECENT_MS: u64 = 10 * 60 * 1000;
/// And at most this many summaries (0.5 s apart: 10 minutes).
const RECENT_SUMMARIES: usize = 1200;
/// Rows kept of one summary (record writes the top 10).
const SUMMARY_ROWS: usize = 10;
/// Points kept of one history in an incident (the newest).
const HISTORY_POINTS: usize = 2048;
/// A chart reaches back this far before the kill at least.
const CHART_BACK_MS: u64 = 60_000;
/// Growers drawn besides the victim.
const GROWERS: usize = 3;
/// Bundles not tied to an incident that get a flame graph (the newest).
const LOOSE_FLAMES: usize = 20;
/// Bytes read of a bundle's stacks file.
const STACKS_CAP: u64 = 8 << 20;

pub fn run(args: ReportArgs) -> Result<()> {
    if args.symbolize {
        print!("{}", offline::symbolize_text(&args.dir, &args.debug_dirs)?);
        return Ok(());
    }
    let rec = load(&args.dir)?;
    if args.html.is_none() || args.text {
        print!("{}", render_text(&args.dir, &rec));
    }
    if let Some(out) = &args.html {
        std::fs::write(out, render_html(&args.dir, &rec))
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {}", term(&out.display().to_string()));
    }
    Ok(())
}
