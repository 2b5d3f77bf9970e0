//! Which exposition format a scrape gets, and the Prometheus text format
//! 0.0.4 made from the OpenMetrics text the registry encodes.
//!
//! Prometheus asks for OpenMetrics first and gets it; `curl`, `promtool
//! check metrics` and older scrapers ask for `text/plain` or anything
//! (`*/*`, no Accept at all) and get the text format 0.0.4, which they
//! can parse: no `# EOF`, no `# UNIT`, and a counter's family named with
//! its `_total` suffix, as its samples are.
use std::collections::HashSet;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Text,
}

/// The format for a request head: OpenMetrics when its Accept header
/// lists `application/openmetrics-text` with a weight (q) above 0 and at
/// least that of `text/plain`; the text format otherwise.
pub fn negotiate(request: &[u8]) -> Format {
    let head = String::from_utf8_lossy(request);
    let accept = head.lines().skip(1).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("accept")
            .then(|| value.to_string())
    });
    let Some(accept) = accept else {
        return Format::Text;
    };
    let (mut om, mut text) = (0.0f64, 0.0f64);
    for range in accept.split(',') {
        let mut params = range.split(';');
        let kind = params.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = params
            .filter_map(|p| p.trim().strip_prefix("q=")?.trim().parse::<f64>().ok())
            .next()
            .unwrap_or(1.0);
        match kind.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" => text = text.max(q),
            _ => {}
        }
    }
    if om > 0.0 && om >= text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// OpenMetrics text (as prometheus_client encodes it) rewritten as the
/// Prometheus text format 0.0.4.
pub fn to_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("# TYPE ")?.split(' ');
            let name = w.next()?;
            (w.next()? == "counter").then_some(name)
        })
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let tail = if prefix == "# TYPE " && tail == "unknown" {
                "untyped"
            } else {
                tail
            };
            let suffix = if counters.contains(name) { "_total" } else { "" };
            out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            continue;
        }
        // A counter's creation time has no place in the text format.
        let sample = line.split(['{', ' ']).next().unwrap_or("");
        if sample
            .strip_suffix("_created")
            .is_some_and(|n| counters.contains(n))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(accept: Option<&str>) -> Vec<u8> {
        let mut r = "GET /metrics HTTP/1.1\r\nHost: x\r\n".to_string();
        if let Some(a) = accept {
            r.push_str(&format!("Accept: {a}\r\n"));
        }
        r.push_str("\r\n");
        r.into_bytes()
    }

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(&req(Some(prometheus))), Format::OpenMetrics);
        assert_eq!(
            negotiate(&req(Some("application/openmetrics-text"))),
            Format::OpenMetrics
        );
        assert_eq!(negotiate(&req(None)), Format::Text);
        assert_eq!(negotiate(&req(Some("*/*"))), Format::Text);
        assert_eq!(negotiate(&req(Some("text/plain; version=0.0.4"))), Format::Text);
        assert_eq!(
            negotiate(&req(Some("text/plain, application/openmetrics-text;q=0.5"))),
            Format::Text
        );
        assert_eq!(
            negotiate(&req(Some("application/openmetrics-text;q=0"))),
            Format::Text
        );
        assert_eq!(
            negotiate(b"GET /metrics HTTP/1.1\r\naccept:  APPLICATION/OPENMETRICS-TEXT\r\n\r\n"),
            Format::OpenMetrics
        );
    }

    #[test]
    fn text_format_names_counters_by_their_samples_and_has_no_eof() {
        let om = "# HELP lt_kills OOM kills.\n# TYPE lt_kills counter\nlt_kills_total{cgroup=\"/a\"} 1\n\
                  lt_kills_created{cgroup=\"/a\"} 1.7e9\n# HELP lt_rss RSS.\n# TYPE lt_rss gauge\n\
                  # UNIT lt_rss bytes\nlt_rss 5\n# TYPE lt_x unknown\nlt_x 1\n# EOF\n";
        assert_eq!(
            to_text(om),
            "# HELP lt_kills_total OOM kills.\n# TYPE lt_kills_total counter\nlt_kills_total{cgroup=\"/a\"} 1\n\
             # HELP lt_rss RSS.\n# TYPE lt_rss gauge\nlt_rss 5\n# TYPE lt_x untyped\nlt_x 1\n"
        );
    }
}
