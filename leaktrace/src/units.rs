//! Command-line values in the units people type: durations (`500ms`,
//! `30s`, `5m`, `1h`; a bare number is seconds, as every duration flag
//! has always read it) and sizes (`512K`, `64M`, `64MiB`, `1G`, `1GiB`;
//! binary units, a bare number is bytes). A leaf module: flags in any
//! layer parse through it, and it imports nothing of leaktrace.

/// Longest duration any flag takes: about 31 years, far past any real
/// use, and small enough that seconds stay exact in an f64.
const MAX_SECS: f64 = 1e9;

/// A duration in seconds. Decimals are accepted (`1.5h` is 5400 s,
/// `0.5` is half a second); negative, empty, unknown units and values
/// past MAX_SECS are refused with a sentence saying what is accepted.
pub fn secs(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(duration_help(s)),
    };
    let v: f64 = num.parse().map_err(|_| duration_help(s))?;
    let v = v * scale;
    if !v.is_finite() || v > MAX_SECS {
        return Err(format!("'{s}' is too long (at most {MAX_SECS:.0} seconds)"));
    }
    Ok(v)
}

fn duration_help(s: &str) -> String {
    format!("'{s}' is not a duration: use 500ms, 30s, 5m or 1h (a bare number is seconds)")
}

/// A size in bytes: a whole number with an optional binary unit (K, M,
/// G, T, with or without "iB", or B). No decimals: sizes are exact.
pub fn bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        _ => return Err(size_help(s)),
    };
    let v: u64 = num.parse().map_err(|e: std::num::ParseIntError| {
        if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) {
            format!("'{s}' is too large")
        } else {
            size_help(s)
        }
    })?;
    v.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn size_help(s: &str) -> String {
    format!("'{s}' is not a size: use 512K, 64M, 64MiB, 1G or 1GiB (binary units; a bare number is bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_and_bare_seconds() {
        for (s, want) in [
            ("500ms", 0.5),
            ("30s", 30.0),
            ("5m", 300.0),
            ("1h", 3600.0),
            ("1.5h", 5400.0),
            ("30", 30.0),
            ("0.5", 0.5),
            ("0", 0.0),
            (" 2m ", 120.0),
        ] {
            assert_eq!(secs(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        for s in [
            "", "-1s", "10x", "s", "1.2.3s", "1e3", "5 years", "1hh", "nan", "inf",
        ] {
            let e = secs(s).unwrap_err();
            assert!(e.contains("not a duration"), "{s}: {e}");
        }
        assert!(secs("9999999999h").unwrap_err().contains("too long"));
        assert!(secs(&"9".repeat(400)).is_err());
    }

    #[test]
    fn sizes_in_binary_units_and_bare_bytes() {
        for (s, want) in [
            ("512K", 512 << 10),
            ("64M", 64 << 20),
            ("64MiB", 64 << 20),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("2T", 2 << 40),
            ("67108864", 64 << 20),
            ("100B", 100),
            ("0", 0),
        ] {
            assert_eq!(bytes(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn bad_sizes_are_refused_with_a_reason() {
        for s in ["", "-1M", "10x", "1.5G", "M", "64 MB", "64mb"] {
            let e = bytes(s).unwrap_err();
            assert!(e.contains("not a size"), "{s}: {e}");
        }
        assert!(bytes("99999999999999999999").unwrap_err().contains("too large"));
        assert!(bytes("17179869184G").unwrap_err().contains("too large"));
    }
}
