//! The eBPF toolchain: nightly + rust-src + bpf-linker built against the
//! nightly's own libLLVM, installed under `<workspace>/.toolchain`.
//!
//! A plain `cargo install bpf-linker` looks for a system LLVM, which these
//! machines do not have; linking it against the libLLVM shipped inside the
//! nightly toolchain guarantees the two agree on the LLVM version.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{run, step};

pub const BPF_LINKER_VERSION: &str = "0.13.0";
pub const NIGHTLY: &str = "nightly";

pub struct Toolchain {
    /// `rustc +nightly -vV` first line, recorded next to the object.
    pub nightly_version: String,
    /// Directory holding bpf-linker.
    pub bin_dir: PathBuf,
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rustc_nightly(args: &[&str]) -> Result<String> {
    let mut c = Command::new("rustc");
    c.arg(format!("+{NIGHTLY}"))
        .args(args)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC");
    output(&mut c)
}

pub fn bootstrap(root: &Path) -> Result<Toolchain> {
    // 1. A nightly toolchain.
    let vv = match rustc_nightly(&["-vV"]) {
        Ok(v) => v,
        Err(_) => {
            step("installing the nightly toolchain (rustup)");
            run(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))
                .context("no nightly toolchain and `rustup toolchain install nightly` failed")?;
            rustc_nightly(&["-vV"])?
        }
    };
    let nightly_version = vv.lines().next().unwrap_or_default().to_string();
    let llvm_version = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` does not report an LLVM version")?
        .trim()
        .to_string();
    let llvm_major = llvm_version
        .split('.')
        .next()
        .context("unparseable LLVM version")?
        .to_string();
    let sysroot = PathBuf::from(rustc_nightly(&["--print", "sysroot"])?.trim());

    // 2. rust-src, for -Z build-std=core.
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        step("adding rust-src to the nightly toolchain");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    }

    // 3. bpf-linker, against nightly's libLLVM.
    let tc_dir = root.join(".toolchain");
    let bin_dir = tc_dir.join("bin");
    let linker = bin_dir.join("bpf-linker");
    let stamp = tc_dir.join("bpf-linker.stamp");
    let want_stamp = format!("bpf-linker {BPF_LINKER_VERSION} llvm {llvm_version} ({nightly_version})\n");
    let lib_dir = tc_dir.join("llvm/lib");
    let libllvm = find_libllvm(&sysroot.join("lib"), &llvm_major)?;
    // Both the generic name (for the build) and the exact soname (for the
    // binary's RUNPATH at run time) point at nightly's libLLVM.
    fs::create_dir_all(&lib_dir)?;
    for name in [
        "libLLVM.so".to_string(),
        libllvm.file_name().unwrap().to_string_lossy().into_owned(),
    ] {
        let link = lib_dir.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("symlinking {}", link.display()))?;
    }
    let up_to_date = linker.exists() && fs::read_to_string(&stamp).ok().as_deref() == Some(&want_stamp);
    if up_to_date {
        step(&format!(
            "bpf-linker {BPF_LINKER_VERSION} for LLVM {llvm_version} already built"
        ));
    } else {
        step(&format!(
            "building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {llvm_version} \
             (first time only, about a minute on 2 cores)"
        ));
        let t = Instant::now();
        run(Command::new("cargo")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("CARGO_TARGET_DIR")
            .env("LLVM_PREFIX", tc_dir.join("llvm"))
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm_major}"),
            ])
            .arg("--root")
            .arg(&tc_dir))
        .context("building bpf-linker")?;
        fs::write(&stamp, &want_stamp)?;
        step(&format!("bpf-linker built in {:.0} s", t.elapsed().as_secs_f64()));
    }
    Ok(Toolchain {
        nightly_version,
        bin_dir,
    })
}

fn find_libllvm(dir: &Path, major: &str) -> Result<PathBuf> {
    let prefix = format!("libLLVM.so.{major}");
    let alt = format!("libLLVM-{major}");
    let mut found = None;
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            return Ok(dir.join(name));
        }
        if name.starts_with(&alt) && name.ends_with(".so") {
            found = Some(dir.join(name));
        }
    }
    found.with_context(|| format!("no libLLVM for LLVM {major} in {}", dir.display()))
}

/// Builds the eBPF object into target/ebpf and records the nightly used.
pub fn build_ebpf(root: &Path, tc: &Toolchain) -> Result<PathBuf> {
    build_ebpf_in(root, tc, &root.join("target/ebpf"), None)
}

/// The eBPF object for another architecture (`aarch64`), in
/// target/ebpf-ARCH: the same code, with cfg(bpf_target_arch) set to it
/// (kprobe arguments and sampled registers are read per architecture).
pub fn build_ebpf_for(root: &Path, tc: &Toolchain, arch: &str) -> Result<PathBuf> {
    build_ebpf_in(root, tc, &root.join(format!("target/ebpf-{arch}")), Some(arch))
}

fn build_ebpf_in(root: &Path, tc: &Toolchain, target_dir: &Path, arch: Option<&str>) -> Result<PathBuf> {
    step(&format!(
        "building the eBPF object{} with {}",
        arch.map(|a| format!(" for {a}")).unwrap_or_default(),
        tc.nightly_version
    ));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![tc.bin_dir.clone()];
    paths.extend(std::env::split_paths(&path));
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTFLAGS")
        .env_remove("AYA_BPF_TARGET_ARCH")
        .env("PATH", std::env::join_paths(paths)?)
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            &format!("+{NIGHTLY}"),
            "build",
            "-p",
            "leaktrace-ebpf",
            "--release",
        ])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"]);
    if let Some(a) = arch {
        cmd.env("AYA_BPF_TARGET_ARCH", a);
    }
    run(&mut cmd).context("building the eBPF object")?;
    fs::write(
        target_dir.join("toolchain.txt"),
        format!("{}\n", tc.nightly_version),
    )?;
    Ok(target_dir.join("bpfel-unknown-none/release/leaktrace"))
}
