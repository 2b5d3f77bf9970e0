//! The live terminal view, and the plain-text table used when stdout is not a
//! terminal. Rendering only: all numbers come from `tracker::Sample`.
use std::{fmt::Write as _, io::IsTerminal};

use anyhow::Result;
use crossterm::{
    event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
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

use crate::{
    loader::ProbeResult,
    tracker::{ProcessRow, Sample},
    trend::Trend,
};

pub fn is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

pub fn bytes(v: f64) -> String {
    let a = v.abs();
    let (d, u) = if a >= 1024.0 * 1024.0 * 1024.0 {
        (1024.0 * 1024.0 * 1024.0, "GiB")
    } else if a >= 1024.0 * 1024.0 {
        (1024.0 * 1024.0, "MiB")
    } else if a >= 1024.0 {
        (1024.0, "KiB")
    } else {
        (1.0, "B")
    };
    format!("{:.1} {u}", v / d)
}

pub fn rate(v: f64) -> String {
    if v.abs() < 1.0 {
        "0".into()
    } else {
        format!("{}{}/s", if v > 0.0 { "+" } else { "" }, bytes(v))
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

/// Restores the terminal on drop, including when unwinding from a panic.
pub struct Tui {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
    hooks: String,
}

impl Tui {
    pub fn start(probes: &[ProbeResult]) -> Result<Self> {
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
        let live = probes.iter().filter(|p| p.live.is_some()).count();
        let rss = probes
            .iter()
            .find(|p| p.job == "rss")
            .and_then(|p| p.live.clone())
            .unwrap_or_default();
        let off: Vec<&str> = probes
            .iter()
            .filter(|p| p.live.is_none())
            .map(|p| p.job)
            .collect();
        let mut hooks = format!("{live} of {} hooks live, RSS from {rss}", probes.len());
        if !off.is_empty() {
            hooks += &format!("; off: {}", off.join(", "));
        }
        hooks += " (leaktrace -v watch lists them)";
        Ok(Self {
            terminal: Terminal::new(CrosstermBackend::new(stdout))?,
            hooks,
        })
    }

    pub fn draw(&mut self, s: &Sample, recent: &crate::oom::Recent) -> Result<()> {
        let hooks = self.hooks.clone();
        self.terminal.draw(|f| {
            let n_oom = recent.items.len().min(4) as u16;
            let [head, ooms, procs, groups] = Layout::vertical([
                Constraint::Length(3),
                Constraint::Length(if n_oom > 0 { n_oom + 1 } else { 0 }),
                Constraint::Percentage(70),
                Constraint::Percentage(30),
            ])
            .areas(f.area());
            if n_oom > 0 {
                let lines: Vec<Line> = recent
                    .items
                    .iter()
                    .rev()
                    .take(4)
                    .map(|i| {
                        let style = if i.victim_was_top_grower {
                            Style::default().fg(Color::Red)
                        } else {
                            Style::default().fg(Color::Magenta).add_modifier(Modifier::BOLD)
                        };
                        Line::from(format!("OOM KILL  {}", i.summary)).style(style)
                    })
                    .collect();
                f.render_widget(
                    Paragraph::new(lines)
                        .block(Block::default().title(" OOM incidents ").borders(Borders::TOP)),
                    ooms,
                );
            }
            let k = &s.kernel;
            let header = vec![
                Line::from(format!(
                    "leaktrace watch  {} processes ({} in kernel map)  rss events of exiting mms: {}  q: quit",
                    s.processes.len(),
                    k.tracked_pids,
                    k.counters.rss_unattributed
                )),
                Line::from(format!("hooks  {hooks}")).style(Style::default().fg(Color::DarkGray)),
            ];
            f.render_widget(
                Paragraph::new(header).block(Block::default().borders(Borders::BOTTOM)),
                head,
            );

            let rows = s.processes.iter().map(|p| {
                Row::new(vec![
                    p.pid.to_string(),
                    p.comm.clone(),
                    p.trend.as_str().to_string(),
                    rate(p.growth_bytes_per_sec),
                    rate(p.growth_bytes_per_sec_long),
                    bytes(p.rss_bytes as f64),
                    bytes(p.rss_anon_bytes as f64),
                    bytes(p.rss_file_bytes as f64),
                    bytes(p.rss_shmem_bytes as f64),
                    bytes(p.swap_bytes as f64),
                    format!("{:.0}", p.faults_per_sec),
                    p.cgroup.clone(),
                    p.cmdline.clone(),
                ])
                .style(Style::default().fg(trend_color(p.trend)))
            });
            let widths = [
                Constraint::Length(7),
                Constraint::Length(15),
                Constraint::Length(8),
                Constraint::Length(13),
                Constraint::Length(13),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Length(20),
                Constraint::Min(10),
            ];
            let t = Table::new(rows, widths)
                .header(
                    Row::new(vec![
                        "PID",
                        "COMM",
                        "TREND",
                        "GROWTH 10s",
                        "GROWTH 60s",
                        "RSS",
                        "ANON",
                        "FILE",
                        "SHMEM",
                        "SWAP",
                        "FLT/s",
                        "CGROUP",
                        "CMDLINE",
                    ])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
                )
                .block(
                    Block::default()
                        .title(" processes, by growth ")
                        .borders(Borders::TOP),
                );
            f.render_widget(t, procs);

            let grows = s.groups.iter().map(|g| {
                Row::new(vec![
                    g.leader_pid.to_string(),
                    g.comm.clone(),
                    g.members.to_string(),
                    bytes(g.rss_bytes as f64),
                    rate(g.growth_bytes_per_sec),
                    g.exe.clone(),
                ])
            });
            let gt = Table::new(
                grows,
                [
                    Constraint::Length(7),
                    Constraint::Length(15),
                    Constraint::Length(8),
                    Constraint::Length(10),
                    Constraint::Length(13),
                    Constraint::Min(10),
                ],
            )
            .header(
                Row::new(vec!["LEADER", "COMM", "MEMBERS", "RSS", "GROWTH 10s", "EXE"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(
                Block::default()
                    .title(" process groups (same parent and executable) ")
                    .borders(Borders::TOP),
            );
            f.render_widget(gt, groups);
        })?;
        Ok(())
    }
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
        let _ = self.terminal.show_cursor();
    }
}

/// Reads keys on a plain thread (crossterm's reads block) and asks the main
/// loop to quit on q, Esc or Ctrl-C (raw mode turns Ctrl-C into a key).
pub fn spawn_input_thread(quit: tokio::sync::mpsc::UnboundedSender<()>) {
    std::thread::spawn(move || loop {
        match event::read() {
            Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                    let _ = quit.send(());
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
    });
}

fn row_text(p: &ProcessRow, out: &mut String) {
    let _ = writeln!(
        out,
        "{:>7} {:<15} {:<7} {:>13} {:>13} {:>10} {:>10} {:>10} {:>8} {}",
        p.pid,
        p.comm,
        p.trend.as_str(),
        rate(p.growth_bytes_per_sec),
        rate(p.growth_bytes_per_sec_long),
        bytes(p.rss_bytes as f64),
        bytes(p.rss_anon_bytes as f64),
        bytes(p.rss_file_bytes as f64),
        format!("{:.0}", p.faults_per_sec),
        p.cgroup
    );
}

/// Plain-text table for pipes and logs.
pub fn render_text(s: &Sample, max_rows: usize, out: &mut String) {
    let _ = writeln!(
        out,
        "--- {} processes, {} in kernel map, unattributed rss events {}",
        s.processes.len(),
        s.kernel.tracked_pids,
        s.kernel.counters.rss_unattributed
    );
    let _ = writeln!(
        out,
        "{:>7} {:<15} {:<7} {:>13} {:>13} {:>10} {:>10} {:>10} {:>8} CGROUP",
        "PID", "COMM", "TREND", "GROWTH 10s", "GROWTH 60s", "RSS", "ANON", "FILE", "FLT/s"
    );
    for p in s.processes.iter().take(max_rows) {
        row_text(p, out);
    }
    for g in s.groups.iter().take(5) {
        let _ = writeln!(
            out,
            "group leader {} {} members={} rss={} growth={}",
            g.leader_pid,
            g.comm,
            g.members,
            bytes(g.rss_bytes as f64),
            rate(g.growth_bytes_per_sec)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(512.0), "512.0 B");
        assert_eq!(bytes(32.0 * 1024.0 * 1024.0), "32.0 MiB");
        assert_eq!(rate(-2048.0), "-2.0 KiB/s");
        assert_eq!(rate(0.2), "0");
    }
}
