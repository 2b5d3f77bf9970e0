//! Who a process belongs to, read from its cgroup path: the systemd unit
//! and slice, the container runtime and id, the Kubernetes pod. Pure string
//! work on the path `/proc/<pid>/cgroup` shows (relative to the hierarchy
//! root, so the same strings on v1 and v2), cheap enough for every row.
//!
//! The path is hostile input: where cgroups are delegated, any process can
//! name its own cgroups. So nothing here panics, the work is bounded (the
//! last `MAX_COMPONENTS` components, none longer than `NAME_MAX`), and a
//! field is filled only when its text has the exact shape the runtime
//! writes: container ids of 64 lowercase hex characters, canonical pod
//! UUIDs, unit names in systemd's character set (the label is printed in a
//! terminal, so no control characters or escape sequences get through).
//! A name that passes is still only a claim the cgroup's creator made.
//!
//! Layouts and fields: docs/attribution.md.

use serde::Serialize;

/// The innermost components say who a process is; anything further out
/// is hierarchy plumbing. Bounds the work on long paths.
const MAX_COMPONENTS: usize = 32;
/// Longest directory name the kernel accepts: a longer component cannot be
/// a real cgroup, so it is skipped unread.
const NAME_MAX: usize = 255;
const CONTAINER_ID_LEN: usize = 64;
const POD_UID_LEN: usize = 36;
const SHORT_ID_LEN: usize = 12;
const POD_LABEL_LEN: usize = 8;

/// What comes before a container id in a scope name (systemd drivers) or a
/// directory name (cgroupfs drivers of CRI-O and podman), and the runtime
/// it names. More specific prefixes first: "crio-" is a prefix of
/// "crio-conmon-".
///
/// The `-conmon-` forms are the monitor process (conmon) the runtime
/// starts beside the container, not the container: its memory is the
/// runtime's overhead for that container, so it carries that container's
/// id and runtime.
const PREFIXES: &[(&str, &str)] = &[
    ("cri-containerd-", "containerd"),
    ("crio-conmon-", "cri-o"),
    ("crio-", "cri-o"),
    ("libpod-conmon-", "podman"),
    ("libpod-", "podman"),
    ("docker-", "docker"),
];

/// A process's place in systemd, its container runtime and Kubernetes.
/// Every field is optional: a host process has no container, a container
/// under the cgroupfs driver has no unit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Attribution {
    /// Innermost systemd unit (`.service` or `.scope`): "nginx.service",
    /// "session-3.scope", "docker-<id>.scope".
    pub unit: Option<String>,
    /// Innermost slice: "system.slice", "user-1000.slice",
    /// "kubepods-burstable-pod<uid>.slice".
    pub slice: Option<String>,
    /// "docker", "containerd", "cri-o", "podman", or "kubernetes" for a
    /// container under a pod whose runtime the path does not name.
    pub runtime: Option<String>,
    /// Full container id: exactly 64 lowercase hex characters.
    pub container_id: Option<String>,
    /// Pod UID, canonical (8-4-4-4-12 lowercase hex, dashes).
    pub pod_uid: Option<String>,
}

/// The attribution of a cgroup path. Innermost wins for each field; a
/// container further out than the innermost pod is the node (kind,
/// minikube), not the workload, and is not reported.
pub fn attribute(path: &str) -> Attribution {
    let mut window: Vec<&str> = path
        .rsplit('/')
        .filter(|c| !c.is_empty())
        .take(MAX_COMPONENTS)
        .collect();
    window.reverse();
    let mut a = Attribution::default();
    let mut pod_seen = false;
    for i in (0..window.len()).rev() {
        let (ancestors, name) = (&window[..i], window[i]);
        if name.len() > NAME_MAX {
            continue;
        }
        if a.unit.is_none() && is_unit(name) {
            a.unit = Some(name.to_owned());
        }
        if a.slice.is_none() && is_slice(name) {
            a.slice = Some(name.to_owned());
        }
        if pod_seen {
            continue;
        }
        if a.container_id.is_none() {
            if let Some((id, runtime)) = container(name, ancestors) {
                a.container_id = Some(id.to_owned());
                a.runtime = Some(runtime.to_owned());
            }
        }
        if let Some(uid) = pod(name, ancestors) {
            pod_seen = true;
            a.pod_uid = uid;
        }
    }
    a
}

