//! `report` over compressed rotations (issue 22): events.jsonl.N.gz is
//! read like events.jsonl.N, oldest first; a rotation there twice (plain
//! and .gz, a crash mid-compression) is read once; a damaged .gz costs
//! only its own rest, counted.
use super::*;
use crate::sinks::rotation::gzip;

fn evidence(ts: u64, pid: u32) -> String {
    serde_json::json!({"type": "evidence", "ts_ms": ts, "pid": pid, "comm": "w", "reason": "growth",
        "detail": "", "dir": "", "error": null})
    .to_string()
        + "\n"
}

fn dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("lt-report-rot-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn compressed_rotations_are_read_oldest_first_and_once() {
    let d = dir("order");
    let lines = |from: u32, to: u32| (from..to).map(|i| evidence(1_700_000_000_000 + i as u64 * 1000, i)).collect::<String>();
    std::fs::write(d.join("events.jsonl.2.gz"), gzip(lines(0, 10).as_bytes())).unwrap();
    std::fs::write(d.join("events.jsonl.1"), lines(10, 20)).unwrap();
    std::fs::write(d.join("events.jsonl.1.gz"), gzip(lines(10, 20).as_bytes())).unwrap();
    std::fs::write(d.join("events.jsonl"), lines(20, 25)).unwrap();
    // Leftovers that are not the log: a temp file of a cut compression.
    std::fs::write(d.join(".events.jsonl.3.gz.tmp"), b"\x1f\x8b junk").unwrap();
    let rec = load(&d).unwrap();
    assert_eq!((rec.files, rec.lines, rec.skipped_lines()), (3, 25, 0));
    let pids: Vec<u32> = rec.evidence.iter().map(|e| e.pid).collect();
    assert_eq!(pids, (0..25).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_damaged_rotation_costs_only_its_rest() {
    let d = dir("damaged");
    let text: String = (0..2000).map(|i| evidence(1_700_000_000_000 + i, i as u32)).collect();
    // Cut in the middle, as a full disk or a crash would leave a copy.
    let mut z = gzip(text.as_bytes());
    z.truncate(z.len() / 2);
    std::fs::write(d.join("events.jsonl.1.gz"), &z).unwrap();
    std::fs::write(d.join("events.jsonl"), evidence(1_800_000_000_000, 9999)).unwrap();
    let rec = load(&d).expect("a damaged rotation does not end the report");
    assert_eq!(rec.skipped.get(&Skip::BadCompressed), Some(&1), "{:?}", rec.skipped);
    let read = rec.evidence.len();
    assert!(read > 1 && read < 2000, "{read} evidence lines read");
    assert_eq!(rec.evidence.last().map(|e| e.pid), Some(9999));
    let _ = std::fs::remove_dir_all(&d);
}
