//! The install artifacts of `cargo xtask dist`: the tarball runs with an
//! empty environment, and the .deb installs, runs, verifies and goes away
//! again. `cargo xtask test` builds them first and passes their directory
//! in LEAKTRACE_DIST_DIR.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use leaktrace_tests::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Libraries the release binary may link: glibc's and the unwinder.
/// Anything else (libLLVM, libz, libelf, ...) would need installing too.
const ALLOWED_LIBS: &[&str] = &[
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
];

fn dist_dir() -> PathBuf {
    let Some(d) = std::env::var_os("LEAKTRACE_DIST_DIR") else {
        panic!(
            "LEAKTRACE_DIST_DIR is not set: this test checks the artifacts of `cargo xtask dist`. \
             Run it through `cargo xtask test` (which runs dist first), or run `cargo xtask dist` \
             and then LEAKTRACE_DIST_DIR=$PWD/dist cargo test -p leaktrace-tests --test install"
        );
    };
    let d = PathBuf::from(d);
    assert!(
        d.is_dir(),
        "LEAKTRACE_DIST_DIR={} is not a directory",
        d.display()
    );
    d
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let o = output(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `doctor --json` exits 0 (nothing at risk) or 2 (a warning) and prints
/// one JSON document.
fn check_doctor(o: &Output, what: &str) -> Value {
    let code = o.status.code();
    assert!(
        code == Some(0) || code == Some(2),
        "{what} doctor --json exited {:?}:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} doctor --json did not print JSON ({e}):\n{}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn ldd_libs(bin: &Path) -> Vec<String> {
    let out = ok(Command::new("ldd").arg(bin));
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
        .collect()
}

#[test]
fn tarball_runs_with_an_empty_environment() {
    require_root();
    let dist = dist_dir();
    let name = format!("leaktrace-{VERSION}-x86_64");
    let tarball = dist.join(format!("{name}.tar.gz"));
    assert!(
        tarball.exists(),
        "{} missing: run `cargo xtask dist`",
        tarball.display()
    );
    let tmp = TempDir::new("install-tarball");
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&tmp.0));
    let top = tmp.0.join(&name);
    for f in [
        "leaktrace",
        "man/leaktrace.8",
        "man/leaktrace-record.8",
        "man/leaktrace-watch.8",
        "completions/leaktrace.bash",
        "completions/_leaktrace",
        "completions/leaktrace.fish",
        "leaktrace.service",
        "leaktrace.default",
        "operations.md",
        "dropin-metrics-and-hooks.conf",
    ] {
        assert!(top.join(f).exists(), "{f} is not in {}", tarball.display());
    }
    let bin = top.join("leaktrace");

    // No PATH, no HOME, no cargo: only what is in the file.
    let v = ok(Command::new("/usr/bin/env")
        .args(["-i", "PATH="])
        .arg(&bin)
        .arg("--version"));
    eprintln!("tarball --version: {}", v.trim());
    assert_eq!(v.trim(), format!("leaktrace {VERSION}"));
    let o = output(
        Command::new("/usr/bin/env")
            .args(["-i", "PATH="])
            .arg(&bin)
            .args(["doctor", "--json"]),
    );
    let doc = check_doctor(&o, "tarball");
    eprintln!(
        "tarball doctor --json: exit {:?}, {} top-level keys",
        o.status.code(),
        doc.as_object().map_or(0, |m| m.len())
    );

    let libs = ldd_libs(&bin);
    eprintln!("tarball binary links: {libs:?}");
    for l in &libs {
        assert!(
            ALLOWED_LIBS.contains(&l.as_str()),
            "the release binary needs {l}, which a bare host may not have (ldd: {libs:?})"
        );
    }

    // The internal generators stay out of --help; the man page and the
    // completions describe the real command line.
    let help = ok(Command::new(&bin).arg("--help"));
    assert!(
        !help.contains("__gen"),
        "hidden subcommands show in --help:\n{help}"
    );
    let man = std::fs::read_to_string(top.join("man/leaktrace-record.8")).unwrap();
    assert!(man.contains(".TH leaktrace-record 8"), "{man}");
    assert!(
        man.contains("max\\-evidence\\-bytes"),
        "record's options missing:\n{man}"
    );
    let bash = std::fs::read_to_string(top.join("completions/leaktrace.bash")).unwrap();
    assert!(
        bash.contains("--exec-on-trigger"),
        "bash completion lacks record's options"
    );
    ok(Command::new("bash")
        .arg("-n")
        .arg(top.join("completions/leaktrace.bash")));
    let fish = std::fs::read_to_string(top.join("completions/leaktrace.fish")).unwrap();
    assert!(fish.contains("complete -c leaktrace"), "{fish}");
}

/// Purges the package when dropped, so that a failing test does not leave
/// it installed.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let o = Command::new("dpkg").args(["--purge", "leaktrace"]).output();
        match o {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "cleanup: dpkg --purge leaktrace failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cleanup: cannot run dpkg --purge leaktrace: {e}"),
        }
    }
}

