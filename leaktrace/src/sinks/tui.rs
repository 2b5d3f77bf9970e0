//! The live terminal view. Rendering only: all numbers come from the
//! samples. Every string a process controls is escaped (`fmt::term`)
//! before it reaches the terminal: ratatui passes control bytes through.
use std::{
    collections::VecDeque,
    io::IsTerminal,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
};

use anyhow::Result;
use crossterm::{
    event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers},
    execute,
    terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{
    backend::CrosstermBackend,
    layout::{Constraint, Layout},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Paragraph, Row, Table},
    Terminal,
};

use super::{Event, Flow, Sink, View};
use crate::{
    fmt::{bytes, rate, term},
    model::{incident::Incident, sample::Sample, trend::Trend},
};

pub fn is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

fn trend_color(t: Trend) -> Color {
    match t {
        Trend::Growing => Color::Red,
        Trend::Step => Color::Yellow,
        Trend::Spike => Color::Cyan,
        Trend::Stable => Color::Reset,
    }
}

/// Incidents kept for the list (a summary line each).
const MAX_INCIDENTS: usize = 10_000;

struct Shown {
    ts_ms: u64,
    text: String,
    wrong_victim: bool,
}

/// Restores the terminal on drop, including when unwinding from a panic.
pub struct TuiSink {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
    view: View,
    hooks: String,
    incidents: VecDeque<Shown>,
    incidents_total: u64,
    /// Lines the incident list is scrolled by (set by the key thread).
    scroll: Arc<AtomicUsize>,
    quit: Arc<AtomicBool>,
}

impl TuiSink {
    pub fn start(view: View, hooks: String) -> Result<Self> {
        enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen) {
            let _ = disable_raw_mode();
            return Err(e.into());
        }
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
        let scroll = Arc::new(AtomicUsize::new(0));
        let quit = Arc::new(AtomicBool::new(false));
        spawn_keys(scroll.clone(), quit.clone());
        Ok(Self {
            terminal: Terminal::new(CrosstermBackend::new(stdout))?,
            view,
            hooks,
            incidents: VecDeque::new(),
            incidents_total: 0,
            scroll,
            quit,
        })
    }

    fn draw(&mut self, s: &Sample) -> Result<()> {
        let hooks = self.hooks.clone();
        let rows = self.view.rows(s);
        let groups = self.view.groups(s);
        let scroll = self.scroll.load(Ordering::Relaxed);
        let (incidents, total) = (&self.incidents, self.incidents_total);
        self.terminal.draw(|f| {
            let n_inc = incidents.len().min(6) as u16;
            let findings: &[String] = s.ledger.as_ref().map_or(&[], |l| &l.findings);
            let n_led = findings.len().min(3) as u16;
            let [head, led_area, inc_area, procs, groups_area] = Layout::vertical([
                Constraint::Length(3),
                Constraint::Length(if n_led > 0 { n_led + 1 } else { 0 }),
                Constraint::Length(if n_inc > 0 { n_inc + 1 } else { 0 }),
                Constraint::Percentage(70),
                Constraint::Percentage(30),
            ])
            .areas(f.area());
            header(f, head, s, &hooks);
            if n_led > 0 {
                ledger_lines(f, led_area, findings);
            }
            if n_inc > 0 {
                incident_list(f, inc_area, incidents, total, scroll, n_inc as usize);
            }
            process_table(f, procs, &rows);
            group_table(f, groups_area, &groups);
        })?;
        Ok(())
    }

    fn add_incident(&mut self, i: &Incident) {
        self.incidents_total += 1;
        if self.incidents.len() == MAX_INCIDENTS {
            self.incidents.pop_front();
        }
        self.incidents.push_back(Shown {
            ts_ms: i.ts_ms,
            text: term(&i.summary).into_owned(),
            wrong_victim: !i.victim_was_top_grower,
        });
    }
}

impl Sink for TuiSink {
    fn name(&self) -> &'static str {
        "tui"
    }

    fn handle(&mut self, ev: &Event) -> Result<Flow> {
        if self.quit.load(Ordering::Relaxed) {
            return Ok(Flow::Stop);
        }
        match ev {
            Event::Sample(s) => self.draw(s)?,
            Event::Incident(i) => self.add_incident(i),
            Event::Status(_) | Event::Evidence(_) => {}
        }
        Ok(Flow::Continue)
    }
}

fn header(f: &mut ratatui::Frame, area: ratatui::layout::Rect, s: &Sample, hooks: &str) {
    let k = &s.kernel;
    let dropped: u64 =
        k.sink_drops.iter().map(|d| d.1).sum::<u64>() + k.counters.oom_lost + k.counters.exits_lost;
    let lines = vec![
        Line::from(format!(
            "leaktrace watch  {} processes, sampled with the {} path in {:.1} ms  lost events: {dropped}  q: quit",
            s.processes_total, k.data_path, k.pass_ms,
        )),
        Line::from(format!("hooks  {hooks}")).style(Style::default().fg(Color::DarkGray)),
    ];
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::BOTTOM)),
        area,
    );
}

/// Memory no process holds that grew (the host ledger's findings).
fn ledger_lines(f: &mut ratatui::Frame, area: ratatui::layout::Rect, findings: &[String]) {
    let lines: Vec<Line> = findings
        .iter()
        .take(3)
        .map(|t| Line::from(term(t).into_owned()).style(Style::default().fg(Color::Yellow)))
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .title("host memory no process holds")
                .borders(Borders::TOP),
        ),
        area,
    );
}

