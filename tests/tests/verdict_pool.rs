//! The verdict in a pool (issue 24 part 3): identical workers in one memcg
//! under OOM. When the OOM killer takes one worker while its twin is the
//! one still growing, the choice did not matter: the incident says
//! "sibling", the summary does not cry "NOT the process that grew", and
//! `leaktrace_oom_wrong_victim_total` does not move. A real wrong victim
//! (an idle process with another command, preferred by oom_score_adj,
//! next to the grower) still is one, and is counted.
use std::time::Duration;

use leaktrace_tests::*;
use serde_json::Value;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;
const GET_OM: &str = "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of the first series line starting with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

/// The first incident in `cg`, once it is written.
fn first_incident(rec: &Record, cg: &MemCg) -> Value {
    let path = cg.path.clone();
    rec.wait_for(Duration::from_secs(40), "an incident in the memcg", |l| {
        l.iter().any(|v| v["type"] == "oom_kill" && v["memcg"] == path.as_str())
    });
    rec.events()
        .into_iter()
        .find(|v| v["type"] == "oom_kill" && v["memcg"] == cg.path.as_str())
        .unwrap()
}

/// A worker of the pool: the same argv for all of them (70 MiB at
/// 10 MiB/s, then held). Slow enough that the twin that grows into the
/// limit lives about 4 s, and leaktrace has read its command line by the
/// kill (a twin younger than about a second is not recognised yet).
fn worker(cg: &MemCg) -> Proc {
    Proc::spawn(&mut cg.command(&[HELPER, "grow", "10", "7", "60"]))
}

#[test]
fn a_sibling_choice_in_a_pool_is_not_a_wrong_victim_and_a_real_one_still_is() {
    require_root();
    let addr = format!("127.0.0.1:{}", free_port());
    let tmp = TempDir::new("verdict-pool");
    let rec = Record::start(&tmp.0, &["--interval", "0.5", "--metrics", &addr]);

    // Three workers take 70 MiB each; a fourth, the same command, starts
    // once they have held it for 6 s and grows into the 256 MiB limit.
    // The OOM killer takes one of the three largest; the one still growing
    // is the fourth, their twin.
    let pool = MemCg::new("pool", 256 * MB);
    let mut a = worker(&pool);
    a.wait_line("ready", Duration::from_secs(20));
    let (mut b, mut c) = (worker(&pool), worker(&pool));
    b.wait_line("ready", Duration::from_secs(20));
    c.wait_line("ready", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(6));
    let d = worker(&pool);
    let inc = first_incident(&rec, &pool);
    eprintln!(
        "pool: {} (victim exe {}, cmdline {}, cgroup {})",
        inc["summary"], inc["victim"]["exe"], inc["victim"]["cmdline"], inc["victim"]["cgroup"]
    );
    let victim = inc["victim"]["pid"].as_u64().unwrap() as u32;
    assert!(
        [a.pid(), b.pid(), c.pid()].contains(&victim),
        "the victim {victim} is one of the three full workers: {}",
        inc["summary"]
    );
    assert_eq!(inc["top_grower"]["pid"], d.pid(), "the fourth was growing: {}", inc["top_grower"]);
    assert_eq!(inc["victim_was_top_grower"], false, "{}", inc["summary"]);
    assert_eq!(inc["victim_choice"], "sibling", "{}", inc["summary"]);
    let summary = inc["summary"].as_str().unwrap();
    assert!(!summary.contains("NOT the process"), "{summary}");
    assert!(summary.contains("the choice did not matter"), "{summary}");
    std::thread::sleep(Duration::from_secs(1));
    let (_, body) = http(&addr, GET_OM);
    let kills = format!("leaktrace_oom_kills_total{{cgroup=\"{}\"", pool.path);
    let wrong = format!("leaktrace_oom_wrong_victim_total{{cgroup=\"{}\"", pool.path);
    assert!(value(&body, &kills).is_some_and(|v| v >= 1.0), "the kill is counted: {body}");
    assert_eq!(value(&body, &wrong).unwrap_or(0.0), 0.0, "a sibling is no wrong victim: {body}");
    drop((a, b, c, d));
    drop(pool);

    // A real wrong victim: an idle process with another command, preferred
    // by oom_score_adj 1000, next to the one that grows.
    let cg = MemCg::new("pool-wrong", 256 * MB);
    let mut idle = Proc::spawn(&mut cg.command(&[HELPER, "step", "150", "0", "60"]));
    idle.wait_line("ready", Duration::from_secs(20));
    std::fs::write(format!("/proc/{}/oom_score_adj", idle.pid()), "1000").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let grower = Proc::spawn(&mut cg.command(&[HELPER, "grow", "16", "12", "30"]));
    let inc = first_incident(&rec, &cg);
    eprintln!("wrong: {}", inc["summary"]);
    assert_eq!(inc["victim"]["pid"], idle.pid());
    assert_eq!(inc["top_grower"]["pid"], grower.pid(), "{}", inc["top_grower"]);
    assert_eq!(inc["victim_choice"], "wrong", "{}", inc["summary"]);
    assert!(inc["summary"].as_str().unwrap().contains("NOT the process that grew"));
    std::thread::sleep(Duration::from_secs(1));
    let (_, body) = http(&addr, GET_OM);
    let wrong = format!("leaktrace_oom_wrong_victim_total{{cgroup=\"{}\"", cg.path);
    assert_eq!(value(&body, &wrong), Some(1.0), "the wrong victim is counted: {body}");
    drop(grower);
    assert!(rec.stop().success());
}