/// Files the package installs (checked absent before and after).
const INSTALLED: &[&str] = &[
    "/usr/bin/leaktrace",
    "/etc/default/leaktrace",
    "/usr/lib/systemd/system/leaktrace.service",
    "/usr/share/man/man8/leaktrace.8.gz",
    "/usr/share/bash-completion/completions/leaktrace",
];

fn package_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "leaktrace"])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("installed"))
}

#[test]
fn deb_installs_runs_and_purges() {
    require_root();
    let dist = dist_dir();
    let deb = dist.join(format!("leaktrace_{VERSION}_amd64.deb"));
    assert!(deb.exists(), "{} missing: run `cargo xtask dist`", deb.display());
    // Never replace something this test did not install.
    assert!(
        !package_installed(),
        "a leaktrace package is already installed on this machine; not touching it"
    );
    for p in INSTALLED {
        assert!(
            !Path::new(p).exists(),
            "{p} exists outside the package; not overwriting it"
        );
    }

    let contents = ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for p in [
        "./usr/bin/leaktrace",
        "./usr/share/man/man8/leaktrace.8.gz",
        "./usr/share/man/man8/leaktrace-record.8.gz",
        "./usr/share/bash-completion/completions/leaktrace",
        "./usr/share/zsh/vendor-completions/_leaktrace",
        "./usr/share/fish/vendor_completions.d/leaktrace.fish",
        // cargo-deb puts units under /usr/lib (the same directory as /lib
        // on merged-/usr systems: Debian 12, Ubuntu 22.04 and later).
        "./usr/lib/systemd/system/leaktrace.service",
        "./etc/default/leaktrace",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(p)),
            "{p} is not in {}:\n{contents}",
            deb.display()
        );
    }
    let conffiles = ok(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("conffiles"));
    assert!(
        conffiles.contains("/etc/default/leaktrace"),
        "conffiles: {conffiles}"
    );

    let guard = Installed;
    let out = ok(Command::new("dpkg").arg("-i").arg(&deb));
    eprintln!("dpkg -i: {}", out.trim().replace('\n', " | "));
    assert!(package_installed());

    let v = ok(Command::new("/usr/bin/env").args(["-i", "PATH=/usr/bin:/bin", "leaktrace", "--version"]));
    eprintln!("installed --version: {}", v.trim());
    assert_eq!(v.trim(), format!("leaktrace {VERSION}"));
    let o = output(Command::new("/usr/bin/env").args([
        "-i",
        "PATH=/usr/bin:/bin",
        "leaktrace",
        "doctor",
        "--json",
    ]));
    check_doctor(&o, "installed");

    // man-db may be absent on a bare host: then the file itself is checked.
    let m = Command::new("man")
        .args(["-w", "leaktrace"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("(man not runnable: {e})"));
    eprintln!("man -w leaktrace: {m:?}");
    assert!(
        m == "/usr/share/man/man8/leaktrace.8.gz" || Path::new("/usr/share/man/man8/leaktrace.8.gz").exists(),
        "man page not installed (man -w: {m:?})"
    );
    assert!(Path::new("/usr/share/bash-completion/completions/leaktrace").exists());
    assert!(Path::new("/etc/default/leaktrace").exists());

    let unit = Path::new("/usr/lib/systemd/system/leaktrace.service");
    let text = std::fs::read_to_string(unit).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "EnvironmentFile=-/etc/default/leaktrace",
        "ExecStart=/usr/bin/leaktrace record --dir /var/lib/leaktrace $LEAKTRACE_ARGS",
        "RestartPreventExitStatus=64 77",
    ] {
        assert!(text.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    if Command::new("systemd-analyze").arg("--version").output().is_ok() {
        let o = output(Command::new("systemd-analyze").arg("verify").arg(unit));
        let err = String::from_utf8_lossy(&o.stderr);
        eprintln!("systemd-analyze verify: {} {}", o.status, err.trim());
        assert!(o.status.success(), "systemd-analyze verify failed:\n{err}");
        assert!(
            !err.contains("leaktrace.service"),
            "systemd-analyze verify complains about the unit:\n{err}"
        );
    } else {
        eprintln!("systemd-analyze not installed: unit not verified");
    }

    ok(Command::new("dpkg").args(["--purge", "leaktrace"]));
    std::mem::forget(guard);
    assert!(!package_installed(), "still installed after dpkg --purge");
    for p in INSTALLED {
        assert!(!Path::new(p).exists(), "{p} left behind after purge");
    }
    // The maintainer scripts mask the unit on removal and unmask it on purge.
    assert!(
        std::fs::symlink_metadata("/etc/systemd/system/leaktrace.service").is_err(),
        "a mask for leaktrace.service was left behind"
    );
}

/// Unpacks dist/leaktrace-VERSION-LABEL.tar.gz into `into`; returns its
/// binary.
fn unpack(label: &str, into: &Path) -> PathBuf {
    let name = format!("leaktrace-{VERSION}-{label}");
    let tarball = dist_dir().join(format!("{name}.tar.gz"));
    assert!(tarball.exists(), "{} missing: run `cargo xtask dist`", tarball.display());
    ok(Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(into));
    into.join(name).join("leaktrace")
}

/// The ELF header's e_machine: 62 for x86_64, 183 for aarch64.
fn elf_machine(bin: &Path) -> u16 {
    let b = std::fs::read(bin).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is not ELF", bin.display());
    u16::from_le_bytes([b[18], b[19]])
}

/// Issue 22: the static x86_64 binary needs nothing from the host's
/// userland. In a root that holds only the binary, `--version` runs;
/// `doctor` says that /proc is missing (it does not print "unknown"
/// everywhere and call that healthy); with /proc and /sys mounted in a
/// private mount namespace (gone with it), `doctor --json` checks the host.
#[test]
fn the_static_binary_runs_in_an_empty_root() {
    require_root();
    let tmp = TempDir::new("install-static");
    let bin = unpack("x86_64-static", &tmp.0);
    assert_eq!(elf_machine(&bin), 62);
    let root = tmp.0.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(&bin, root.join("leaktrace")).unwrap();
    let chroot = |args: &[&str]| output(Command::new("/usr/sbin/chroot").arg(&root).arg("/leaktrace").args(args).env_clear());
    let v = chroot(&["--version"]);
    assert!(v.status.success(), "{v:?}");
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), format!("leaktrace {VERSION}"));
    let names: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["leaktrace"], "the root must hold only the binary");

    let d = chroot(&["doctor"]);
    let err = String::from_utf8_lossy(&d.stderr);
    eprintln!("doctor in an empty root: exit {:?}: {}", d.status.code(), err.trim());
    assert_eq!(d.status.code(), Some(1), "{d:?}");
    assert!(err.contains("/proc is not mounted"), "{err}");

    for m in ["proc", "sys"] {
        std::fs::create_dir(root.join(m)).unwrap();
    }
    let script = format!(
        "mount -t proc proc {r}/proc && mount --rbind /sys {r}/sys && exec chroot {r} /leaktrace doctor --json",
        r = root.display()
    );
    let o = output(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]));
    let doc = check_doctor(&o, "static binary in a chroot");
    eprintln!("static doctor --json in a chroot: exit {:?}, {} keys", o.status.code(), doc.as_object().map_or(0, |m| m.len()));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&root.display().to_string()), "a mount leaked out of the namespace");
}

