//! Developer tasks: bootstrap the eBPF toolchain, build, run, test, bench.
//!
//! `cargo xtask run -- watch` and `cargo xtask test` are the two commands a
//! new user needs; both set up everything on a fresh machine first.
mod bench;
mod bench_python;
mod cross;
mod dist;
mod scale;
mod stats;
mod toolchain;
mod vmtest;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and benchmark leaktrace")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the eBPF build needs (rust-src for nightly, bpf-linker
    /// against nightly's LLVM, into ./.toolchain). Skips what is already done.
    Bootstrap,
    /// Bootstrap, then build the eBPF object and the leaktrace binary.
    Build {
        /// Build the loader in release mode.
        #[arg(long)]
        release: bool,
    },
    /// Build (release) and run leaktrace as the current user (must be root).
    /// Example: cargo xtask run -- watch
    Run {
        /// Arguments for leaktrace, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build what installs without a Rust toolchain: dist/leaktrace-<version>-x86_64.tar.gz
    /// (binary with the eBPF object inside, man pages, completions, unit,
    /// /etc/default/leaktrace) and dist/leaktrace_<version>_amd64.deb
    /// (cargo-deb, installed into .toolchain/cargo-deb the first time).
    Dist,
    /// Build everything and run all tests: unit tests and the integration
    /// tests that load the real programs (needs root). Runs `dist` first
    /// for the install test (LEAKTRACE_DIST_DIR). Extra arguments go to
    /// the test binaries, e.g. `cargo xtask test -- watch_growing`.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Boot Debian 12's cloud kernels (6.1 and 6.12 by default) under qemu
    /// and run the kernel integration tests inside each. Downloads and
    /// caches the kernels and busybox under ./.toolchain/vm (installs qemu,
    /// busybox-static and cpio with apt-get if missing). Prints one
    /// `vm-test <release>: N passed, M failed` line per kernel. The kernels
    /// boot side by side, one host thread each. Extra arguments replace the
    /// built-in test list (cargo test filters).
    VmTest {
        /// A kernel series Debian ships as a cloud kernel (6.1, 6.12) or a
        /// vmlinuz path; repeatable. Default: 6.1 and 6.12.
        #[arg(long = "kernel", value_name = "6.1|6.12|PATH")]
        kernels: Vec<String>,
        /// Minutes allowed per kernel (each guest, counted from its boot)
        /// before its qemu is killed and the run is marked "did not finish".
        #[arg(long, default_value_t = vmtest::DEFAULT_TIMEOUT_MIN)]
        timeout_min: u64,
        /// Factor for the tests' timing tolerances in the guest only
        /// (LEAKTRACE_TEST_SLACK); 1.0 keeps the host's.
        #[arg(long, default_value_t = vmtest::DEFAULT_SLACK)]
        slack: f64,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        filters: Vec<String>,
    },
    /// Regenerate the JSON schemas of every output line type into
    /// docs/schema/ (from the Rust types; the tests fail when they are stale).
    Schemas,
    /// Benchmarks. `overhead`: page-fault loop with and without leaktrace
    /// (and bpftrace if installable), alternated, prints faults/s and ratios.
    Bench {
        #[command(subcommand)]
        which: bench::Bench,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.cmd {
        Cmd::Bootstrap => {
            toolchain::bootstrap(&root)?;
        }
        Cmd::Build { release } => {
            build_all(&root, release)?;
        }
        Cmd::Run { args } => {
            let bin = build_all(&root, true)?;
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            if !status.success() {
                std::process::exit(status.code().unwrap_or(1));
            }
        }
        Cmd::Dist => {
            dist::run_dist(&root)?;
        }
        Cmd::Test { args } => {
            // The install test runs the release artifacts; build them first.
            let dist = dist::run_dist(&root)?;
            // The integration tests drive the release binary, the one users
            // run: a debug build's symbolizer and CFI unwinder (gimli,
            // framehop, blazesym unoptimized) take seconds per bundle, and
            // a bundle must be written before the OOM kill it precedes.
            let bin = build_all(&root, true)?;
            ensure_test_packages()?;
            step("running unit and integration tests (integration tests load eBPF: needs root)");
            // Integration tests change global kernel state (cgroups) and
            // measure rates, so they run one at a time.
            let mut cmd = cargo();
            cmd.current_dir(&root)
                .args([
                    "test",
                    "--workspace",
                    "--exclude",
                    "leaktrace-ebpf",
                    "--",
                    "--test-threads=1",
                ])
                .args(&args)
                .env("LEAKTRACE_BIN", &bin)
                .env("LEAKTRACE_DIST_DIR", &dist);
            run_tests(&mut cmd)?;
        }
        Cmd::VmTest {
            kernels,
            timeout_min,
            slack,
            filters,
        } => {
            vmtest::run(
                &root,
                vmtest::Args {
                    kernels,
                    timeout_min,
                    slack,
                    filters,
                },
            )?;
        }
        Cmd::Schemas => {
            let bin = build_all(&root, false)?;
            let dir = root.join("docs/schema");
            run(Command::new(&bin).arg("__schemas").arg(&dir))?;
            step(&format!("wrote the schemas into {}", dir.display()));
        }
        Cmd::Bench { which } => {
            let bin = build_all(&root, true)?;
            bench::run(&root, &bin, which)?;
        }
    }
    Ok(())
}

/// Debian packages the integration tests drive: tmux (the live view's
/// tests run it in a real terminal). Installed with apt-get when missing.
fn ensure_test_packages() -> Result<()> {
    let missing: Vec<&str> = [("tmux", "/usr/bin/tmux")]
        .into_iter()
        .filter(|(_, bin)| !Path::new(bin).exists())
        .map(|(pkg, _)| pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!("installing {} for the tests (apt-get)", missing.join(" ")));
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        c
    };
    run(&mut apt(&["update", "-qq"]))?;
    run(apt(&["install", "-y", "-qq"]).args(&missing))
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

pub fn step(msg: &str) {
    eprintln!("==> {msg}");
}

/// A `cargo` for the host build, without the variables the outer `cargo run`
/// set that would leak into a nested build.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for v in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        c.env_remove(v);
    }
    c
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("command failed ({status}): {cmd:?}");
    }
    Ok(())
}

/// Runs `cargo test`, passing its output through, and ends with one
/// summary line over all test binaries ("tests: N passed, M failed"), so
/// that the last line is not the result of an empty test binary.
fn run_tests(cmd: &mut Command) -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut stdout = std::io::stdout();
    for line in out.lines() {
        let line = line?;
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        if let Some(rest) = line.strip_prefix("test result: ") {
            for part in rest.split(';') {
                let part = part
                    .trim()
                    .trim_start_matches("ok. ")
                    .trim_start_matches("FAILED. ");
                if let Some(n) = part.strip_suffix(" passed").and_then(|n| n.parse::<u64>().ok()) {
                    passed += n;
                } else if let Some(n) = part.strip_suffix(" failed").and_then(|n| n.parse::<u64>().ok()) {
                    failed += n;
                }
            }
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed");
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}

/// Bootstrap, build the eBPF object, then the loader. Returns the loader path.
fn build_all(root: &Path, release: bool) -> Result<PathBuf> {
    let tc = toolchain::bootstrap(root)?;
    toolchain::build_ebpf(root, &tc)?;
    step(&format!(
        "building leaktrace ({})",
        if release { "release" } else { "debug" }
    ));
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "-p", "leaktrace", "-p", "leaktrace-tests"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)?;
    Ok(root
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("leaktrace"))
}
