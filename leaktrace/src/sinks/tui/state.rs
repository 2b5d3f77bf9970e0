//! What the live view shows and how keys change it: a pure state machine,
//! tested without a terminal. The terminal side (`mod.rs`) turns
//! crossterm's keys into [`Key`], hands them to [`State::on_key`] with
//! the lists on screen ([`Visible`]) and redraws.

/// A key, as far as the live view cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Esc,
    Tab,
    BackTab,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Backspace,
    F1,
    CtrlC,
    Other,
}

/// The orders `s` cycles through, in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Growth,
    Rss,
    Pss,
    Uss,
    Name,
    Pid,
}

impl SortKey {
    pub const ALL: [SortKey; 6] = [
        SortKey::Growth,
        SortKey::Rss,
        SortKey::Pss,
        SortKey::Uss,
        SortKey::Name,
        SortKey::Pid,
    ];

    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Growth => "growth",
            SortKey::Rss => "rss",
            SortKey::Pss => "pss",
            SortKey::Uss => "uss",
            SortKey::Name => "name",
            SortKey::Pid => "pid",
        }
    }
}

/// The three lists Tab moves between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Processes,
    Groups,
    Incidents,
}

impl Pane {
    fn index(self) -> usize {
        match self {
            Pane::Processes => 0,
            Pane::Groups => 1,
            Pane::Incidents => 2,
        }
    }

    fn from_index(i: usize) -> Self {
        [Pane::Processes, Pane::Groups, Pane::Incidents][i % 3]
    }
}

/// What a detail screen is about: by identity, not by row, so that it
/// stays on the same process while the rows move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Process(u32),
    /// A group, by its leader's pid.
    Group(u32),
    /// An incident, by its arrival number.
    Incident(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    Detail(Target),
}

/// What a key asks of the terminal side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Redraw,
    Quit,
}

/// The rows on screen, in order, after the filter and the sort: what
/// Enter opens and how far selection moves.
#[derive(Debug, Default, Clone)]
pub struct Visible {
    pub pids: Vec<u32>,
    pub leaders: Vec<u32>,
    pub incidents: Vec<u64>,
}

impl Visible {
    fn len(&self, p: Pane) -> usize {
        match p {
            Pane::Processes => self.pids.len(),
            Pane::Groups => self.leaders.len(),
            Pane::Incidents => self.incidents.len(),
        }
    }

    /// The identity of row `i` of a pane: a pid, a group's leader pid or
    /// an incident's id.
    fn id(&self, p: Pane, i: usize) -> Option<u64> {
        match p {
            Pane::Processes => self.pids.get(i).map(|v| *v as u64),
            Pane::Groups => self.leaders.get(i).map(|v| *v as u64),
            Pane::Incidents => self.incidents.get(i).copied(),
        }
    }

    fn position(&self, p: Pane, id: u64) -> Option<usize> {
        (0..self.len(p)).find(|i| self.id(p, *i) == Some(id))
    }
}

/// The longest filter accepted (characters).
pub const MAX_FILTER: usize = 64;
/// Rows PageUp/PageDown move.
const PAGE: usize = 10;

#[derive(Debug, Clone)]
pub struct State {
    pub sort: SortKey,
    /// The filter in force.
    pub filter: String,
    /// The filter being typed after `/` (applied as typed).
    pub editing: Option<String>,
    pub paused: bool,
    pub pane: Pane,
    /// The selected row of each pane.
    pub sel: [usize; 3],
    /// What each pane's selected row is (`Visible::id`): when new data
    /// moves the rows, the selection follows it, not the row number.
    pinned: [Option<u64>; 3],
    pub overlay: Overlay,
    /// Lines the help or detail screen is scrolled by.
    pub scroll: u16,
}

impl Default for State {
    fn default() -> Self {
        Self {
            sort: SortKey::Growth,
            filter: String::new(),
            editing: None,
            paused: false,
            pane: Pane::Processes,
            sel: [0; 3],
            pinned: [None; 3],
            overlay: Overlay::None,
            scroll: 0,
        }
    }
}

impl State {
    /// The filter the lists are cut by: the one being typed, if any.
    pub fn active_filter(&self) -> &str {
        self.editing.as_deref().unwrap_or(&self.filter)
    }

    /// The selected row of a pane, within its `len` rows.
    pub fn selected(&self, p: Pane, len: usize) -> Option<usize> {
        (len > 0).then(|| self.sel[p.index()].min(len - 1))
    }

