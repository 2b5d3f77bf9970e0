//! Attribution and filters on real cgroups: processes in memcgs laid out
//! as a systemd service, a docker container and a kubernetes pod (built
//! under this machine's memory hierarchy and removed afterwards) get their
//! unit, container id and pod uid in --json; --unit shows only the
//! service; --exec-on-oom gets the victim's place in its environment.
use std::{path::PathBuf, process::Command, time::Duration};

use leaktrace_tests::*;

const HELPER: &str = env!("CARGO_BIN_EXE_lt-helper");
const MB: u64 = 1 << 20;
const CTR: &str = "4f3c2b1a00112233445566778899aabbccddeeff00112233445566778899aabb";
const POD: &str = "6b1e3a5c-2d4f-4e8a-9b7c-0123456789ab";
const POD_CTR: &str = "9a8b7c6d5e4f30112233445566778899aabbccddeeff00112233445566778899";

/// Nested cgroups under the memory hierarchy (v1) or cgroup2, removed in
/// reverse order on drop with whatever runs in them killed.
struct Tree {
    root: PathBuf,
    made: Vec<PathBuf>,
    /// The hierarchy's mount point, to turn a directory into a cgroup path.
    mount: PathBuf,
}

impl Tree {
    fn new() -> Self {
        let v1 = PathBuf::from("/sys/fs/cgroup/memory");
        let mount = if v1.join("memory.limit_in_bytes").exists() {
            v1
        } else {
            PathBuf::from("/sys/fs/cgroup")
        };
        let root = mount.join(format!("leaktrace-test-{}-attr", std::process::id()));
        Self {
            root,
            made: Vec::new(),
            mount,
        }
    }

    /// Makes `rel` (and its parents) under the test root; returns the dir.
    /// On cgroup2 each level hands the memory controller down to its
    /// children, so that a leaf has memory.max (a parent with processes
    /// could not, but these parents never have any).
    fn make(&mut self, rel: &str) -> PathBuf {
        let v2 = !self.mount.ends_with("memory");
        let delegate = |d: &std::path::Path| {
            if v2 {
                std::fs::write(d.join("cgroup.subtree_control"), "+memory")
                    .unwrap_or_else(|e| panic!("+memory in {}: {e}", d.display()));
            }
        };
        let mut d = self.root.clone();
        if !d.exists() {
            std::fs::create_dir(&d).unwrap();
            self.made.push(d.clone());
        }
        let parts: Vec<&str> = rel.split('/').collect();
        for c in &parts {
            delegate(&d);
            d = d.join(c);
            if !d.exists() {
                std::fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
                self.made.push(d.clone());
            }
        }
        d
    }

    fn path_of(&self, dir: &std::path::Path) -> String {
        format!("/{}", dir.strip_prefix(&self.mount).unwrap().display())
    }