/// Issue 22: the aarch64 binary is an arm64 static executable that runs
/// `--version` and `--help` under qemu-user (Debian's qemu-user-static).
#[test]
fn the_aarch64_binary_runs_under_qemu_user() {
    require_root();
    let tmp = TempDir::new("install-aarch64");
    let bin = unpack("aarch64", &tmp.0);
    assert_eq!(elf_machine(&bin), 183, "not an aarch64 binary");
    let qemu = ensure_package("qemu-aarch64-static", "qemu-user-static");
    let v = ok(Command::new(&qemu).arg(&bin).arg("--version").env_clear());
    eprintln!("aarch64 --version under {}: {}", qemu.display(), v.trim());
    assert_eq!(v.trim(), format!("leaktrace {VERSION}"));
    let h = ok(Command::new(&qemu).arg(&bin).args(["record", "--help"]).env_clear());
    assert!(h.contains("--max-file-bytes"), "{h}");
}

/// Issue 22: both packages pass lintian without errors, and the arm64 one
/// holds the aarch64 binary.
#[test]
fn the_packages_have_no_lintian_errors() {
    let lintian = ensure_package("lintian", "lintian");
    for arch in ["amd64", "arm64"] {
        let deb = dist_dir().join(format!("leaktrace_{VERSION}_{arch}.deb"));
        assert!(deb.exists(), "{} missing: run `cargo xtask dist`", deb.display());
        let f = ok(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg("Architecture"));
        assert_eq!(f.trim(), arch);
        let o = output(Command::new(&lintian).args(["--fail-on", "error"]).arg(&deb));
        let text = String::from_utf8_lossy(&o.stdout);
        eprintln!("lintian {arch}: exit {:?}\n{}", o.status.code(), text.trim());
        assert!(o.status.success(), "lintian found errors in {}:\n{text}{}", deb.display(), String::from_utf8_lossy(&o.stderr));
        assert!(!text.lines().any(|l| l.starts_with("E:")), "{text}");
        let x = TempDir::new(&format!("install-deb-{arch}"));
        ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x.0));
        assert_eq!(elf_machine(&x.0.join("usr/bin/leaktrace")), if arch == "arm64" { 183 } else { 62 });
    }
}
