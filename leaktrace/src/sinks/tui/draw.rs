//! Drawing one screen: the header, the incident list, the process and
//! group tables, and the help or detail screen over them. The rows come
//! from [`lists`], the same function that tells the keys what is on
//! screen.
use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Row, Table, TableState, Wrap},
    Frame,
};

use super::{
    data::Data,
    detail, help,
    layout::{fit, Col, Fit, SPACING},
    rows::{self, GROUP_COLS, PROC_COLS},
    state::{Overlay, Pane, State, Target, Visible},
};
use crate::{
    fmt::{term, when},
    model::{
        incident::Incident,
        sample::{GroupRow, ProcessRow, Sample},
        trend::Trend,
    },
    sinks::View,
};

/// The rows on screen after the view, the filter and the sort.
pub struct Lists<'a> {
    pub procs: Vec<&'a ProcessRow>,
    pub groups: Vec<&'a GroupRow>,
    /// Newest first.
    pub incidents: Vec<(u64, &'a Incident)>,
}

pub fn lists<'a>(d: &'a Data, st: &State, view: &View) -> Lists<'a> {
    let f = st.active_filter();
    let (mut procs, mut groups) = match &d.shown {
        Some(s) => (view.rows(s), view.groups(s)),
        None => (Vec::new(), Vec::new()),
    };
    procs.retain(|p| rows::proc_matches(f, p));
    groups.retain(|g| rows::group_matches(f, g));
    rows::sort_processes(&mut procs, st.sort);
    rows::sort_groups(&mut groups, st.sort);
    let incidents = d
        .incidents
        .iter()
        .rev()
        .filter(|(_, i)| incident_matches(f, i))
        .map(|(n, i)| (*n, i.as_ref()))
        .collect();
    Lists {
        procs,
        groups,
        incidents,
    }
}

fn incident_matches(f: &str, i: &Incident) -> bool {
    let v = i.victim.as_ref();
    let memcg = i.memcg.as_deref().unwrap_or("");
    super::state::matches(
        f,
        &[
            v.map_or("", |v| v.comm.as_str()),
            v.map_or("", |v| v.cgroup.as_str()),
            v.and_then(|v| v.attribution.unit.as_deref()).unwrap_or(""),
            v.and_then(|v| v.attribution.container_id.as_deref())
                .unwrap_or(""),
            memcg,
        ],
    )
}

impl Lists<'_> {
    pub fn visible(&self) -> Visible {
        Visible {
            pids: self.procs.iter().map(|p| p.pid).collect(),
            leaders: self.groups.iter().map(|g| g.leader_pid).collect(),
            incidents: self.incidents.iter().map(|i| i.0).collect(),
        }
    }
}

fn trend_color(t: Trend) -> Color {
    match t {
        Trend::Growing => Color::Red,
        Trend::Step => Color::Yellow,
        Trend::Spike => Color::Cyan,
        Trend::Stable => Color::Reset,
    }
}

/// What the screen needs besides the data and the state.
pub struct Ctx<'a> {
    pub view: &'a View,
    pub hooks: &'a str,
    /// Log lines written while the view runs: how many, and the last.
    pub last_log: Option<(u64, String)>,
}