    fn spawn(&self, dir: &std::path::Path, argv: &[&str]) -> Proc {
        Proc::spawn(
            Command::new("/bin/sh")
                .arg("-c")
                .arg("echo $$ > \"$0\" && exec \"$@\"")
                .arg(dir.join("cgroup.procs"))
                .args(argv),
        )
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for d in self.made.iter().rev() {
            for _ in 0..100 {
                let pids = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for p in pids.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: killing what this test put in its own cgroups.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn service_container_and_pod_are_named_and_unit_filters() {
    require_root();
    let mut t = Tree::new();
    let svc = t.make("system.slice/lt-attr-test.service");
    let ctr = t.make(&format!("docker/{CTR}"));
    let pod = t.make(&format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{POD_CTR}.scope",
        POD.replace('-', "_")
    ));
    let mut ps: Vec<Proc> = [&svc, &ctr, &pod]
        .iter()
        .map(|d| t.spawn(d, &[HELPER, "step", "8", "0", "60"]))
        .collect();
    for p in &mut ps {
        p.wait_line("ready", Duration::from_secs(10));
    }
    let (s, c, k) = (ps[0].pid(), ps[1].pid(), ps[2].pid());
    let w = Watch::start(&["--interval", "0.5"]);
    w.wait_samples(3);
    let row = |pid: u32| {
        w.latest_row(pid)
            .unwrap_or_else(|| panic!("pid {pid} not listed"))
    };
    let (rs, rc, rk) = (row(s), row(c), row(k));
    eprintln!("service {rs}\ncontainer {rc}\npod {rk}");
    assert_eq!(rs["cgroup"], t.path_of(&svc));
    assert_eq!(rs["unit"], "lt-attr-test.service");
    assert_eq!(rs["slice"], "system.slice");
    assert!(rs["container_id"].is_null() && rs["pod_uid"].is_null());
    assert_eq!(rc["container_id"], CTR);
    assert_eq!(rc["runtime"], "docker");
    assert!(rc["unit"].is_null());
    assert_eq!(rk["pod_uid"], POD);
    assert_eq!(rk["container_id"], POD_CTR);
    assert_eq!(rk["runtime"], "containerd");
    drop(w);

    // --unit: only the service's process; --container by prefix.
    let w = Watch::start(&["--interval", "0.5", "--unit", "lt-attr-test.service"]);
    w.wait_samples(3);
    let s_last = w.samples().pop().unwrap();
    let pids: Vec<u64> = s_last["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .collect();
    assert_eq!(pids, vec![s as u64], "--unit shows the service only");
    drop(w);
    let w = Watch::start(&["--interval", "0.5", "--container", &CTR[..12]]);
    w.wait_samples(3);
    let pids: Vec<u64> = w.samples().pop().unwrap()["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .collect();
    assert_eq!(pids, vec![c as u64], "--container shows the container only");
}

/// A memcg OOM in a service's cgroup with --exec-on-oom: the command gets
/// the victim's pid, comm, cgroup, unit and the incident file, and the
/// incident is not filtered away by a --comm that matches nothing.
#[test]
fn exec_on_oom_gets_the_victim_in_its_environment() {
    require_root();
    let mut t = Tree::new();
    let svc = t.make("system.slice/lt-oom-test.service");
    let limit = if t.mount.ends_with("memory") {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    std::fs::write(svc.join(limit), (64 * MB).to_string()).unwrap();
    let out = TempDir::new("attr-exec-oom");
    let env_file = out.0.join("env.json");
    let template = format!("{HELPER} env-dump {}", env_file.display());
    let rec = Record::start(
        &out.0.join("rec"),
        &[
            "--interval",
            "0.5",
            "--exec-on-oom",
            &template,
            "--comm",
            "^nothing-matches$",
        ],
    );
    let mut h = t.spawn(&svc, &[HELPER, "grow", "64", "3", "3"]);
    let pid = h.pid();
    h.wait();
    rec.wait_for(Duration::from_secs(20), "the incident", |l| {
        l.iter()
            .any(|v| v["type"] == "oom_kill" && v["victim"]["pid"] == pid)
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !env_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the --exec-on-oom command did not run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let env: Value = serde_json::from_str(&std::fs::read_to_string(&env_file).unwrap()).unwrap();
    eprintln!("{env}");
    assert_eq!(env["LEAKTRACE_PID"], pid.to_string());
    assert_eq!(env["LEAKTRACE_COMM"], "lt-helper");
    assert_eq!(env["LEAKTRACE_CGROUP"], t.path_of(&svc));
    assert_eq!(env["LEAKTRACE_UNIT"], "lt-oom-test.service");
    assert_eq!(env["LEAKTRACE_CONTAINER_ID"], "");
    assert_eq!(env["LEAKTRACE_WRONG_VICTIM"], "0");
    assert_eq!(
        env["PATH"],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert!(env.get("HOME").is_none(), "the environment is cleared");
    let inc: Value =
        serde_json::from_str(&std::fs::read_to_string(env["LEAKTRACE_INCIDENT"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(inc["victim"]["pid"], pid);
    assert_eq!(inc["victim"]["unit"], "lt-oom-test.service");
    assert!(rec.stop().success());
}
