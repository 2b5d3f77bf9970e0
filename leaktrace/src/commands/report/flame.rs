//! Flame graphs of an evidence bundle's fault stacks (stacks.folded or
//! stacks.txt), as static SVG.
use super::*;

/// Stacks beyond this many distinct frames in a bundle are cut at the
/// deepest frame already known (their samples are kept there).
pub(super) const FLAME_NODES: usize = 20_000;
/// Frames deeper than this are not drawn (their samples stay in the frame
/// above).
pub(super) const FLAME_DEPTH: usize = 128;
/// Characters kept of a frame's name.
pub(super) const FRAME_NAME_CAP: usize = 400;

/// Fault stacks merged on their common prefixes: a node's count is the
/// samples of every stack through it; children by name, in alphabetical
/// order as flame graphs are drawn.
#[derive(Default)]
pub(super) struct Node {
    pub(super) count: u64,
    pub(super) children: BTreeMap<String, Node>,
}

#[derive(Default)]
pub(super) struct Flame {
    pub(super) root: Node,
    pub(super) nodes: usize,
    pub(super) depth: usize,
    pub(super) source: &'static str,
    /// Samples x sampling period x page size: an estimate of the bytes a
    /// sample stands for (from stacks.txt's header).
    pub(super) bytes_per_sample: Option<f64>,
}

impl Flame {
    /// Adds `count` samples of one stack, root first.
    pub(super) fn add<'s>(&mut self, frames: impl Iterator<Item = &'s str>, count: u64) {
        if count == 0 {
            return;
        }
        self.root.count = self.root.count.saturating_add(count);
        let mut node = &mut self.root;
        for (d, f) in frames.enumerate().take(FLAME_DEPTH) {
            let name = cap_str(f.trim(), FRAME_NAME_CAP);
            if !node.children.contains_key(&name) {
                if self.nodes >= FLAME_NODES {
                    break;
                }
                self.nodes += 1;
            }
            node = node.children.entry(name).or_default();
            node.count = node.count.saturating_add(count);
            self.depth = self.depth.max(d + 1);
        }
    }
}

/// stacks.folded: `root;...;leaf COUNT` per line.
pub(super) fn parse_folded(text: &str) -> Flame {
    let mut f = Flame {
        source: "stacks.folded",
        ..Flame::default()
    };
    for l in text.lines().map(str::trim_end) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let Some((stack, n)) = l.rsplit_once(' ') else {
            continue;
        };
        if let Ok(n) = n.parse::<u64>() {
            f.add(stack.split(';'), n);
        }
    }
    f
}

/// stacks.txt: `== stack N: COUNT sampled faults (...)` and its frames,
/// innermost first. Only the top stacks are listed there; the samples of
/// the others (the header's total minus these) get a frame of their own
/// so that the widths stay true.
pub(super) fn parse_stacks_txt(text: &str) -> Flame {
    let mut f = Flame {
        source: "stacks.txt",
        ..Flame::default()
    };
    let mut total = None;
    let mut cur: Option<(u64, Vec<String>)> = None;
    let flush = |f: &mut Flame, cur: Option<(u64, Vec<String>)>| {
        if let Some((n, frames)) = cur {
            f.add(frames.iter().rev().map(String::as_str), n);
        }
    };
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("== stack ") {
            flush(&mut f, cur.take());
            let n = rest
                .split_once(": ")
                .and_then(|(_, r)| r.split_whitespace().next()?.parse::<u64>().ok());
            cur = n.map(|n| (n, Vec::new()));
        } else if let Some(h) = l.strip_prefix("# ") {
            let mut w = h.split_whitespace();
            if let (Some(n), Some("sampled")) = (w.next(), w.next()) {
                total = total.or(n.parse::<u64>().ok());
            }
        } else if let (Some((_, frames)), Some(name)) = (cur.as_mut(), txt_frame(l)) {
            frames.push(name);
        }
    }
    flush(&mut f, cur);
    if let Some(t) = total.filter(|t| *t > f.root.count) {
        let rest = t - f.root.count;
        f.add(std::iter::once("(stacks not listed in stacks.txt)"), rest);
    }
    f
}

/// A frame line of stacks.txt: `0xADDR name+0xOFF (file:line)` gives
/// `name`; `0xADDR ?? ...` gives `?? 0xADDR`.
pub(super) fn txt_frame(l: &str) -> Option<String> {
    let l = l.trim();
    let (addr, rest) = l.split_once(' ').unwrap_or((l, ""));
    let hex = addr.strip_prefix("0x")?;
    let rest = rest.trim();
    if rest.is_empty() || rest.starts_with("??") {
        let a = u64::from_str_radix(hex, 16).ok()?;
        return Some(format!("?? {a:#x}"));
    }
    Some(strip_offset(rest).to_string())
}

