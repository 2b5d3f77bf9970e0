//! Small helpers every layer uses: human units and clocks. They live at the
//! bottom of the module graph so that nothing imports upwards for them.
use std::time::{SystemTime, UNIX_EPOCH};

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

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC now, in ns: the clock of bpf_ktime_get_ns and of
/// task->start_time, so kernel timestamps compare with it directly.
/// Unix milliseconds as a UTC civil date and time, to the second:
/// (year, month, day, hour, minute, second), without a date-time crate.
pub fn civil_utc(ms: u64) -> (i64, i64, i64, u64, u64, u64) {
    let s = ms / 1000;
    let (days, rem) = (s / 86400, s % 86400);
    let (h, m, sec) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if mo <= 2 { 1 } else { 0 };
    (y, mo, d, h, m, sec)
}

/// A unix time in ms as "YYYY-MM-DD hh:mm:ss UTC", for people.
pub fn when(ms: u64) -> String {
    let (y, mo, d, h, m, sec) = civil_utc(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{sec:02} UTC")
}

/// Unix milliseconds as RFC 3339 in UTC, to the second:
/// `2026-11-22T21:07:43Z`.
pub fn rfc3339(ms: u64) -> String {
    let (y, mo, d, h, m, sec) = civil_utc(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{sec:02}Z")
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A CLOCK_MONOTONIC time in ns as unix ms, by the offset between the two
/// clocks now.
pub fn mono_to_unix_ms(ns: u64) -> u64 {
    let now_mono = monotonic_ns() as i128;
    let now_unix = now_ms() as i128;
    (now_unix - (now_mono - ns as i128) / 1_000_000).max(0) as u64
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as u64
    } else {
        4096
    }
}

/// A fast hasher for maps keyed by pids and kernel ids (the FxHash
/// multiply-rotate). Those keys are small integers the kernel hands out,
/// not strings an attacker picks, so SipHash's flood resistance buys
/// nothing there and costs a quarter of the sampling thread's time at
/// 10,000 processes.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FastHasher {
    #[inline]
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;

/// Is this a character a process could use to take over a terminal or
/// disguise text: C0 and C1 controls, DEL, and the bidirectional
/// overrides and isolates (Trojan Source).
fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A string from a process (comm, cmdline, cgroup path, a symbol) made
/// safe for a terminal or a text file: every control or bidi character
/// becomes a visible escape (`\x1b`, `\u{202e}`), and a backslash becomes
/// `\\` so that an escape cannot be forged. Nothing is removed, so
/// nothing can hide.
pub fn term(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| is_hostile(c) || c == '\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x100 && is_hostile(c) => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_hostile(c) => {
                use std::fmt::Write as _;
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// serde_json escapes only C0 controls, '"' and '\\'. A JSON line may be
/// read in a terminal too (`watch --json`, `tail events.jsonl`), so this
/// formatter also writes DEL, the C1 controls (U+0080..U+009F: a terminal
/// may take U+009B for CSI) and the bidi controls as \uXXXX. Still JSON,
/// the same strings once parsed.
struct SafeJson;

impl serde_json::ser::Formatter for SafeJson {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_hostile(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                write!(w, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// One JSON value, terminal-safe (see SafeJson).
pub fn json_to_writer<W: std::io::Write, T: serde::Serialize + ?Sized>(
    w: W,
    v: &T,
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(w, SafeJson);
    v.serialize(&mut ser)
}

pub fn json_line<T: serde::Serialize + ?Sized>(v: &T) -> serde_json::Result<String> {
    let mut buf = Vec::with_capacity(256);
    json_to_writer(&mut buf, v)?;
    // Only whole UTF-8 strings and ASCII were written.
    Ok(String::from_utf8(buf).expect("serde_json writes UTF-8"))
}

/// A kernel comm (NUL-padded, any bytes) as text, lossily.
pub fn comm_str(b: &[u8; 16]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_no_terminal_controls_and_parse_back() {
        let s = "a\x1b[2J\u{9b}31m\u{202e}\x7f\"\\é";
        let line = json_line(&serde_json::json!({ "comm": s })).unwrap();
        assert!(line.chars().all(|c| !is_hostile(c)), "{line:?}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["comm"], s);
    }

    #[test]
    fn hostile_text_is_escaped_not_dropped() {
        assert_eq!(term("plain name"), "plain name");
        // OSC 52 (clipboard), a cursor move, BEL, a C1 CSI, DEL.
        assert_eq!(
            term("a\u{1b}]52;c;ZXZpbA==\u{7}b\u{1b}[2Jc\u{9b}d\u{7f}"),
            "a\\x1b]52;c;ZXZpbA==\\x07b\\x1b[2Jc\\x9bd\\x7f"
        );
        // Trojan Source: a right-to-left override.
        assert_eq!(term("ab\u{202e}cd"), "ab\\u{202e}cd");
        // A literal backslash cannot forge an escape.
        assert_eq!(term("\\x1b"), "\\\\x1b");
        assert_eq!(term("tab\tnl\n"), "tab\\x09nl\\x0a");
        assert!(!term("\u{1b}[31mred").contains('\u{1b}'));
    }

    #[test]
    fn rfc3339_utc_to_the_second() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_304_114_687), "2026-11-21T23:35:14Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn human_units() {
        assert_eq!(bytes(512.0), "512.0 B");
        assert_eq!(bytes(32.0 * 1024.0 * 1024.0), "32.0 MiB");
        assert_eq!(rate(-2048.0), "-2.0 KiB/s");
        assert_eq!(rate(0.2), "0");
    }
}
