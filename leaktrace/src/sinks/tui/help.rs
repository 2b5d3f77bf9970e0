//! The help screen (`?`, `h`, F1): every key, the sort orders, and the
//! order columns are dropped in when the window narrows.
use super::{
    layout::drop_order,
    rows::{GROUP_COLS, PROC_COLS},
    state::SortKey,
};

/// Every key the live view answers to, and what it does.
pub const KEYS: [(&str, &str); 13] = [
    ("?  h  F1", "this help (any key closes it)"),
    ("s", "next sort order (shown in the header)"),
    (
        "/",
        "filter by name, unit, container or cgroup (Enter keeps, Esc drops)",
    ),
    ("Space", "pause / resume (samples are still taken)"),
    (
        "Tab  Shift-Tab",
        "next / previous list: processes, groups, incidents",
    ),
    ("Up  Down", "move the selection (scroll in help and detail)"),
    ("PgUp  PgDn", "move by 10"),
    ("Home  End", "first / last"),
    ("Enter", "open the selected process, group or incident"),
    ("Esc", "close; in the list: clear the filter, else quit"),
    ("Backspace", "close a detail screen"),
    ("q", "quit"),
    ("Ctrl-C", "quit"),
];

/// The help text, one line per entry.
pub fn lines(hooks: &str) -> Vec<String> {
    let mut v = vec!["Keys".to_string()];
    for (k, what) in KEYS.iter() {
        v.push(format!("  {k:<16} {what}"));
    }
    v.push(String::new());
    let sorts: Vec<&str> = SortKey::ALL.iter().map(|k| k.as_str()).collect();
    v.push(format!("Sort orders (s): {}", sorts.join(" > ")));
    v.push("  growth and sizes largest first (PSS/USS not read: last), name A-Z, pid up".into());
    v.push(String::new());
    v.push("Narrow windows: numbers are never cut. Whole columns are hidden instead,".into());
    v.push("first first in the lists below; one that still fits stays. The header".into());
    v.push("names the hidden ones. PID, COMM, GROWTH 10s, RSS and the sort column stay.".into());
    v.push(format!("  processes: {}", drop_order(&PROC_COLS).join(", ")));
    v.push(format!("  groups:    {}", drop_order(&GROUP_COLS).join(", ")));
    v.push(String::new());
    v.push("Colours: red growing, yellow step, cyan spike; magenta bold: an OOM kill whose".into());
    v.push("victim was not the top grower.".into());
    v.push(String::new());
    v.push(format!("hooks  {hooks}"));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_names_every_key_and_the_drop_order() {
        let text = lines("rss_stat tp_btf").join("\n");
        for k in [
            "?  h  F1", "s ", "/ ", "Space", "Tab", "Enter", "Esc", "q ", "Ctrl-C",
        ] {
            assert!(text.contains(k), "{k} missing from help:\n{text}");
        }
        assert!(text.contains("processes: CMDLINE, FLT/s, SWAP"), "{text}");
        assert!(text.contains("growth > rss > pss > uss > name > pid"));
    }
}