/// Draws; returns the help or detail scroll as clamped to its text, for
/// the state to keep (End, then Up, moves from the real end).
pub fn screen(f: &mut Frame, d: &Data, st: &State, cx: &Ctx) -> u16 {
    let (view, hooks) = (cx.view, cx.hooks);
    let area = f.area();
    let l = lists(d, st, view);
    let proc_cells: Vec<Vec<String>> = l.procs.iter().map(|p| rows::proc_cells(p)).collect();
    let group_cells: Vec<Vec<String>> = l.groups.iter().map(|g| rows::group_cells(g)).collect();
    let pfit = fit_table(&PROC_COLS, &proc_cells, area.width, rows::proc_sort_col(st.sort));
    let gfit = fit_table(
        &GROUP_COLS,
        &group_cells,
        area.width,
        rows::group_sort_col(st.sort),
    );
    let mut head_lines = header_lines(d, st, &pfit, &gfit, hooks, area.width);
    if let Some((n, last)) = &cx.last_log {
        // One row at most: a log line is text, it may be cut.
        let line = format!("log ({n} lines, shown again on exit): {}", term(last));
        head_lines.push(line.chars().take(area.width as usize).collect());
    }
    let head_h = head_lines.iter().map(|s| rows_for(s, area.width)).sum::<u16>();
    let findings: &[String] = d
        .shown
        .as_ref()
        .and_then(|s| s.ledger.as_ref())
        .map_or(&[], |l| &l.findings);
    let n_led = findings.len().min(3) as u16;
    let show_inc = !l.incidents.is_empty() || st.pane == Pane::Incidents;
    let n_inc = l.incidents.len().clamp(1, 6) as u16;
    let [head, led, inc, procs, groups] = Layout::vertical([
        Constraint::Length(head_h),
        Constraint::Length(if n_led > 0 { n_led + 1 } else { 0 }),
        Constraint::Length(if show_inc { n_inc + 1 } else { 0 }),
        Constraint::Percentage(70),
        Constraint::Percentage(30),
    ])
    .areas(area);
    let lines: Vec<Line> = head_lines.into_iter().map(Line::from).collect();
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), head);
    if n_led > 0 {
        ledger(f, led, findings);
    }
    if show_inc {
        incident_list(f, inc, d, st, &l.incidents);
    }
    let ptitle = format!(" processes ({}), by {} ", l.procs.len(), st.sort.as_str());
    let styles: Vec<Style> = l
        .procs
        .iter()
        .map(|p| Style::default().fg(trend_color(p.trend)))
        .collect();
    table(
        f,
        procs,
        &ptitle,
        &PROC_COLS,
        &pfit,
        &proc_cells,
        &styles,
        st,
        Pane::Processes,
    );
    let gtitle = format!(" process groups ({}), by {} ", l.groups.len(), st.sort.as_str());
    table(
        f,
        groups,
        &gtitle,
        &GROUP_COLS,
        &gfit,
        &group_cells,
        &[],
        st,
        Pane::Groups,
    );
    match st.overlay {
        Overlay::None => 0,
        Overlay::Help => overlay(f, " help: any key closes ", help::lines(hooks), st.scroll),
        Overlay::Detail(t) => {
            let (title, text) = detail_of(d, t, area.width);
            overlay(f, &title, text, st.scroll)
        }
    }
}

fn fit_table(cols: &[Col], cells: &[Vec<String>], width: u16, pinned: usize) -> Fit {
    fit(cols, &rows::content_widths(cols, cells), width, Some(pinned))
}

/// Terminal rows a line takes when wrapped at `w`.
fn rows_for(s: &str, w: u16) -> u16 {
    let n = super::layout::width(s).max(1);
    n.div_ceil(w.max(1))
}

fn header_lines(d: &Data, st: &State, p: &Fit, g: &Fit, hooks: &str, w: u16) -> Vec<String> {
    let mut first = String::from("leaktrace watch");
    match &d.shown {
        Some(s) => {
            let k = &s.kernel;
            let lost: u64 =
                k.sink_drops.iter().map(|x| x.1).sum::<u64>() + k.counters.oom_lost + k.counters.exits_lost;
            first += &format!(
                "  {} processes  sort: {}  lost events: {lost}",
                s.processes_total,
                st.sort.as_str()
            );
            if w >= 120 {
                first += &format!("  ({} path, {:.1} ms)", k.data_path, k.pass_ms);
            }
        }
        None => first += &format!("  waiting for the first sample  sort: {}", st.sort.as_str()),
    }
    first += "  ?: help  q: quit";
    let mut second = Vec::new();
    if st.paused {
        second.push("PAUSED (space resumes)".to_string());
    }
    match &st.editing {
        Some(t) => second.push(format!("filter: /{}_ (Enter keeps, Esc drops)", term(t))),
        None if !st.filter.is_empty() => second.push(format!("filter: {} (Esc clears)", term(&st.filter))),
        None => {}
    }
    let hidden = |f: &Fit| {
        if f.hidden.is_empty() {
            "none".to_string()
        } else {
            f.hidden.join(" ")
        }
    };
    if !p.hidden.is_empty() || !g.hidden.is_empty() {
        second.push(format!("hidden: {}; groups: {}", hidden(p), hidden(g)));
    } else {
        second.push("hidden: none".into());
    }
    let mut v = vec![first, second.join("  ")];
    if w >= 120 {
        v.push(format!("hooks  {hooks}"));
    }
    v
}

