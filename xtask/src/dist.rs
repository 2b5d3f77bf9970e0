//! `cargo xtask dist`: what an operator installs without a Rust toolchain.
//!
//! * `dist/leaktrace-<version>-x86_64.tar.gz`: the release binary (the
//!   eBPF object is inside it), man pages, bash/zsh/fish completions, the
//!   systemd unit, /etc/default/leaktrace and docs/operations.md.
//! * `dist/leaktrace-<version>-x86_64-static.tar.gz` and
//!   `dist/leaktrace-<version>-aarch64.tar.gz`: the same, with static musl
//!   binaries (cross.rs), for hosts with an older glibc and for arm64.
//! * `dist/leaktrace_<version>_amd64.deb` and `_arm64.deb` (the arm64 one
//!   holds the static aarch64 binary), made by cargo-deb from
//!   `[package.metadata.deb]` in leaktrace/Cargo.toml. cargo-deb is
//!   installed into `.toolchain/cargo-deb` the first time (a few minutes).
//!
//! The man pages and completions come from the binary itself (hidden
//! subcommands `__gen-man` and `__gen-completions`), so they describe the
//! command line that was built, not a copy of it.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{cargo, cross, run, step, toolchain};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const CARGO_DEB_VERSION: &str = "3.8.0";

/// Builds every artifact; returns the directory that holds them.
pub fn run_dist(root: &Path) -> Result<PathBuf> {
    let t0 = Instant::now();
    let bin = build_release(root)?;
    let gen = root.join("target/release/dist-gen");
    generate_docs(root, &bin, &gen)?;

    let dist = root.join("dist");
    fs::create_dir_all(&dist)?;
    let mut made = vec![make_tarball(root, &bin, &gen, &dist, "x86_64", "strip")?];
    made.push(make_deb(root, &dist, None)?);
    let libs = linked_libraries(&bin)?;

    let tc = toolchain::bootstrap(root)?;
    for c in [cross::STATIC_X86_64, cross::AARCH64] {
        let b = cross::build(root, &tc, &c)?;
        made.push(make_tarball(root, &b, &gen, &dist, c.label, c.strip)?);
        if let Some(arch) = c.deb_arch {
            // cargo-deb looks for the assets under target/TRIPLE/release;
            // the man pages and completions are the same for every target.
            let there = root.join("target").join(c.triple).join("release/dist-gen");
            let _ = fs::remove_dir_all(&there);
            copy_tree(&gen, &there)?;
            // Packages ship stripped binaries (lintian); the tarball's
            // copy was stripped, not the build output cargo-deb takes.
            run(Command::new(c.strip).arg(&b))?;
            made.push(make_deb(root, &dist, Some((c.triple, arch)))?);
        }
    }
    for f in &made {
        println!("dist: {}", f.display());
    }
    println!(
        "dist: the x86_64 binary links {} (ldd); the x86_64-static and aarch64 ones nothing; \
         the eBPF object is embedded in each",
        if libs.is_empty() {
            "nothing (static)".to_string()
        } else {
            libs.join(", ")
        }
    );
    println!("dist: done in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(dist)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            fs::copy(e.path(), &dst)?;
        }
    }
    Ok(())
}

/// The eBPF object, then the release loader that embeds it.
fn build_release(root: &Path) -> Result<PathBuf> {
    let tc = toolchain::bootstrap(root)?;
    toolchain::build_ebpf(root, &tc)?;
    step("building leaktrace (release)");
    run(cargo()
        .current_dir(root)
        .args(["build", "--release", "-p", "leaktrace"]))?;
    Ok(root.join("target/release/leaktrace"))
}

