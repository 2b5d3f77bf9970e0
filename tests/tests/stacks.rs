//! Stacks of code built without frame pointers: the kernel copies the top
//! of the user stack and leaktrace unwinds it with the binary's CFI
//! (.eh_frame). The C programs are built at test time with `cc`; each
//! leaks ~40 MiB/s in a 256 MiB memcg until the OOM killer ends it, and
//! the bundle written before the kill must name the frames a frame-pointer
//! walk cannot see.
use std::{path::PathBuf, process::Command, time::Duration};

use leaktrace_tests::*;

const MB: u64 = 1 << 20;

/// Builds `tests/c/<name>.c` with `flags` into target/tmp.
fn build_c(name: &str, flags: &[&str]) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("c/{name}.c"));
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let st = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc");
    assert!(st.success(), "cc {name}.c failed: {st}");
    out
}

/// Runs `bin` in a memcg under `leaktrace record` until it is OOM-killed;
/// returns its bundle's stacks.txt and stacks.folded. Its profile.pb.gz
/// must list `leaf` in `go tool pprof -top`.
fn stacks_of_leaker(tag: &str, bin: &std::path::Path, leaf: &str) -> (String, String) {
    let out = TempDir::new(tag);
    let rec = Record::start(&out.0, &["--interval", "0.5"]);
    let cg = MemCg::new(tag, 256 * MB);
    let mut h = Proc::spawn(&mut cg.command(&[bin.to_str().unwrap(), "40", "30"]));
    let pid = h.pid();
    let st = h.wait();
    assert!(!st.success(), "the leaker must be OOM-killed");
    let (_, dir) = rec.bundle_of(pid, Duration::from_secs(30));
    let stacks = std::fs::read_to_string(dir.join("stacks.txt")).unwrap();
    let folded = std::fs::read_to_string(dir.join("stacks.folded")).unwrap();
    eprintln!("stacks.folded:\n{folded}");
    eprintln!(
        "stacks.txt:\n{}",
        stacks.lines().take(24).collect::<Vec<_>>().join("\n")
    );
    check_profile(&dir, leaf);
    let st = rec.stop();
    assert!(st.success(), "SIGTERM must flush and exit 0, got {st}");
    (stacks, folded)
}

/// The frames of stacks.txt's first (largest) stack.
fn first_stack(stacks: &str) -> String {
    stacks
        .split("\n== stack ")
        .nth(1)
        .unwrap_or_else(|| panic!("no stack in stacks.txt:\n{stacks}"))
        .to_string()
}

/// (a) -O2 -fomit-frame-pointer: main -> leak_outer -> leak_inner, both
/// frameless. A frame-pointer walk stops at leak_inner; CFI names both.
#[test]
fn frameless_callers_are_named() {
    require_root();
    let bin = build_c("frameless_leak", &["-O2", "-fomit-frame-pointer"]);
    let (s, folded) = stacks_of_leaker("stacks-frameless", &bin, "leak_inner");
    let top = first_stack(&s);
    for f in ["leak_inner", "leak_outer", "main"] {
        assert!(top.contains(f), "the largest stack does not name {f}:\n{s}");
    }
    assert!(
        folded.contains("main;leak_outer;leak_inner"),
        "stacks.folded has the frame-pointer stack:\n{folded}"
    );
}

/// (b) -O1 -fno-omit-frame-pointer -momit-leaf-frame-pointer: only the
/// leaf, touch_leaf, has no frame. A frame-pointer walk from it skips its
/// caller, leak_caller; CFI names it.
#[test]
fn the_caller_of_a_frameless_leaf_is_named() {
    require_root();
    let bin = build_c(
        "leaf_frameless_leak",
        &["-O1", "-fno-omit-frame-pointer", "-momit-leaf-frame-pointer"],
    );
    let (s, folded) = stacks_of_leaker("stacks-leaf", &bin, "touch_leaf");
    let top = first_stack(&s);
    for f in ["touch_leaf", "leak_caller", "main"] {
        assert!(top.contains(f), "the largest stack does not name {f}:\n{s}");
    }
    assert!(
        folded.contains("main;leak_caller;touch_leaf"),
        "stacks.folded has the frame-pointer stack:\n{folded}"
    );
}
