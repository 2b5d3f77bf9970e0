//! Which columns fit: every column is as wide as its widest cell, so a
//! number is never cut; when the window is too narrow, whole columns go,
//! lowest `drop` rank first, and the header names them.

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub title: &'static str,
    /// When the window narrows, the column with the lowest rank goes
    /// first. `KEEP` is never dropped.
    pub drop: u8,
    /// A text column that takes what is left and may be cut (cmdline,
    /// exe): it needs `min` cells to be shown at all.
    pub flex: Option<u16>,
}

pub const KEEP: u8 = u8::MAX;

/// Cells between two columns (ratatui's default column spacing).
pub const SPACING: u16 = 1;

/// The columns to draw, with their widths, and those hidden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    /// Indices into the columns, in their order.
    pub shown: Vec<usize>,
    pub widths: Vec<u16>,
    pub hidden: Vec<&'static str>,
}

/// Fits `cols` into `avail` cells. `content[i]` is the widest cell of
/// column i (its title included by the caller or not: the title counts
/// here too). `pinned` (the sort column) is kept like a `KEEP` column.
pub fn fit(cols: &[Col], content: &[u16], avail: u16, pinned: Option<usize>) -> Fit {
    let need = |i: usize| -> u16 {
        let title = cols[i].title.chars().count() as u16;
        match cols[i].flex {
            Some(min) => min.max(title),
            None => content.get(i).copied().unwrap_or(0).max(title),
        }
    };
    // Kept columns first, then by rank, highest first; each goes in if it
    // fits in what is left. A narrow column of lower rank can still fit
    // where a wider one of higher rank did not.
    let kept = |i: usize| cols[i].drop == KEEP || Some(i) == pinned;
    let mut order: Vec<usize> = (0..cols.len()).collect();
    order.sort_by_key(|i| (!kept(*i), std::cmp::Reverse(cols[*i].drop), *i));
    let mut on: Vec<bool> = vec![false; cols.len()];
    let mut used: u32 = 0;
    for i in order {
        let add = need(i) as u32 + if used > 0 { SPACING as u32 } else { 0 };
        if kept(i) || used + add <= avail as u32 {
            on[i] = true;
            used += add;
        }
    }
    let total = |on: &[bool]| -> u32 {
        let n = on.iter().filter(|x| **x).count() as u32;
        let w: u32 = (0..cols.len()).filter(|i| on[*i]).map(|i| need(i) as u32).sum();
        w + n.saturating_sub(1) * SPACING as u32
    };
    let shown: Vec<usize> = (0..cols.len()).filter(|i| on[*i]).collect();
    let spare = (avail as u32).saturating_sub(total(&on)) as u16;
    let mut widths: Vec<u16> = shown.iter().map(|i| need(*i)).collect();
    // What is left goes to the first flexible column shown.
    if let Some(pos) = shown.iter().position(|i| cols[*i].flex.is_some()) {
        widths[pos] += spare;
    }
    let hidden = (0..cols.len())
        .filter(|i| !on[*i])
        .map(|i| cols[i].title)
        .collect();
    Fit {
        shown,
        widths,
        hidden,
    }
}

/// The columns in the order they are dropped, first first: what the
/// help screen and docs/live-view.md state.
pub fn drop_order(cols: &[Col]) -> Vec<&'static str> {
    let mut v: Vec<(u8, usize)> = cols
        .iter()
        .enumerate()
        .filter(|(_, c)| c.drop != KEEP)
        .map(|(i, c)| (c.drop, usize::MAX - i))
        .collect();
    v.sort();
    v.into_iter().map(|(_, i)| cols[usize::MAX - i].title).collect()
}

/// The display width of a cell (what the terminal gives it).
pub fn width(s: &str) -> u16 {
    ratatui::text::Span::raw(s).width().min(u16::MAX as usize) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: [Col; 5] = [
        Col {
            title: "PID",
            drop: KEEP,
            flex: None,
        },
        Col {
            title: "RSS",
            drop: KEEP,
            flex: None,
        },
        Col {
            title: "ANON",
            drop: 2,
            flex: None,
        },
        Col {
            title: "SWAP",
            drop: 1,
            flex: None,
        },
        Col {
            title: "CMDLINE",
            drop: 0,
            flex: Some(10),
        },
    ];
    // Widest cells: "4194304", "1023.9 MiB", "12.0 KiB", "0 B".
    const CONTENT: [u16; 5] = [7, 10, 8, 3, 0];

    #[test]
    fn everything_fits_when_wide_and_the_flexible_column_takes_the_rest() {
        let f = fit(&COLS, &CONTENT, 100, None);
        assert_eq!(f.shown, [0, 1, 2, 3, 4]);
        assert!(f.hidden.is_empty());
        assert_eq!(f.widths[..4], [7, 10, 8, 4]);
        assert_eq!(f.widths.iter().sum::<u16>() + 4 * SPACING, 100);
    }

    #[test]
    fn columns_go_in_their_stated_order_and_numbers_keep_their_width() {
        // 7+10+8+4 + 3 spaces = 32: the cmdline (min 10) does not fit.
        let f = fit(&COLS, &CONTENT, 32, None);
        assert_eq!(f.hidden, ["CMDLINE"]);
        assert_eq!(f.widths, [7, 10, 8, 4]);
        let f = fit(&COLS, &CONTENT, 31, None);
        assert_eq!(f.hidden, ["SWAP", "CMDLINE"]);
        let f = fit(&COLS, &CONTENT, 18, None);
        assert_eq!(f.hidden, ["ANON", "SWAP", "CMDLINE"]);
        assert_eq!(f.widths, [7, 10], "never cut, only dropped");
        assert_eq!(drop_order(&COLS), ["CMDLINE", "SWAP", "ANON"]);
    }

    #[test]
    fn a_narrow_column_fills_the_room_a_wide_one_left() {
        // ANON is 20 wide: it does not fit in 25, SWAP (lower rank) does.
        let f = fit(&COLS, &[7, 10, 20, 4, 0], 25, None);
        assert_eq!(f.hidden, ["ANON", "CMDLINE"]);
        assert_eq!(f.widths, [7, 10, 4]);
    }

    #[test]
    fn kept_columns_stay_even_when_they_overflow() {
        let f = fit(&COLS, &CONTENT, 5, None);
        assert_eq!(f.shown, [0, 1]);
        assert_eq!(f.widths, [7, 10]);
    }

    #[test]
    fn the_sort_column_is_pinned() {
        let f = fit(&COLS, &CONTENT, 23, Some(3));
        assert_eq!(f.hidden, ["ANON", "CMDLINE"]);
        assert_eq!(f.shown, [0, 1, 3]);
    }

    #[test]
    fn a_title_wider_than_its_cells_sets_the_width() {
        let f = fit(&COLS, &[1, 1, 1, 1, 0], 100, None);
        assert_eq!(f.widths[..4], [3, 3, 4, 4]);
    }
}