    /// Called with the rows about to be drawn: each pane's selection moves
    /// to where its selected process, group or incident now is. One that
    /// left the list leaves the selection on the same row number, and the
    /// row now there is the one followed.
    pub fn follow(&mut self, vis: &Visible) {
        for p in [Pane::Processes, Pane::Groups, Pane::Incidents] {
            let i = p.index();
            if let Some(at) = self.pinned[i].and_then(|id| vis.position(p, id)) {
                self.sel[i] = at;
            } else {
                self.pinned[i] = self.selected(p, vis.len(p)).and_then(|s| vis.id(p, s));
            }
        }
    }

    pub fn on_key(&mut self, key: Key, vis: &Visible) -> Action {
        if key == Key::CtrlC {
            return Action::Quit;
        }
        if self.editing.is_some() {
            return self.on_filter_key(key);
        }
        match self.overlay {
            Overlay::Help => self.on_help_key(key),
            Overlay::Detail(_) => self.on_detail_key(key),
            Overlay::None => self.on_list_key(key, vis),
        }
    }

    /// A new order or filter: the first row of each pane, whichever it
    /// will be (the next `follow` pins it).
    fn reset_sel(&mut self) {
        self.sel = [0; 3];
        self.pinned = [None; 3];
    }

    fn on_filter_key(&mut self, key: Key) -> Action {
        let Some(text) = self.editing.as_mut() else {
            return Action::Nothing;
        };
        match key {
            Key::Enter => {
                self.filter = self.editing.take().unwrap_or_default();
                self.reset_sel();
            }
            Key::Esc => self.editing = None,
            Key::Backspace => {
                text.pop();
            }
            Key::Char(c) if !c.is_control() && text.chars().count() < MAX_FILTER => {
                text.push(c);
                self.reset_sel();
            }
            _ => return Action::Nothing,
        }
        Action::Redraw
    }

    fn on_help_key(&mut self, key: Key) -> Action {
        match key {
            Key::Char('q') => Action::Quit,
            Key::Up | Key::Down | Key::PageUp | Key::PageDown | Key::Home | Key::End => {
                self.scroll_by(key);
                Action::Redraw
            }
            _ => {
                self.overlay = Overlay::None;
                Action::Redraw
            }
        }
    }

    fn on_detail_key(&mut self, key: Key) -> Action {
        match key {
            Key::Char('q') => return Action::Quit,
            Key::Esc | Key::Enter | Key::Backspace => self.overlay = Overlay::None,
            Key::Char(' ') => self.paused = !self.paused,
            Key::Char('?') | Key::Char('h') | Key::F1 => self.open(Overlay::Help),
            Key::Up | Key::Down | Key::PageUp | Key::PageDown | Key::Home | Key::End => self.scroll_by(key),
            _ => return Action::Nothing,
        }
        Action::Redraw
    }

    fn on_list_key(&mut self, key: Key, vis: &Visible) -> Action {
        match key {
            Key::Char('q') => return Action::Quit,
            // Esc clears a filter first; with none, it quits.
            Key::Esc if self.filter.is_empty() => return Action::Quit,
            Key::Esc => {
                self.filter.clear();
                self.reset_sel();
            }
            Key::Char('?') | Key::Char('h') | Key::F1 => self.open(Overlay::Help),
            Key::Char('s') => {
                self.sort = self.sort.next();
                self.reset_sel();
            }
            Key::Char('/') => self.editing = Some(self.filter.clone()),
            Key::Char(' ') => self.paused = !self.paused,
            Key::Tab => self.pane = Pane::from_index(self.pane.index() + 1),
            Key::BackTab => self.pane = Pane::from_index(self.pane.index() + 2),
            Key::Enter => match self.target(vis) {
                Some(t) => self.open(Overlay::Detail(t)),
                None => return Action::Nothing,
            },
            Key::Up | Key::Down | Key::PageUp | Key::PageDown | Key::Home | Key::End => {
                self.move_sel(key, vis)
            }
            _ => return Action::Nothing,
        }
        Action::Redraw
    }

    fn open(&mut self, o: Overlay) {
        self.overlay = o;
        self.scroll = 0;
    }

    /// What Enter opens: the selected row of the focused pane.
    fn target(&self, vis: &Visible) -> Option<Target> {
        let i = self.selected(self.pane, vis.len(self.pane))?;
        Some(match self.pane {
            Pane::Processes => Target::Process(vis.pids[i]),
            Pane::Groups => Target::Group(vis.leaders[i]),
            Pane::Incidents => Target::Incident(vis.incidents[i]),
        })
    }

