//! Go stacks in a bundle: a Go program leaking goroutines (each started
//! with `go startWorker(...)`, allocating 4 MiB and blocking forever) in a
//! memcg is OOM-killed under `record`; the bundle, written before the kill,
//! names main.startWorker in stacks.txt and stacks.folded (Go keeps frame
//! pointers, so the kernel's frame-pointer walk sees the goroutine's stack),
//! and meta.json says it is Go and that the goroutine count is not
//! available. Installs Debian's golang-go if missing; builds under
//! target/tmp with GOCACHE and GOPATH there.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use leaktrace_tests::*;

const MB: u64 = 1 << 20;

const PROGRAM: &str = r#"package main

import (
	"fmt"
	"runtime"
	"time"
)

//go:noinline
func startWorker(id int, block chan struct{}) {
	buf := make([]byte, 4<<20)
	for i := 0; i < len(buf); i += 512 {
		buf[i] = byte(id)
	}
	<-block
	runtime.KeepAlive(buf)
}

func main() {
	block := make(chan struct{})
	fmt.Println("ready")
	for i := 0; ; i++ {
		go startWorker(i, block)
		time.Sleep(100 * time.Millisecond)
	}
}
"#;

/// /usr/bin/go, from Debian's golang-go (apt-get waits for the dpkg lock:
/// other jobs on a shared machine may hold it).
fn ensure_go() -> PathBuf {
    let go = PathBuf::from("/usr/bin/go");
    if go.exists() {
        return go;
    }
    eprintln!("installing golang-go (Debian package) for this test");
    let install = || {
        Command::new("apt-get")
            .args([
                "-o",
                "DPkg::Lock::Timeout=600",
                "install",
                "-y",
                "-qq",
                "golang-go",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600", "update", "-qq"])
            .status();
        assert!(install(), "apt-get install golang-go failed");
    }
    assert!(go.exists(), "/usr/bin/go missing after installing golang-go");
    go
}

fn build(go: &Path, dir: &Path) -> PathBuf {
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/go-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let src = dir.join("goleak.go");
    std::fs::write(&src, PROGRAM).unwrap();
    let bin = dir.join("goleak");
    let st = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .current_dir(dir)
        .env("GOCACHE", cache.join("build"))
        .env("GOPATH", cache.join("path"))
        .env("HOME", &cache)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .status()
        .expect("go build");
    assert!(st.success(), "go build failed");
    bin
}

#[test]
fn go_bundle_names_the_goroutine_function() {
    require_root();
    let go = ensure_go();
    let out = TempDir::new("stacks-go");
    let bin = build(&go, &out.0);
    let rec = Record::start(&out.0.join("rec"), &["--interval", "0.5"]);
    let cg = MemCg::new("goleak", 256 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[bin.to_str().unwrap()]));
    let pid = h.pid();
    let st = h.wait();
    assert!(!st.success(), "the leaker must be OOM-killed");
    let (inc, ev, dir) = rec.incident_and_bundle(pid);
    eprintln!("evidence: {ev}");
    let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    eprintln!("meta.go: {}", meta["go"]);
    eprintln!("meta.stack_files: {}", meta["stack_files"]);
    assert!(
        meta["ts_ms"].as_u64().unwrap() < inc["ts_ms"].as_u64().unwrap(),
        "bundle {} before the kill {}",
        meta["ts_ms"],
        inc["ts_ms"]
    );
    let stacks = std::fs::read_to_string(dir.join("stacks.txt")).unwrap();
    eprintln!(
        "stacks.txt:\n{}",
        stacks.lines().take(14).collect::<Vec<_>>().join("\n")
    );
    assert!(
        stacks.contains("main.startWorker"),
        "stacks.txt does not name main.startWorker"
    );
    let folded = std::fs::read_to_string(dir.join("stacks.folded")).unwrap();
    eprintln!(
        "stacks.folded (first 3 lines):\n{}",
        folded.lines().take(3).collect::<Vec<_>>().join("\n")
    );
    assert!(
        folded.lines().any(|l| l.contains("main.startWorker")),
        "stacks.folded does not name main.startWorker"
    );
    assert!(meta["go"].is_object(), "meta.json says Go: {}", meta["go"]);
    assert!(meta["go"]["goroutines"].is_null());
    assert!(
        meta["go"]["goroutines_note"]
            .as_str()
            .unwrap_or("")
            .starts_with("not available"),
        "{}",
        meta["go"]
    );
    assert!(meta["python"].is_null(), "not Python");
    // profile.pb.gz opens in pprof and lists the goroutine's function.
    check_profile(&dir, "main.startWorker");
    assert_eq!(
        meta["language_runtime"]["name"], "go",
        "{}",
        meta["language_runtime"]
    );
    assert!(rec.stop().success());
}