/// The first 12 characters of a container id, as `docker ps` shows it.
pub fn short_id(id: &str) -> &str {
    prefix_chars(id, SHORT_ID_LEN)
}

/// A label for the live view: the unit, else "ctr:<12-hex>", else
/// "pod:<first 8 of uid>", else None.
pub fn label(a: &Attribution) -> Option<String> {
    if let Some(unit) = &a.unit {
        return Some(unit.clone());
    }
    if let Some(id) = &a.container_id {
        return Some(format!("ctr:{}", short_id(id)));
    }
    a.pod_uid
        .as_ref()
        .map(|uid| format!("pod:{}", prefix_chars(uid, POD_LABEL_LEN)))
}

/// At most `n` characters of `s`, cut on a character boundary.
fn prefix_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((end, _)) => s.get(..end).unwrap_or(s),
        None => s,
    }
}

/// Characters systemd allows in a unit name ('@' separates a template's
/// instance); anything else is not a unit systemd made.
fn is_unit_name(name: &str) -> bool {
    name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.' | b'\\' | b'@'))
}

fn has_suffix(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix).is_some_and(|stem| !stem.is_empty()) && is_unit_name(name)
}

fn is_unit(name: &str) -> bool {
    has_suffix(name, ".service") || has_suffix(name, ".scope")
}

fn is_slice(name: &str) -> bool {
    has_suffix(name, ".slice")
}

fn is_container_id(s: &str) -> bool {
    s.len() == CONTAINER_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A container id in `name` and its runtime: a runtime prefix (with or
/// without ".scope"), or a bare id directly under "docker" (docker's
/// cgroupfs driver) or under a cgroupfs pod directory (the runtime is not
/// named there: "kubernetes").
fn container<'a>(name: &'a str, ancestors: &[&str]) -> Option<(&'a str, &'static str)> {
    let stem = name.strip_suffix(".scope").unwrap_or(name);
    if let Some((id, runtime)) = PREFIXES
        .iter()
        .find_map(|(prefix, runtime)| Some((stem.strip_prefix(prefix)?, *runtime)))
    {
        return is_container_id(id).then_some((id, runtime));
    }
    if !is_container_id(name) {
        return None;
    }
    let (parent, above) = ancestors.split_last()?;
    if *parent == "docker" {
        Some((name, "docker"))
    } else if cgroupfs_pod(parent, above).is_some() {
        Some((name, "kubernetes"))
    } else {
        None
    }
}

/// Whether `name` is a pod's cgroup, and if so its UID when the UID is
/// canonical. A static pod's UID is a 32-hex hash, not a UUID: the pod is
/// seen (so a container further out is not taken for its own) but its
/// UID is None.
fn pod(name: &str, ancestors: &[&str]) -> Option<Option<String>> {
    match cgroupfs_pod(name, ancestors) {
        Some(raw) => Some(pod_uid(raw)),
        None => systemd_pod(name),
    }
}

/// The raw UID of a cgroupfs-driver pod directory: "pod<uid>" directly
/// under "kubepods" (guaranteed QoS) or under "kubepods/<qos>".
fn cgroupfs_pod<'a>(name: &'a str, ancestors: &[&str]) -> Option<&'a str> {
    let raw = name.strip_prefix("pod")?;
    matches!(
        ancestors,
        [.., "kubepods"] | [.., "kubepods", "burstable" | "besteffort"]
    )
    .then_some(raw)
}

