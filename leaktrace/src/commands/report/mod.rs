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
mod filter;
mod flame;
mod html;
mod input;
mod load;
mod losses;
pub mod offline;
mod output;
mod storm;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rotation;
#[cfg(test)]
mod tests_storm;
mod text;

use chart::*;
pub use filter::{time_arg, Filter, TimeArg};
use flame::*;
use html::*;
use input::*;
use load::*;
pub use load::{load, Recording};
use losses::*;
use storm::*;
use text::*;

use crate::fmt::{term, when};

use anyhow::{bail, Context, Result};

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
    /// With --html: make the page readable by the file's group (mode
    /// 0640); it is 0600 otherwise.
    #[arg(long)]
    pub group_readable: bool,
    /// Only what came at or after this time: RFC 3339
    /// (2026-12-05T14:00:00Z) or a duration before the recording's end
    /// (10m: its last ten minutes).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub since: Option<TimeArg>,
    /// Only what came at or before this time (as --since).
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub until: Option<TimeArg>,
    /// Only OOM kills in this cgroup or below it (the OOM's memcg or the
    /// victim's cgroup), as in /proc/PID/cgroup.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// Only OOM kills in this systemd unit (nginx.service).
    #[arg(long)]
    pub unit: Option<String>,
    /// Only OOM kills whose victim, invoker or top grower is this pid, and
    /// its evidence bundles.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Only incident N (numbered from 1 in the whole recording, as the
    /// report numbers them), in full, also when it is part of a storm.
    #[arg(long, value_name = "N")]
    pub incident: Option<usize>,
}

impl ReportArgs {
    fn filter(&self) -> Filter {
        Filter {
            since: self.since,
            until: self.until,
            cgroup: self.cgroup.clone(),
            unit: self.unit.clone(),
            pid: self.pid,
            incident: self.incident,
        }
    }
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
/// The newest time a record may carry (2200-01-01, unix ms): a later one
/// is skipped, so that no range or tick loop sees an absurd span.
const TS_MAX: u64 = 7_258_118_400_000;
/// Bytes the kept incidents and evidence events may take (an estimate from
/// their strings and series); later ones are counted, not kept.
const RETAINED_CAP: usize = 64 << 20;
/// Incidents kept, at most (each is a section of the page).
const MAX_INCIDENTS: usize = 2000;
/// Evidence events kept, at most.
const MAX_EVIDENCE: usize = 20_000;
/// Evidence bundles not tied to an incident listed in the page (newest).
const LOOSE_LISTED: usize = 1000;
/// Restarts of the recorder kept for the timeline (more are counted).
const MAX_RESTARTS: usize = 1000;
/// Bytes kept of a comm, a reason or another short word of a record.
const COMM_CAP: usize = 64;
/// Bytes kept of a longer string of a record (a command line, a path, a
/// summary; the writer caps these at 4096).
const TEXT_CAP: usize = 4096;

pub fn run(args: ReportArgs) -> Result<()> {
    if args.symbolize {
        output::to_stdout(&offline::symbolize_text(&args.dir, &args.debug_dirs)?)?;
        return Ok(());
    }
    let mut rec = load(&args.dir)?;
    filter::apply(&mut rec, &args.filter());
    if args.html.is_none() || args.text {
        output::to_stdout(&render_text(&args.dir, &rec))?;
    }
    if let Some(out) = &args.html {
        output::write_private(out, &render_html(&args.dir, &rec), args.group_readable)?;
        eprintln!("wrote {}", term(&out.display().to_string()));
    }
    Ok(())
}