/// man/*.8 (plain and .8.gz for the package), completions/ and the
/// package's changelog.gz.
fn generate_docs(root: &Path, bin: &Path, gen: &Path) -> Result<()> {
    step("generating man pages and shell completions from the binary's command line");
    let _ = fs::remove_dir_all(gen);
    let man = gen.join("man");
    let comp = gen.join("completions");
    run(Command::new(bin).arg("__gen-man").arg(&man))?;
    run(Command::new(bin).arg("__gen-completions").arg(&comp))?;
    for f in ["leaktrace.bash", "_leaktrace", "leaktrace.fish"] {
        if !comp.join(f).exists() {
            bail!("{bin:?} __gen-completions did not write {f}");
        }
    }
    if !man.join("leaktrace.8").exists() {
        bail!("{bin:?} __gen-man did not write leaktrace.8");
    }
    // The package's changelog, gzipped as Debian installs it.
    let out = Command::new("gzip")
        .args(["-9n", "-c"])
        .arg(root.join("contrib/debian/changelog"))
        .output()
        .context("running gzip")?;
    if !out.status.success() {
        bail!("gzip contrib/debian/changelog failed");
    }
    fs::write(gen.join("changelog.gz"), out.stdout)?;
    // Debian ships man pages gzipped (-n: no name or time, reproducible).
    for e in fs::read_dir(&man)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "8") {
            let out = Command::new("gzip")
                .args(["-9n", "-c"])
                .arg(&p)
                .output()
                .context("running gzip")?;
            if !out.status.success() {
                bail!("gzip {} failed", p.display());
            }
            let mut gz = p.clone().into_os_string();
            gz.push(".gz");
            fs::write(gz, out.stdout)?;
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn make_tarball(root: &Path, bin: &Path, gen: &Path, dist: &Path, label: &str, strip: &str) -> Result<PathBuf> {
    let name = format!("leaktrace-{VERSION}-{label}");
    step(&format!("packing dist/{name}.tar.gz"));
    let stage = dist.join(&name);
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(stage.join("man"))?;
    fs::create_dir_all(stage.join("completions"))?;
    let exe = stage.join("leaktrace");
    copy(bin, &exe, 0o755)?;
    // Symbols are not needed to run (the .deb strips too); keep the file small.
    if Command::new(strip)
        .arg(&exe)
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        eprintln!("    (strip not available or failed: the binary keeps its symbols)");
    }
    for e in fs::read_dir(gen.join("man"))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "8") {
            copy(&p, &stage.join("man").join(p.file_name().unwrap()), 0o644)?;
        }
    }
    for f in ["leaktrace.bash", "_leaktrace", "leaktrace.fish"] {
        copy(
            &gen.join("completions").join(f),
            &stage.join("completions").join(f),
            0o644,
        )?;
    }
    copy(
        &root.join("contrib/leaktrace.service"),
        &stage.join("leaktrace.service"),
        0o644,
    )?;
    copy(
        &root.join("contrib/leaktrace.default"),
        &stage.join("leaktrace.default"),
        0o644,
    )?;
    copy(
        &root.join("docs/operations.md"),
        &stage.join("operations.md"),
        0o644,
    )?;
    copy(
        &root.join("contrib/dropin-metrics-and-hooks.conf"),
        &stage.join("dropin-metrics-and-hooks.conf"),
        0o644,
    )?;
    let tarball = dist.join(format!("{name}.tar.gz"));
    run(Command::new("tar")
        .current_dir(dist)
        .args(["--owner=0", "--group=0", "--numeric-owner", "--sort=name", "-czf"])
        .arg(&tarball)
        .arg(&name))?;
    fs::remove_dir_all(&stage)?;
    Ok(tarball)
}

/// cargo-deb: the one in .toolchain/cargo-deb, else one on PATH, else
/// installed into .toolchain/cargo-deb (cached for later runs).
fn cargo_deb(root: &Path) -> Result<PathBuf> {
    let tc_dir = root.join(".toolchain/cargo-deb");
    let local = tc_dir.join("bin/cargo-deb");
    if works(&local) {
        return Ok(local);
    }
    if works(Path::new("cargo-deb")) {
        return Ok(PathBuf::from("cargo-deb"));
    }
    step(&format!(
        "installing cargo-deb {CARGO_DEB_VERSION} into .toolchain/cargo-deb \
         (once; a few minutes on 2 cores: about 12 min measured on a busy machine)"
    ));
    let t = Instant::now();
    run(cargo()
        .args([
            "install",
            "--locked",
            "cargo-deb",
            "--version",
            CARGO_DEB_VERSION,
            "--root",
        ])
        .arg(&tc_dir))
    .context(
        "cannot install cargo-deb (is crates.io reachable?); the tarball was built, the .deb was not. \
         Install it by hand (`cargo install --locked cargo-deb`) and run `cargo xtask dist` again",
    )?;
    step(&format!(
        "cargo-deb installed in {:.0} s",
        t.elapsed().as_secs_f64()
    ));
    if !works(&local) {
        bail!("{} does not run after installing it", local.display());
    }
    Ok(local)
}

fn works(p: &Path) -> bool {
    Command::new(p)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The .deb of the host's build, or of a cross build (triple, Debian
/// architecture).
fn make_deb(root: &Path, dist: &Path, cross: Option<(&str, &str)>) -> Result<PathBuf> {
    let tool = cargo_deb(root)?;
    let arch = cross.map_or("amd64", |c| c.1);
    let deb = dist.join(format!("leaktrace_{VERSION}_{arch}.deb"));
    step(&format!(
        "building dist/{} with cargo-deb",
        deb.file_name().unwrap().to_string_lossy()
    ));
    let _ = fs::remove_file(&deb);
    let mut cmd = Command::new(&tool);
    cmd.current_dir(root)
        .args(["-p", "leaktrace", "--no-build", "--output"])
        .arg(&deb)
        .env_remove("CARGO_TARGET_DIR");
    if let Some((triple, _)) = cross {
        // Stripped already in its tarball's copy; cargo-deb would look for
        // a strip of its own for the target.
        cmd.args(["--target", triple, "--no-strip"]);
    }
    run(&mut cmd)?;
    if !deb.exists() {
        bail!("cargo-deb did not write {}", deb.display());
    }
    Ok(deb)
}

/// The shared libraries `ldd` lists for `bin` (names only).
fn linked_libraries(bin: &Path) -> Result<Vec<String>> {
    let out = Command::new("ldd").arg(bin).output().context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| !n.contains("not a dynamic executable") && !n.starts_with("statically"))
        .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
        .collect())
}