    fn move_sel(&mut self, key: Key, vis: &Visible) {
        let len = vis.len(self.pane);
        let cur = self.selected(self.pane, len).unwrap_or(0);
        let last = len.saturating_sub(1);
        let to = match key {
            Key::Up => cur.saturating_sub(1),
            Key::Down => (cur + 1).min(last),
            Key::PageUp => cur.saturating_sub(PAGE),
            Key::PageDown => (cur + PAGE).min(last),
            Key::Home => 0,
            _ => last,
        };
        self.sel[self.pane.index()] = to;
        self.pinned[self.pane.index()] = vis.id(self.pane, to);
    }

    fn scroll_by(&mut self, key: Key) {
        self.scroll = match key {
            Key::Up => self.scroll.saturating_sub(1),
            Key::Down => self.scroll.saturating_add(1),
            Key::PageUp => self.scroll.saturating_sub(PAGE as u16),
            Key::PageDown => self.scroll.saturating_add(PAGE as u16),
            Key::Home => 0,
            // Clamped to the text's length when drawn.
            _ => u16::MAX,
        };
    }
}

/// A case-insensitive substring match of the filter against any field
/// (an empty filter matches everything).
pub fn matches(filter: &str, fields: &[&str]) -> bool {
    if filter.is_empty() {
        return true;
    }
    let f = filter.to_lowercase();
    fields.iter().any(|s| s.to_lowercase().contains(&f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vis() -> Visible {
        Visible {
            pids: vec![30, 10, 20],
            leaders: vec![7],
            incidents: vec![5, 4],
        }
    }

    fn keys(st: &mut State, ks: &[Key]) -> Action {
        let v = vis();
        ks.iter().fold(Action::Nothing, |_, k| st.on_key(*k, &v))
    }

    #[test]
    fn s_cycles_every_sort_and_comes_back() {
        let mut st = State::default();
        let mut seen = vec![st.sort.as_str()];
        for _ in 0..6 {
            keys(&mut st, &[Key::Char('s')]);
            seen.push(st.sort.as_str());
        }
        assert_eq!(seen, ["growth", "rss", "pss", "uss", "name", "pid", "growth"]);
    }

    #[test]
    fn help_opens_with_question_mark_h_and_f1_and_any_key_closes_it() {
        for k in [Key::Char('?'), Key::Char('h'), Key::F1] {
            let mut st = State::default();
            assert_eq!(keys(&mut st, &[k]), Action::Redraw);
            assert_eq!(st.overlay, Overlay::Help);
            keys(&mut st, &[Key::Down]);
            assert_eq!(
                (st.overlay, st.scroll),
                (Overlay::Help, 1),
                "arrows scroll the help"
            );
            keys(&mut st, &[Key::Esc]);
            assert_eq!(st.overlay, Overlay::None);
        }
    }

    #[test]
    fn a_typed_filter_applies_as_typed_enter_keeps_it_esc_drops_it() {
        let mut st = State::default();
        keys(
            &mut st,
            &[Key::Char('/'), Key::Char('n'), Key::Char('g'), Key::Char('x')],
        );
        assert_eq!(st.active_filter(), "ngx");
        // q is text while typing, not quit.
        assert_eq!(keys(&mut st, &[Key::Char('q')]), Action::Redraw);
        keys(&mut st, &[Key::Backspace, Key::Enter]);
        assert_eq!((st.filter.as_str(), st.editing.is_none()), ("ngx", true));
        keys(&mut st, &[Key::Char('/'), Key::Char('z'), Key::Esc]);
        assert_eq!(st.active_filter(), "ngx", "Esc while typing keeps the old filter");
        // Esc in the list clears the filter, and only then quits.
        assert_eq!(keys(&mut st, &[Key::Esc]), Action::Redraw);
        assert_eq!(st.filter, "");
        assert_eq!(keys(&mut st, &[Key::Esc]), Action::Quit);
    }

    #[test]
    fn the_filter_is_bounded_and_takes_no_control_characters() {
        let mut st = State::default();
        keys(&mut st, &[Key::Char('/')]);
        for _ in 0..200 {
            keys(&mut st, &[Key::Char('a'), Key::Char('\u{1b}')]);
        }
        assert_eq!(st.active_filter().chars().count(), MAX_FILTER);
        assert!(st.active_filter().chars().all(|c| c == 'a'));
    }

    #[test]
    fn enter_opens_the_selected_row_of_the_focused_pane() {
        let mut st = State::default();
        keys(&mut st, &[Key::Down, Key::Enter]);
        assert_eq!(st.overlay, Overlay::Detail(Target::Process(10)));
        keys(&mut st, &[Key::Esc]);
        assert_eq!(st.overlay, Overlay::None);
        keys(&mut st, &[Key::Tab, Key::Enter]);
        assert_eq!(st.overlay, Overlay::Detail(Target::Group(7)));
        keys(&mut st, &[Key::Enter, Key::Tab, Key::End, Key::Enter]);
        assert_eq!(st.overlay, Overlay::Detail(Target::Incident(4)));
        keys(&mut st, &[Key::Esc, Key::BackTab]);
        assert_eq!(st.pane, Pane::Groups);
    }

    /// New data reorders the rows: the selection stays on the same
    /// process, and on the same row number when that process left.
    #[test]
    fn selection_follows_the_process_not_the_row() {
        let mut st = State::default();
        keys(&mut st, &[Key::Down, Key::Down]);
        assert_eq!(st.selected(Pane::Processes, 3), Some(2), "pid 20");
        st.follow(&Visible {
            pids: vec![20, 30, 10],
            ..vis()
        });
        assert_eq!(
            st.selected(Pane::Processes, 3),
            Some(0),
            "pid 20 moved to the top"
        );
        assert_eq!(
            st.on_key(
                Key::Enter,
                &Visible {
                    pids: vec![20, 30, 10],
                    ..vis()
                }
            ),
            Action::Redraw
        );
        assert_eq!(st.overlay, Overlay::Detail(Target::Process(20)));
        keys(&mut st, &[Key::Esc]);
        // pid 20 exited: the row number stays, and pid 30 now there is followed.
        st.follow(&Visible {
            pids: vec![30, 10],
            ..vis()
        });
        assert_eq!(st.selected(Pane::Processes, 2), Some(0));
        st.follow(&Visible {
            pids: vec![10, 30],
            ..vis()
        });
        assert_eq!(st.selected(Pane::Processes, 2), Some(1), "pid 30 followed");
        // A new sort starts at the top of the new order.
        st.on_key(Key::Char('s'), &vis());
        st.follow(&vis());
        assert_eq!(st.selected(Pane::Processes, 3), Some(0));
    }

    #[test]
    fn selection_stays_inside_the_list() {
        let mut st = State::default();
        keys(&mut st, &[Key::PageDown, Key::Down, Key::Down]);
        assert_eq!(st.selected(Pane::Processes, 3), Some(2));
        keys(&mut st, &[Key::Up, Key::PageUp, Key::Up]);
        assert_eq!(st.selected(Pane::Processes, 3), Some(0));
        // A list that shrank under the selection.
        st.sel[0] = 9;
        assert_eq!(st.selected(Pane::Processes, 2), Some(1));
        assert_eq!(st.selected(Pane::Processes, 0), None);
        let empty = Visible::default();
        assert_eq!(st.on_key(Key::Enter, &empty), Action::Nothing);
        assert_eq!(st.overlay, Overlay::None);
    }

    #[test]
    fn space_pauses_and_resumes_in_the_list_and_in_a_detail() {
        let mut st = State::default();
        keys(&mut st, &[Key::Char(' ')]);
        assert!(st.paused);
        keys(&mut st, &[Key::Enter, Key::Char(' ')]);
        assert!(!st.paused);
        assert!(matches!(st.overlay, Overlay::Detail(_)));
    }

    #[test]
    fn q_and_ctrl_c_quit_from_anywhere_but_q_is_text_in_the_filter() {
        for pre in [vec![], vec![Key::Char('?')], vec![Key::Enter]] {
            let mut st = State::default();
            keys(&mut st, &pre);
            assert_eq!(keys(&mut st, &[Key::Char('q')]), Action::Quit, "after {pre:?}");
        }
        let mut st = State::default();
        keys(&mut st, &[Key::Char('/')]);
        assert_eq!(keys(&mut st, &[Key::CtrlC]), Action::Quit);
    }

    #[test]
    fn filter_matches_any_field_ignoring_case() {
        assert!(matches("", &[]));
        assert!(matches("NGINX", &["x", "nginx.service"]));
        assert!(!matches("redis", &["nginx", "/system.slice/nginx.service"]));
    }
}