/// Every OOM kill since leaktrace started, newest first, scrolled by `scroll`.
fn incident_list(
    f: &mut ratatui::Frame,
    area: ratatui::layout::Rect,
    incidents: &VecDeque<Shown>,
    total: u64,
    scroll: usize,
    n: usize,
) {
    let scroll = scroll.min(incidents.len().saturating_sub(1));
    let lines: Vec<Line> = incidents
        .iter()
        .rev()
        .skip(scroll)
        .take(n)
        .map(|i| {
            let style = if i.wrong_victim {
                Style::default().fg(Color::Magenta).add_modifier(Modifier::BOLD)
            } else {
                Style::default().fg(Color::Red)
            };
            Line::from(format!("{}  {}", crate::fmt::when(i.ts_ms), i.text)).style(style)
        })
        .collect();
    let title = format!(" OOM kills: {total} since start (newest first; up/down scrolls, {scroll} above) ");
    f.render_widget(
        Paragraph::new(lines).block(Block::default().title(title).borders(Borders::TOP)),
        area,
    );
}

fn process_table(
    f: &mut ratatui::Frame,
    area: ratatui::layout::Rect,
    rows: &[&crate::model::sample::ProcessRow],
) {
    let body = rows.iter().map(|p| {
        Row::new(vec![
            p.pid.to_string(),
            term(&p.comm).into_owned(),
            // The unit, container or pod when the path names one, else
            // the cgroup path.
            crate::host::attribution::label(&p.attribution).unwrap_or_else(|| term(&p.cgroup).into_owned()),
            p.trend.as_str().to_string(),
            rate(p.growth_bytes_per_sec),
            rate(p.growth_bytes_per_sec_long),
            bytes(p.rss_bytes as f64),
            bytes(p.rss_anon_bytes as f64),
            bytes(p.rss_file_bytes as f64),
            bytes(p.rss_shmem_bytes as f64),
            bytes(p.swap_bytes as f64),
            format!("{:.0}", p.faults_per_sec),
            term(&p.cmdline).into_owned(),
        ])
        .style(Style::default().fg(trend_color(p.trend)))
    });
    let widths = [
        Constraint::Length(7),
        Constraint::Length(15),
        Constraint::Length(20),
        Constraint::Length(8),
        Constraint::Length(13),
        Constraint::Length(13),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Min(10),
    ];
    let header = Row::new(vec![
        "PID",
        "COMM",
        "UNIT/CONTAINER",
        "TREND",
        "GROWTH 10s",
        "GROWTH 60s",
        "RSS",
        "ANON",
        "FILE",
        "SHMEM",
        "SWAP",
        "FLT/s",
        "CMDLINE",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let t = Table::new(body, widths).header(header).block(
        Block::default()
            .title(" processes, by growth ")
            .borders(Borders::TOP),
    );
    f.render_widget(t, area);
}

fn group_table(
    f: &mut ratatui::Frame,
    area: ratatui::layout::Rect,
    groups: &[&crate::model::sample::GroupRow],
) {
    let rows = groups.iter().map(|g| {
        Row::new(vec![
            g.leader_pid.to_string(),
            term(&g.comm).into_owned(),
            g.members.to_string(),
            // PSS: shared pages once. Until read, the RSS sum, marked.
            g.pss_bytes.map_or_else(
                || format!("({} rss sum)", bytes(g.rss_bytes as f64)),
                |p| bytes(p as f64),
            ),
            g.uss_bytes.map_or_else(|| "-".into(), |u| bytes(u as f64)),
            rate(g.growth_bytes_per_sec),
            g.trend.as_str().into(),
            term(&g.exe).into_owned(),
        ])
    });
    let widths = [
        Constraint::Length(7),
        Constraint::Length(15),
        Constraint::Length(8),
        Constraint::Length(22),
        Constraint::Length(10),
        Constraint::Length(13),
        Constraint::Length(8),
        Constraint::Min(10),
    ];
    let t = Table::new(rows, widths)
        .header(
            Row::new(vec![
                "LEADER",
                "COMM",
                "MEMBERS",
                "PSS",
                "USS",
                "GROWTH 10s",
                "TREND",
                "EXE",
            ])
            .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::default().title(" process groups ").borders(Borders::TOP));
    f.render_widget(t, area);
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
}

impl Drop for TuiSink {
    fn drop(&mut self) {
        restore();
        let _ = self.terminal.show_cursor();
    }
}

/// Reads keys on a plain thread (crossterm's reads block): q, Esc or
/// Ctrl-C quit (raw mode turns Ctrl-C into a key); up/down scroll the
/// incident list.
fn spawn_keys(scroll: Arc<AtomicUsize>, quit: Arc<AtomicBool>) {
    let _ = std::thread::spawn(move || loop {
        match event::read() {
            Ok(TermEvent::Key(k)) if k.kind == KeyEventKind::Press => {
                let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                    quit.store(true, Ordering::Relaxed);
                    // SAFETY: raising SIGINT in our own process, which the
                    // main thread handles as a request to stop.
                    unsafe { libc::raise(libc::SIGINT) };
                    return;
                }
                match k.code {
                    KeyCode::Down => {
                        scroll.fetch_add(1, Ordering::Relaxed);
                    }
                    KeyCode::Up => {
                        let _ = scroll.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                            Some(v.saturating_sub(1))
                        });
                    }
                    _ => {}
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    });
}
