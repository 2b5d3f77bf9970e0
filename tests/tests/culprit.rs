//! A wrong-victim OOM: the killer takes a big idle process (oom_score_adj
//! 1000) while another one grows. The grower's bundle, written before the
//! kill, is linked from the incident and shown by the report.
use std::{process::Command, time::Duration};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;

#[test]
fn the_culprits_bundle_is_linked_from_a_wrong_victim_incident() {
    require_root();
    let out = TempDir::new("culprit");
    let rec = Record::start(&out.0.join("rec"), &["--interval", "0.5"]);
    let cg = MemCg::new("culprit", 256 * MB);
    let mut big = Proc::spawn(&mut cg.command(&[HELPER, "step", "150", "0", "90"]));
    big.wait_line("ready", Duration::from_secs(20));
    std::fs::write(format!("/proc/{}/oom_score_adj", big.pid()), "1000").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // 8 MiB/s through leak_into_cache: the memcg is full in about 13 s.
    let grower = Proc::spawn(&mut cg.command(&[HELPER, "leak", "8", "60"]));
    let gpid = grower.pid();
    let (inc, _ev, _dir) = {
        rec.wait_for(Duration::from_secs(60), "the incident", |l| {
            l.iter()
                .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == big.pid())
        });
        let inc = rec
            .events()
            .into_iter()
            .find(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == big.pid())
            .unwrap();
        (inc, (), ())
    };
    eprintln!("summary: {}", inc["summary"]);
    assert_eq!(inc["victim_was_top_grower"], false, "{}", inc["summary"]);
    assert_eq!(inc["top_grower"]["pid"], gpid, "{}", inc["top_grower"]);
    let ev = rec
        .events()
        .into_iter()
        .filter(|v| {
            v["type"] == "evidence" && v["pid"] == gpid && v["ts_ms"].as_u64() < inc["ts_ms"].as_u64()
        })
        .last()
        .unwrap_or_else(|| panic!("the grower {gpid} had no bundle before the kill"));
    assert_eq!(
        inc["grower_evidence_dir"], ev["dir"],
        "the incident links the grower's bundle"
    );
    assert!(
        inc["host_ledger"].is_object(),
        "the incident carries the host ledger"
    );
    // The text and HTML reports show it.
    let text = Command::new(leaktrace_bin())
        .arg("report")
        .arg(out.0.join("rec"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.contains(&format!("evidence of the process that grew, pid {gpid}"))
            && text.contains("leak_into_cache"),
        "report text:\n{text}"
    );
    let html = out.0.join("r.html");
    let o = Command::new(leaktrace_bin())
        .arg("report")
        .arg(out.0.join("rec"))
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let h = std::fs::read_to_string(&html).unwrap();
    assert!(
        h.contains(&format!("pid {gpid} (lt-helper), the process that grew"))
            && h.contains("leak_into_cache"),
        "report.html shows the grower's flame graph"
    );
    assert!(rec.stop().success());
    drop(grower);
}