/// The UID of a systemd-driver pod slice: "kubepods[-<qos>]-pod<uid>.slice",
/// where the driver writes the UID's dashes as underscores ('-' is the
/// slice hierarchy separator). A kubelet `--cgroup-root` adds a prefix
/// ("kubelet-kubepods-..."), so "kubepods" may be any dash segment.
fn systemd_pod(name: &str) -> Option<Option<String>> {
    let stem = name.strip_suffix(".slice")?;
    let (outer, raw) = stem.rsplit_once("-pod")?;
    if !outer.split('-').any(|s| s == "kubepods") {
        return None;
    }
    Some(pod_uid(&raw.replace('_', "-")))
}

/// `raw` if it is a canonical UUID: 8-4-4-4-12 lowercase hex.
fn pod_uid(raw: &str) -> Option<String> {
    let canonical = raw.len() == POD_UID_LEN
        && raw.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        });
    canonical.then(|| raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "7dea796eb5d6826a85978fa316612874aa3d576ac576495bed83d77fbc9dc744";
    const NODE: &str = "d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22";
    const UID: &str = "55c6c714-b240-4dec-9a45-57b61696ab6e";
    const UID_: &str = "55c6c714_b240_4dec_9a45_57b61696ab6e";
    /// A static pod's UID: a hash, not a UUID.
    const STATIC_UID: &str = "8daa50c3a64c9ff60bb9eab7b44b56fd";

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    fn want(
        unit: Option<String>,
        slice: Option<String>,
        runtime: Option<&str>,
        container_id: Option<&str>,
        pod_uid: Option<&str>,
    ) -> Attribution {
        Attribution {
            unit,
            slice,
            runtime: runtime.map(str::to_owned),
            container_id: container_id.map(str::to_owned),
            pod_uid: pod_uid.map(str::to_owned),
        }
    }

    /// The path field of a /proc/<pid>/cgroup line, as the caller takes it.
    fn path_of(line: &str) -> &str {
        line.splitn(3, ':').nth(2).unwrap_or("")
    }

    /// (layout, path, expected). Every layout here exists on both v1 and
    /// v2 (systemd, docker, containerd, CRI-O, podman and the kubelet
    /// support both); each path is checked as a v2 line ("0::<path>") and
    /// as a v1 memory-hierarchy line ("7:memory:<path>").
    fn fixtures() -> Vec<(&'static str, String, Attribution)> {
        let pod_slice = format!("kubepods-burstable-pod{UID_}.slice");
        vec![
            ("root", "/".into(), Attribution::default()),
            (
                "systemd service",
                "/system.slice/nginx.service".into(),
                want(s("nginx.service"), s("system.slice"), None, None, None),
            ),
            (
                "session scope",
                "/user.slice/user-1000.slice/session-3.scope".into(),
                want(s("session-3.scope"), s("user-1000.slice"), None, None, None),
            ),
            (
                "nested slice",
                "/system.slice/foo.slice/bar.service".into(),
                want(s("bar.service"), s("foo.slice"), None, None, None),
            ),
            ("slice only", "/system.slice".into(), want(None, s("system.slice"), None, None, None)),
            (
                "slice only, nested",
                "/user.slice/user-1000.slice".into(),
                want(None, s("user-1000.slice"), None, None, None),
            ),
            ("init.scope", "/init.scope".into(), want(s("init.scope"), None, None, None, None)),
            (
                "user manager, innermost unit",
                "/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service".into(),
                want(s("dbus.service"), s("app.slice"), None, None, None),
            ),
            (
                "delegated subgroup of a service",
                "/system.slice/foo.service/payload".into(),
                want(s("foo.service"), s("system.slice"), None, None, None),
            ),
            (
                "docker cgroupfs",
                format!("/docker/{ID}"),
                want(None, None, Some("docker"), Some(ID), None),
            ),
            (
                "docker cgroupfs, subgroup",
                format!("/docker/{ID}/sub"),
                want(None, None, Some("docker"), Some(ID), None),
            ),
            (
                "docker systemd",
                format!("/system.slice/docker-{ID}.scope"),
                want(s(&format!("docker-{ID}.scope")), s("system.slice"), Some("docker"), Some(ID), None),
            ),
            (
                "containerd systemd, no pod",
                format!("/system.slice/cri-containerd-{ID}.scope"),
                want(
                    s(&format!("cri-containerd-{ID}.scope")),
                    s("system.slice"),
                    Some("containerd"),
                    Some(ID),
                    None,
                ),
            ),
            (
                "cri-o conmon (the monitor)",
                format!("/system.slice/crio-conmon-{ID}.scope"),
                want(s(&format!("crio-conmon-{ID}.scope")), s("system.slice"), Some("cri-o"), Some(ID), None),
            ),
            (
                "podman systemd",
                format!("/machine.slice/libpod-{ID}.scope"),
                want(s(&format!("libpod-{ID}.scope")), s("machine.slice"), Some("podman"), Some(ID), None),
            ),
            (
                "podman conmon (the monitor)",
                format!("/machine.slice/libpod-conmon-{ID}.scope"),
                want(
                    s(&format!("libpod-conmon-{ID}.scope")),
                    s("machine.slice"),
                    Some("podman"),
                    Some(ID),
                    None,
                ),
            ),
            (
                "podman rootless",
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
                want(s(&format!("libpod-{ID}.scope")), s("user.slice"), Some("podman"), Some(ID), None),
            ),
            (
                "podman cgroupfs",
                format!("/libpod_parent/libpod-{ID}"),
                want(None, None, Some("podman"), Some(ID), None),
            ),
            (
                "kubepods cgroupfs burstable",
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                want(None, None, Some("kubernetes"), Some(ID), Some(UID)),
            ),
            (
                "kubepods cgroupfs besteffort",
                format!("/kubepods/besteffort/pod{UID}/{ID}"),
                want(None, None, Some("kubernetes"), Some(ID), Some(UID)),
            ),
            (
                "kubepods cgroupfs guaranteed (no qos level)",
                format!("/kubepods/pod{UID}/{ID}"),
                want(None, None, Some("kubernetes"), Some(ID), Some(UID)),
            ),
            (
                "kubepods cgroupfs, cri-o",
                format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
                want(None, None, Some("cri-o"), Some(ID), Some(UID)),
            ),
            (
                "kubepods systemd containerd",
                format!("/kubepods.slice/kubepods-burstable.slice/{pod_slice}/cri-containerd-{ID}.scope"),
                want(
                    s(&format!("cri-containerd-{ID}.scope")),
                    s(&pod_slice),
                    Some("containerd"),
                    Some(ID),
                    Some(UID),
                ),
            ),
            (
                "kubepods systemd guaranteed",
                format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                want(
                    s(&format!("cri-containerd-{ID}.scope")),
                    s(&format!("kubepods-pod{UID_}.slice")),
                    Some("containerd"),
                    Some(ID),
                    Some(UID),
                ),
            ),
            (
                "kubepods systemd cri-o",
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"
                ),
                want(
                    s(&format!("crio-{ID}.scope")),
                    s(&format!("kubepods-besteffort-pod{UID_}.slice")),
                    Some("cri-o"),
                    Some(ID),
                    Some(UID),
                ),
            ),
            (
                "kubepods systemd docker",
                format!("/kubepods.slice/kubepods-burstable.slice/{pod_slice}/docker-{ID}.scope"),
                want(s(&format!("docker-{ID}.scope")), s(&pod_slice), Some("docker"), Some(ID), Some(UID)),
            ),
            (
                "kubelet --cgroup-root prefix",
                format!(
                    "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
                     kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
                ),
                want(
                    s(&format!("cri-containerd-{ID}.scope")),
                    s(&format!("kubelet-kubepods-besteffort-pod{UID_}.slice")),
                    Some("containerd"),
                    Some(ID),
                    Some(UID),
                ),
            ),
            (
                "pod level, cgroupfs",
                format!("/kubepods/burstable/pod{UID}"),
                want(None, None, None, None, Some(UID)),
            ),
            (
                "pod level, systemd",
                format!("/kubepods.slice/kubepods-burstable.slice/{pod_slice}"),
                want(None, s(&pod_slice), None, None, Some(UID)),
            ),
            (
                "qos level, cgroupfs",
                "/kubepods/burstable".into(),
                want(None, None, None, None, None),
            ),
            (
                "qos level, systemd",
                "/kubepods.slice/kubepods-burstable.slice".into(),
                want(None, s("kubepods-burstable.slice"), None, None, None),
            ),
            (
                "kind node: container inside the pod wins",
                format!("/docker/{NODE}/kubepods/burstable/pod{UID}/{ID}"),
                want(None, None, Some("kubernetes"), Some(ID), Some(UID)),
            ),
            (
                "kind node: pod level, node container not reported",
                format!("/docker/{NODE}/kubepods/burstable/pod{UID}"),
                want(None, None, None, None, Some(UID)),
            ),
            (
                "static pod (hash uid): container kept, uid None",
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice/\
                     cri-containerd-{ID}.scope"
                ),
                want(
                    s(&format!("cri-containerd-{ID}.scope")),
                    s(&format!("kubepods-burstable-pod{STATIC_UID}.slice")),
                    Some("containerd"),
                    Some(ID),
                    None,
                ),
            ),
        ]
    }

    #[test]
    fn attribution_fixtures_v1_and_v2() {
        assert_eq!(ID.len(), 64);
        assert_eq!(NODE.len(), 64);
        for (layout, path, expected) in fixtures() {
            for line in [format!("0::{path}"), format!("7:memory:{path}")] {
                assert_eq!(attribute(path_of(&line)), expected, "{layout}: {line}");
            }
        }
    }

    #[test]
    fn attribution_empty_is_none() {
        assert_eq!(attribute(""), Attribution::default());
        assert_eq!(attribute("/"), Attribution::default());
        assert_eq!(attribute("//"), Attribution::default());
    }

    #[test]
    fn attribution_rejects_bad_container_ids() {
        let upper = ID.to_uppercase();
        let nonhex = format!("{}g", &ID[..63]);
        let short = &ID[..63];
        let long = format!("{ID}0");
        for bad in [upper.as_str(), nonhex.as_str(), short, long.as_str()] {
            let a = attribute(&format!("/docker/{bad}"));
            assert_eq!((a.container_id, a.runtime), (None, None), "{bad}");
            let a = attribute(&format!("/system.slice/docker-{bad}.scope"));
            assert_eq!((a.container_id, a.runtime), (None, None), "{bad}");
            let a = attribute(&format!("/kubepods/burstable/pod{UID}/{bad}"));
            assert_eq!(
                (a.container_id, a.runtime, a.pod_uid.as_deref()),
                (None, None, Some(UID)),
                "{bad}"
            );
        }
        // A bare id is a container only under docker or a pod directory.
        assert_eq!(attribute(&format!("/system.slice/{ID}")).container_id, None);
        assert_eq!(attribute(&format!("/{ID}")).container_id, None);
    }

    #[test]
    fn attribution_rejects_bad_pod_uids() {
        let upper = UID.to_uppercase();
        let shifted = "55c6c71-4b240-4dec-9a45-57b61696ab6e";
        let short = &UID[..35];
        for bad in [upper.as_str(), shifted, short, STATIC_UID, ""] {
            assert_eq!(
                attribute(&format!("/kubepods/burstable/pod{bad}")).pod_uid,
                None,
                "{bad}"
            );
            let systemd = bad.replace('-', "_");
            let a = attribute(&format!("/kubepods.slice/kubepods-pod{systemd}.slice"));
            assert_eq!(a.pod_uid, None, "{bad}");
        }
        // A pod directory counts only under kubepods.
        let a = attribute(&format!("/foo/pod{UID}/{ID}"));
        assert_eq!((a.pod_uid, a.container_id), (None, None));
        assert_eq!(attribute(&format!("/foo-pod{UID_}.slice")).pod_uid, None);
    }

    #[test]
    fn attribution_rejects_bad_unit_names() {
        let a = attribute("/system.slice/evil\x1b[2J.service");
        assert_eq!((a.unit, a.slice.as_deref()), (None, Some("system.slice")));
        assert_eq!(attribute("/system.slice/ñginx.service").unit, None);
        assert_eq!(attribute("/.service").unit, None);
        assert_eq!(attribute("/.slice").slice, None);
        let long = format!("/system.slice/{}.service", "a".repeat(300));
        assert_eq!(attribute(&long).unit, None);
    }

    #[test]
    fn attribution_looks_at_last_32_components() {
        let within = format!("/docker/{ID}{}", "/x".repeat(30)); // id's parent is component 32 from the end
        assert_eq!(attribute(&within).container_id.as_deref(), Some(ID));
        let beyond = format!("/docker/{ID}{}", "/x".repeat(31));
        assert_eq!(attribute(&beyond).container_id, None);
        let deep_unit = format!("/a.service{}", "/x".repeat(32));
        assert_eq!(attribute(&deep_unit).unit, None);
    }

    #[test]
    fn attribution_never_panics() {
        let big = "a".repeat(10 * 1024);
        let slashes = "/".repeat(10 * 1024);
        let many = "/x".repeat(5 * 1024);
        let wide = format!("/docker/{}", "é".repeat(5 * 1024));
        let wide_id = "é".repeat(64);
        let mut tricky: Vec<String> = [
            "",
            "/",
            "//",
            "///docker/",
            "/docker",
            "/docker/",
            "docker",
            "/docker/xyz",
            "/docker/../docker/..",
            "/system.slice/../nginx.service",
            "/..",
            "/./.",
            "pod",
            "/kubepods/pod",
            "/kubepods/burstable/pod",
            "/kubepods/burstable/pod/",
            "/kubepods-pod.slice",
            "/-pod.slice",
            "/kubepods-pod_.slice",
            "/kubepods-burstable-pod-.slice",
            ".slice",
            ".scope",
            "/docker-.scope",
            "/cri-containerd-.scope",
            "/crio-conmon-.scope",
            "/libpod-conmon-",
            "\0",
            "/system.slice/\0.service",
            "/system.slice/a\nb.service",
            "/日本語/ñ/🦀.service",
            "0::/system.slice/nginx.service",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        tricky.extend([
            big,
            slashes,
            many,
            wide,
            format!("/docker/{wide_id}"),
            format!("/kubepods/pod{}/{ID}", "é".repeat(36)),
            format!("/kubepods-pod{}.slice", "é".repeat(36)),
            format!("/docker/{ID}/{}", "/".repeat(4096)),
        ]);
        for t in &tricky {
            let a = attribute(t);
            let _ = label(&a);
            let _ = short_id(t);
            if let Some(id) = &a.container_id {
                assert!(is_container_id(id), "{t:?}");
            }
            if let Some(uid) = &a.pod_uid {
                assert!(pod_uid(uid).is_some(), "{t:?}");
            }
            assert_eq!(a.runtime.is_some(), a.container_id.is_some(), "{t:?}");
        }
    }

    #[test]
    fn attribution_short_id() {
        assert_eq!(short_id(ID), "7dea796eb5d6");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(short_id(""), "");
        assert_eq!(short_id(&"é".repeat(20)), "é".repeat(12));
    }

    #[test]
    fn attribution_labels() {
        assert_eq!(
            label(&attribute("/system.slice/nginx.service")).as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            label(&attribute(&format!("/docker/{ID}"))).as_deref(),
            Some("ctr:7dea796eb5d6")
        );
        assert_eq!(
            label(&attribute(&format!("/kubepods/pod{UID}"))).as_deref(),
            Some("pod:55c6c714")
        );
        assert_eq!(label(&attribute("/system.slice")), None);
        assert_eq!(label(&Attribution::default()), None);
    }

    #[test]
    fn attribution_serializes_every_field() {
        let v = serde_json::to_value(attribute(&format!("/docker/{ID}"))).unwrap_or_default();
        assert_eq!(v["runtime"], "docker");
        assert_eq!(v["container_id"], ID);
        assert!(v["unit"].is_null() && v["slice"].is_null() && v["pod_uid"].is_null());
    }
}
