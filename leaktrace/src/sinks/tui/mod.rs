//! The live terminal view (`leaktrace watch` on a terminal), driven like
//! bpftop or htop: help, sort, filter, pause, detail screens. The screen
//! and the keys share one lock: the sink thread redraws on each sample,
//! the key thread on each key, so a key answers at once.
//!
//! Pure parts, tested without a terminal: `state` (keys, sort, filter,
//! selection), `layout` (which columns fit), `rows` (cells, filter and
//! sort of rows), `detail`/`verdict`/`help` (the text of the screens),
//! `data` (what is kept between samples, bounded). Every string a
//! process controls is escaped (`fmt::term`) before it reaches the
//! terminal: ratatui passes control bytes through.
mod data;
mod detail;
mod draw;
mod help;
mod layout;
mod rows;
mod state;
mod stderr;
mod verdict;

use std::{
    io::IsTerminal,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use anyhow::Result;
use crossterm::{
    event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    execute,
    terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{backend::CrosstermBackend, Terminal};

use super::{Event, Flow, Sink, View};
use state::{Action, Key, State};

pub fn is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Everything the screen is drawn from, behind the one lock.
struct Ui {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
    data: data::Data,
    state: State,
    view: View,
    hooks: String,
    log: Arc<Mutex<stderr::Kept>>,
}

impl Ui {
    fn draw(&mut self) -> Result<()> {
        let Ui {
            terminal,
            data,
            state,
            view,
            hooks,
            log,
        } = self;
        let last_log = {
            let k = log.lock().unwrap_or_else(|e| e.into_inner());
            k.lines.back().map(|l| (k.total, l.clone()))
        };
        let ctx = draw::Ctx {
            view,
            hooks,
            last_log,
        };
        state.follow(&draw::lists(data, state, view).visible());
        let mut scroll = state.scroll;
        terminal.draw(|f| scroll = draw::screen(f, data, state, &ctx))?;
        state.scroll = scroll;
        Ok(())
    }

    fn key(&mut self, k: Key) -> Action {
        let vis = draw::lists(&self.data, &self.state, &self.view).visible();
        let was_paused = self.state.paused;
        let a = self.state.on_key(k, &vis);
        if was_paused && !self.state.paused {
            self.data.resume();
        }
        a
    }
}

/// Restores the terminal on drop, including when unwinding from a panic.
pub struct TuiSink {
    ui: Arc<Mutex<Ui>>,
    stderr: stderr::Capture,
    quit: Arc<AtomicBool>,
}

fn lock(ui: &Mutex<Ui>) -> MutexGuard<'_, Ui> {
    // A panic while drawing poisons the lock; the screen is still usable.
    ui.lock().unwrap_or_else(|e| e.into_inner())
}

impl TuiSink {
    pub fn start(view: View, hooks: String) -> Result<Self> {
        enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen) {
            let _ = disable_raw_mode();
            return Err(e.into());
        }
        let stderr = stderr::Capture::start();
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            prev(info);
        }));
        let ui = Arc::new(Mutex::new(Ui {
            terminal: Terminal::new(CrosstermBackend::new(stdout))?,
            data: data::Data::default(),
            state: State::default(),
            view,
            hooks,
            log: stderr.kept.clone(),
        }));
        let quit = Arc::new(AtomicBool::new(false));
        spawn_keys(ui.clone(), quit.clone());
        let _ = lock(&ui).draw();
        Ok(Self { ui, stderr, quit })
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
        let mut ui = lock(&self.ui);
        match ev {
            Event::Sample(s) => {
                let paused = ui.state.paused;
                ui.data.add_sample(s.clone(), paused);
                ui.draw()?;
            }
            Event::Incident(i) => {
                ui.data.add_incident(i.clone());
                ui.draw()?;
            }
            Event::Evidence(e) => ui.data.add_bundle(e.clone()),
            Event::Status(_) => {}
        }
        Ok(Flow::Continue)
    }
}

fn restore() {
    stderr::give_back();
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
}

impl Drop for TuiSink {
    fn drop(&mut self) {
        restore();
        let _ = lock(&self.ui).terminal.show_cursor();
        self.stderr.stop();
    }
}

fn key_of(k: KeyEvent) -> Key {
    if k.modifiers.contains(KeyModifiers::CONTROL) {
        return if k.code == KeyCode::Char('c') {
            Key::CtrlC
        } else {
            Key::Other
        };
    }
    match k.code {
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::F(1) => Key::F1,
        _ => Key::Other,
    }
}

/// Reads keys on a plain thread (crossterm's reads block) and redraws at
/// once. Quitting (q, Esc, Ctrl-C: raw mode turns Ctrl-C into a key)
/// raises SIGINT, which the main thread handles as a request to stop.
fn spawn_keys(ui: Arc<Mutex<Ui>>, quit: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new()
        .name("lt-tui-keys".into())
        .spawn(move || loop {
            let action = match event::read() {
                Ok(TermEvent::Key(k)) if k.kind == KeyEventKind::Press => lock(&ui).key(key_of(k)),
                Ok(TermEvent::Resize(..)) => Action::Redraw,
                Ok(_) => Action::Nothing,
                Err(_) => return,
            };
            match action {
                Action::Quit => {
                    quit.store(true, Ordering::Relaxed);
                    // SAFETY: raising SIGINT in our own process, which the
                    // main thread handles as a request to stop.
                    unsafe { libc::raise(libc::SIGINT) };
                    return;
                }
                Action::Redraw => {
                    let _ = lock(&ui).draw();
                }
                Action::Nothing => {}
            }
        });
}