fn ledger(f: &mut Frame, area: Rect, findings: &[String]) {
    let lines: Vec<Line> = findings
        .iter()
        .take(3)
        .map(|t| Line::from(term(t).into_owned()).style(Style::default().fg(Color::Yellow)))
        .collect();
    let block = Block::default()
        .title("host memory no process holds")
        .borders(Borders::TOP);
    f.render_widget(Paragraph::new(lines).block(block), area);
}

fn pane_title(title: &str, st: &State, pane: Pane) -> Line<'static> {
    if st.pane == pane && st.overlay == Overlay::None {
        Line::from(format!("▶{title}")).style(Style::default().add_modifier(Modifier::BOLD))
    } else {
        Line::from(title.to_string())
    }
}

fn incident_list(f: &mut Frame, area: Rect, d: &Data, st: &State, inc: &[(u64, &Incident)]) {
    let items: Vec<ListItem> = if inc.is_empty() {
        vec![ListItem::new("no OOM kill since start")]
    } else {
        inc.iter()
            .map(|(_, i)| {
                let style = if !i.wrong_victim() {
                    Style::default().fg(Color::Red)
                } else {
                    Style::default().fg(Color::Magenta).add_modifier(Modifier::BOLD)
                };
                ListItem::new(format!("{}  {}", when(i.ts_ms), term(&i.summary))).style(style)
            })
            .collect()
    };
    let dropped = d.incidents_dropped();
    let title = format!(
        " OOM kills: {} since start{}; Enter opens ",
        d.incidents_total,
        if dropped > 0 {
            format!(" ({dropped} oldest not kept)")
        } else {
            String::new()
        }
    );
    let mut ls = ListState::default();
    if st.pane == Pane::Incidents {
        ls.select(st.selected(Pane::Incidents, inc.len()));
    }
    let list = List::new(items)
        .block(
            Block::default()
                .title(pane_title(&title, st, Pane::Incidents))
                .borders(Borders::TOP),
        )
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    f.render_stateful_widget(list, area, &mut ls);
}

#[allow(clippy::too_many_arguments)]
fn table(
    f: &mut Frame,
    area: Rect,
    title: &str,
    cols: &[Col],
    fit: &Fit,
    cells: &[Vec<String>],
    styles: &[Style],
    st: &State,
    pane: Pane,
) {
    let body = cells.iter().enumerate().map(|(n, c)| {
        let r = Row::new(fit.shown.iter().map(|i| c[*i].clone()).collect::<Vec<_>>());
        r.style(styles.get(n).copied().unwrap_or_default())
    });
    let header = Row::new(fit.shown.iter().map(|i| cols[*i].title).collect::<Vec<_>>())
        .style(Style::default().add_modifier(Modifier::BOLD));
    let widths: Vec<Constraint> = fit.widths.iter().map(|w| Constraint::Length(*w)).collect();
    let t = Table::new(body, widths)
        .header(header)
        .column_spacing(SPACING)
        .block(
            Block::default()
                .title(pane_title(title, st, pane))
                .borders(Borders::TOP),
        )
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut ts = TableState::default();
    if st.pane == pane {
        ts.select(st.selected(pane, cells.len()));
    }
    f.render_stateful_widget(t, area, &mut ts);
}