/// `name+0x1f (file:12)` -> `name`: cut at the first `+0x<hex>` that ends
/// the line or is followed by ` (`. Names may hold spaces and parentheses.
pub(super) fn strip_offset(s: &str) -> &str {
    let mut from = 0;
    while let Some(i) = s[from..].find("+0x") {
        let at = from + i;
        let after = &s[at + 3..];
        let tail = after.trim_start_matches(|c: char| c.is_ascii_hexdigit());
        if tail.len() < after.len() && (tail.is_empty() || tail.starts_with(" (")) {
            return &s[..at];
        }
        from = at + 3;
    }
    s
}

/// The period and page size in stacks.txt's header: "(1 in P faults)",
/// "page size (N B)".
pub(super) fn bytes_per_sample(text: &str) -> Option<f64> {
    let after = |key: &str| -> Option<f64> {
        let rest = &text[text.find(key)? + key.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    Some(after("(1 in ")? * after("page size (")?)
}

/// A bundle's stacks: stacks.folded if it has one, else stacks.txt.
pub(super) fn load_flame(bundle: &Path) -> Option<Flame> {
    let txt = read_bundle_file(bundle, "stacks.txt", STACKS_CAP);
    let mut f = match read_bundle_file(bundle, "stacks.folded", STACKS_CAP) {
        Some(folded) => parse_folded(&folded),
        None => parse_stacks_txt(txt.as_deref()?),
    };
    f.bytes_per_sample = txt.as_deref().and_then(bytes_per_sample);
    Some(f)
}

pub(super) const FW: f64 = 1000.0;
pub(super) const FH: f64 = 17.0;
pub(super) const FPAD: f64 = 4.0;

pub(super) struct FlameCtx<'a> {
    pub(super) f: &'a Flame,
    pub(super) scale: f64,
    pub(super) height: f64,
}

/// The flame graph: root at the bottom, a frame's width its share of the
/// samples, a tooltip on each frame.
pub(super) fn flame_svg(f: &Flame) -> String {
    let height = (f.depth + 1) as f64 * FH + 2.0 * FPAD;
    let cx = FlameCtx {
        f,
        scale: (FW - 2.0 * FPAD) / f.root.count.max(1) as f64,
        height,
    };
    let mut s = format!(
        "<svg class=\"flame\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {FW} {height}\" \
         width=\"{FW}\" height=\"{height}\" role=\"img\">"
    );
    flame_frame(&mut s, &cx, "all", &f.root, FPAD, 0);
    s += "</svg>";
    s
}

pub(super) fn flame_frame(s: &mut String, cx: &FlameCtx, name: &str, node: &Node, x: f64, depth: usize) {
    let w = node.count as f64 * cx.scale;
    if w < 0.3 {
        return;
    }
    let y = cx.height - FPAD - (depth + 1) as f64 * FH;
    let pct = node.count as f64 * 100.0 / cx.f.root.count.max(1) as f64;
    let touched =
        cx.f.bytes_per_sample
            .map(|b| format!(", ~{} touched", crate::fmt::bytes(b * node.count as f64)))
            .unwrap_or_default();
    let fit = ((w - 6.0) / 6.7).max(0.0) as usize;
    let label: String = match name.chars().count() {
        _ if fit < 3 => String::new(),
        n if n > fit => name.chars().take(fit - 2).chain("..".chars()).collect(),
        _ => name.to_string(),
    };
    let _ = write!(
        s,
        "<g class=\"frame\"><title>{} \u{2014} {} sample{} ({pct:.1}%){touched}</title>\
         <rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{:.2}\" height=\"{}\" rx=\"2\" fill=\"{}\"/>",
        esc(name),
        node.count,
        if node.count == 1 { "" } else { "s" },
        (w - 0.5).max(0.1),
        FH - 1.0,
        frame_color(name, depth)
    );
    if !label.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x + 3.0,
            y + 12.0,
            esc(&label)
        );
    }
    s.push_str("</g>");
    let mut cx_x = x;
    for (n, c) in &node.children {
        flame_frame(s, cx, n, c, cx_x, depth + 1);
        cx_x += c.count as f64 * cx.scale;
    }
}

/// Warm colours from a hash of the name (the same function, the same
/// colour); grey for the root and for frames without a symbol.
pub(super) fn frame_color(name: &str, depth: usize) -> String {
    if depth == 0 || name.starts_with("??") || name.starts_with('(') {
        return "#c9c9c9".into();
    }
    // FNV-1a.
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let (a, b, c) = (h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff);
    format!(
        "rgb({},{},{})",
        205 + a * 50 / 255,
        80 + b * 150 / 255,
        c * 55 / 255
    )
}

// ---- The page ----
