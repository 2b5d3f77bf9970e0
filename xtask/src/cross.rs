//! The builds `cargo xtask dist` makes besides the host's glibc binary:
//! a static x86_64 binary (musl), for hosts whose glibc is older than the
//! build machine's (RHEL 8, Ubuntu 20.04, Debian 11, Amazon Linux 2), and
//! a static aarch64 binary (musl) with an eBPF object built for arm64.
//!
//! Both use rustup's musl targets, whose rust-std carries musl's libc and
//! start files (nothing to install for x86_64). aarch64 links with Debian's
//! cross gcc (gcc-aarch64-linux-gnu, installed with apt-get when missing).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{cargo, run, step, toolchain};

/// One extra build.
pub struct Cross {
    /// The Rust target triple.
    pub triple: &'static str,
    /// The name in the tarball: leaktrace-VERSION-<label>.tar.gz.
    pub label: &'static str,
    /// The eBPF object's architecture, when it is not the host's.
    pub ebpf_arch: Option<&'static str>,
    /// The linker, when the default `cc` cannot link for the target.
    pub linker: Option<&'static str>,
    /// `strip` for the target's binaries.
    pub strip: &'static str,
    /// A Debian package that provides `linker` and `strip`.
    pub package: Option<&'static str>,
    /// The Debian architecture, when a .deb is built from it.
    pub deb_arch: Option<&'static str>,
}

pub const STATIC_X86_64: Cross = Cross {
    triple: "x86_64-unknown-linux-musl",
    label: "x86_64-static",
    ebpf_arch: None,
    linker: None,
    strip: "strip",
    package: None,
    deb_arch: None,
};

pub const AARCH64: Cross = Cross {
    triple: "aarch64-unknown-linux-musl",
    label: "aarch64",
    ebpf_arch: Some("aarch64"),
    linker: Some("aarch64-linux-gnu-gcc"),
    strip: "aarch64-linux-gnu-strip",
    package: Some("gcc-aarch64-linux-gnu"),
    deb_arch: Some("arm64"),
};

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The target's rust-std (rustup) and its linker (apt-get), if missing.
fn ensure_tools(c: &Cross) -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (the builds for other targets need rustup's rust-std for them)")?;
    if !String::from_utf8_lossy(&installed.stdout).lines().any(|l| l.trim() == c.triple) {
        step(&format!("adding the Rust target {} (rustup, once)", c.triple));
        run(Command::new("rustup").args(["target", "add", c.triple]))
            .with_context(|| format!("cannot add the Rust target {} (is static.rust-lang.org reachable?)", c.triple))?;
    }
    if let (Some(linker), Some(pkg)) = (c.linker, c.package) {
        if !on_path(linker) {
            step(&format!("installing {pkg} for {linker} (apt-get, once)"));
            let install = || {
                run(Command::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["install", "-y", "-qq", pkg]))
            };
            if install().is_err() {
                let _ = Command::new("apt-get").args(["update", "-qq"]).status();
                install().with_context(|| {
                    format!("cannot install {pkg}: install it by hand (apt-get install {pkg}) and run again")
                })?;
            }
            if !on_path(linker) {
                bail!("{linker} is still not on PATH after installing {pkg}");
            }
        }
    }
    Ok(())
}

/// Builds leaktrace for `c`; returns the binary.
pub fn build(root: &Path, tc: &toolchain::Toolchain, c: &Cross) -> Result<PathBuf> {
    ensure_tools(c)?;
    let obj = match c.ebpf_arch {
        Some(arch) => Some(toolchain::build_ebpf_for(root, tc, arch)?),
        None => None,
    };
    step(&format!("building leaktrace (release, {}, static)", c.triple));
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "--release", "-p", "leaktrace", "--target", c.triple]);
    if let Some(obj) = obj {
        cmd.env("LEAKTRACE_EBPF_OBJ", obj);
    }
    if let Some(linker) = c.linker {
        let var = format!("CARGO_TARGET_{}_LINKER", c.triple.to_uppercase().replace('-', "_"));
        cmd.env(var, linker);
    }
    run(&mut cmd)?;
    let bin = root.join("target").join(c.triple).join("release/leaktrace");
    if has_interpreter(&std::fs::read(&bin)?)? {
        bail!("{} is not static: it names a program interpreter (PT_INTERP)", bin.display());
    }
    Ok(bin)
}

/// Whether a 64-bit little-endian ELF file has a PT_INTERP segment (a
/// dynamic loader to run it): a static binary has none.
pub fn has_interpreter(elf: &[u8]) -> Result<bool> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |o: usize| elf.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |o: usize| elf.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize);
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        bail!("ELF header cut short");
    };
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        match u32_at(phoff + i * phentsize) {
            Some(PT_INTERP) => return Ok(true),
            Some(_) => {}
            None => bail!("ELF program headers cut short"),
        }
    }
    Ok(false)
}