fn detail_of(d: &Data, t: Target, width: u16) -> (String, Vec<String>) {
    let s: Option<&Sample> = d.shown.as_deref();
    match t {
        Target::Process(pid) => {
            let row = s.and_then(|s| s.processes.iter().find(|p| p.pid == pid));
            let hist: Vec<u64> = d
                .history
                .get(&pid)
                .map(|h| h.iter().copied().collect())
                .unwrap_or_default();
            let data = detail::ProcessData {
                pid,
                row,
                history: &hist,
                interval_s: s.map_or(1.0, |s| s.interval_s),
                group: s.and_then(|s| {
                    s.groups
                        .iter()
                        .find(|g| g.leader_pid == pid || g.pids.contains(&pid))
                }),
                cgroup: row.and_then(|r| s?.cgroups.iter().find(|c| c.cgroup == r.cgroup)),
                bundles: d
                    .bundles
                    .iter()
                    .filter(|e| e.pid == pid)
                    .map(|e| e.as_ref())
                    .collect(),
                bundles_dropped: d.bundles_dropped,
            };
            (
                format!(" process {pid}: Esc closes, arrows scroll "),
                detail::process(&data, width as usize),
            )
        }
        Target::Group(leader) => {
            let g = s.and_then(|s| s.groups.iter().find(|g| g.leader_pid == leader));
            (format!(" group {leader}: Esc closes "), detail::group(g, leader))
        }
        Target::Incident(n) => match d.incident(n) {
            Some(i) => (
                format!(" OOM kill #{n}: Esc closes, arrows scroll "),
                detail::incident(i),
            ),
            None => (
                " incident ".into(),
                vec![format!("incident #{n} is no longer kept")],
            ),
        },
    }
}

fn overlay(f: &mut Frame, title: &str, text: Vec<String>, scroll: u16) -> u16 {
    let area = f.area();
    let inner_w = area.width.saturating_sub(2) as usize;
    let inner_h = area.height.saturating_sub(2) as usize;
    // Wrapped here, not by the widget, so that the scroll knows the end.
    let lines: Vec<Line> = text
        .into_iter()
        .flat_map(|s| {
            let head = !s.is_empty() && !s.starts_with(' ');
            detail::hard_wrap(&s, inner_w).into_iter().map(move |r| {
                let l = Line::from(r);
                if head {
                    l.style(Style::default().add_modifier(Modifier::BOLD))
                } else {
                    l
                }
            })
        })
        .collect();
    let last = lines.len().saturating_sub(inner_h).min(u16::MAX as usize) as u16;
    f.render_widget(Clear, area);
    let p = Paragraph::new(lines)
        .block(Block::default().title(title.to_string()).borders(Borders::ALL))
        .scroll((scroll.min(last), 0));
    f.render_widget(p, area);
    scroll.min(last)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ratatui::{backend::TestBackend, Terminal};

    use super::*;
    use crate::sinks::tui::rows::tests::row;

    fn render(w: u16, h: u16, st: &State) -> Vec<String> {
        let mut d = Data::default();
        let procs = (0..30).map(|i| row(4_194_000 + i, "server", 163 + i as u64, 5.0 * 1048576.0, None));
        d.add_sample(
            Arc::new(Sample {
                kind: "sample",
                ts_ms: 0,
                interval_s: 1.0,
                processes_total: 30,
                processes: procs.collect(),
                groups: vec![],
                cgroups: vec![],
                kernel: Default::default(),
                ledger: None,
            }),
            false,
        );
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        let view = View::default();
        let cx = Ctx {
            view: &view,
            hooks: "",
            last_log: None,
        };
        t.draw(|f| {
            screen(f, &d, st, &cx);
        })
        .unwrap();
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect()
    }

    #[test]
    fn at_80_columns_pids_and_units_are_whole_and_the_header_names_what_is_hidden() {
        let lines = render(80, 24, &State::default());
        let text = lines.join("\n");
        assert!(lines[1].starts_with("hidden: "), "{text}");
        assert!(lines[1].contains("CMDLINE"), "{text}");
        let rows: Vec<&String> = lines.iter().filter(|l| l.starts_with("4194")).collect();
        assert!(rows.len() >= 5, "{text}");
        for r in rows {
            assert!(r.contains("+5.0 MiB/s"), "{r}");
            assert!(r.split_whitespace().next().unwrap().len() == 7, "pid cut: {r}");
            assert!(r.contains(" MiB"), "{r}");
        }
    }

    #[test]
    fn at_50_columns_numbers_still_keep_their_units() {
        let lines = render(50, 24, &State::default());
        let r = lines.iter().find(|l| l.starts_with("4194")).unwrap();
        assert!(r.contains("+5.0 MiB/s") && r.contains("MiB"), "{r}");
    }
}
