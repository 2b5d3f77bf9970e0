//! Instruction offset to line number, from a code object's line table.
//! Pure functions over the table's bytes (hostile input: every read is
//! bounded, malformed tables give None, never a panic).
use super::layout::Lines;

/// The line of the instruction at `offset` (bytes for `Lnotab`, code
/// units for the others), starting from `first` (co_firstlineno).
pub fn line_at(kind: Lines, table: &[u8], first: i64, offset: u64) -> Option<i64> {
    match kind {
        Lines::Lnotab => lnotab(table, first, offset),
        Lines::Linetable310 => linetable_310(table, first, offset),
        Lines::Locations => locations(table, first, offset),
    }
}

/// 3.8/3.9 co_lnotab: (bytecode delta u8, line delta i8) pairs.
fn lnotab(t: &[u8], first: i64, offset: u64) -> Option<i64> {
    let (mut addr, mut line) = (0u64, first);
    for p in t.chunks_exact(2) {
        addr += p[0] as u64;
        if addr > offset {
            break;
        }
        line += p[1] as i8 as i64;
    }
    Some(line)
}

/// 3.10 co_linetable: (byte delta u8, line delta i8) pairs, -128 = no line.
fn linetable_310(t: &[u8], first: i64, offset: u64) -> Option<i64> {
    let target = offset * 2;
    let (mut end, mut line) = (0u64, first);
    for p in t.chunks_exact(2) {
        let start = end;
        end += p[0] as u64;
        let delta = p[1] as i8;
        let this = if delta == -128 {
            None
        } else {
            line += delta as i64;
            Some(line)
        };
        if start <= target && target < end {
            return this;
        }
    }
    None
}

/// A varint of the location table: 6-bit chunks, low first, bit 6 = more.
fn varint(t: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *t.get(*i)?;
        *i += 1;
        v |= ((b & 63) as u64) << shift;
        if b & 64 == 0 {
            return Some(v);
        }
        shift += 6;
        if shift > 60 {
            return None;
        }
    }
}

fn svarint(t: &[u8], i: &mut usize) -> Option<i64> {
    let v = varint(t, i)?;
    Some(if v & 1 == 1 {
        -((v >> 1) as i64)
    } else {
        (v >> 1) as i64
    })
}

/// 3.11+ location table (Objects/locations.md): entries start with a byte
/// whose bit 7 is set, bits 3-6 the code, bits 0-2 the length - 1 in code
/// units.
fn locations(t: &[u8], first: i64, offset: u64) -> Option<i64> {
    let (mut i, mut unit, mut line) = (0usize, 0u64, first);
    while i < t.len() {
        let head = t[i];
        if head & 0x80 == 0 {
            return None;
        }
        i += 1;
        let code = (head >> 3) & 15;
        let len = (head & 7) as u64 + 1;
        let this = match code {
            15 => None,
            14 => {
                line += svarint(t, &mut i)?;
                varint(t, &mut i)?;
                varint(t, &mut i)?;
                varint(t, &mut i)?;
                Some(line)
            }
            13 => {
                line += svarint(t, &mut i)?;
                Some(line)
            }
            10..=12 => {
                line += (code - 10) as i64;
                i += 2;
                Some(line)
            }
            _ => {
                i += 1;
                Some(line)
            }
        };
        if offset < unit + len {
            return this;
        }
        unit += len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_table_forms() {
        // One-line form (code 11: +1 line, 2 units), no-column form (code
        // 13: +2 lines, 1 unit), short form (code 0, same line, 3 units),
        // none (code 15, 1 unit), long form (code 14: -1 line, 1 unit).
        let t = [
            0x80 | (11 << 3) | 1,
            4,
            9,
            0x80 | (13 << 3),
            4,
            0x80 | 2,
            0x11,
            0x80 | (15 << 3),
            0x80 | (14 << 3),
            3,
            0,
            1,
            1,
        ];
        let at = |o| locations(&t, 10, o);
        assert_eq!(at(0), Some(11));
        assert_eq!(at(1), Some(11));
        assert_eq!(at(2), Some(13));
        assert_eq!(at(3), Some(13));
        assert_eq!(at(5), Some(13));
        assert_eq!(at(6), None);
        assert_eq!(at(7), Some(12));
        assert_eq!(at(8), None, "past the end");
    }

    #[test]
    fn malformed_tables_do_not_panic() {
        for t in [
            &[0x7f][..],
            &[0xf0, 0xff, 0xff],
            &[0xd8],
            &[
                0x80 | (14 << 3),
                0x7f,
                0x7f,
                0x7f,
                0x7f,
                0x7f,
                0x7f,
                0x7f,
                0x7f,
                0x7f,
                0x7f,
                0x7f,
            ],
        ] {
            let _ = line_at(Lines::Locations, t, 1, 3);
            let _ = line_at(Lines::Lnotab, t, 1, 3);
            let _ = line_at(Lines::Linetable310, t, 1, 3);
        }
    }

    #[test]
    fn old_tables() {
        // lnotab: +6 bytes -> +1 line, +4 bytes -> +2 lines.
        let t = [6, 1, 4, 2];
        assert_eq!(lnotab(&t, 5, 0), Some(5));
        assert_eq!(lnotab(&t, 5, 6), Some(6));
        assert_eq!(lnotab(&t, 5, 10), Some(8));
        // 3.10: 4 bytes on line +0, 4 bytes with no line, 2 bytes at -1.
        let t = [4, 0, 4, 0x80, 2, 0xff];
        assert_eq!(linetable_310(&t, 7, 1), Some(7));
        assert_eq!(linetable_310(&t, 7, 2), None);
        assert_eq!(linetable_310(&t, 7, 4), Some(6));
    }
}
