//! `--unit`, `--container`, `--cgroup` and `--comm`: which processes the
//! outputs and the triggers look at. Each flag can be repeated: a process
//! passes a kind of filter when it matches any of its values, and passes
//! the filter when it passes every kind given. OOM incidents are never
//! filtered: a kill is reported whoever it hits.
use regex::Regex;

use crate::host::attribution::Attribution;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only processes in this systemd unit (e.g. nginx.service); repeatable.
    #[arg(long = "unit", value_name = "NAME")]
    pub units: Vec<String>,
    /// Only processes in the container whose id starts with this (at least
    /// 4 hex characters); repeatable.
    #[arg(long = "container", value_name = "ID-PREFIX", value_parser = container_prefix)]
    pub containers: Vec<String>,
    /// Only processes in this cgroup or below it (e.g. /system.slice);
    /// repeatable.
    #[arg(long = "cgroup", value_name = "PATH-PREFIX", value_parser = cgroup_prefix)]
    pub cgroups: Vec<String>,
    /// Only processes whose name (comm) matches this regular expression;
    /// repeatable.
    #[arg(long = "comm", value_name = "REGEX", value_parser = comm_regex)]
    pub comms: Vec<Regex>,
}

fn container_prefix(s: &str) -> Result<String, String> {
    if s.len() < 4 || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a container id prefix is 4 to 64 hex characters".into());
    }
    Ok(s.to_ascii_lowercase())
}

fn cgroup_prefix(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err("a cgroup path starts with '/' (as in /proc/PID/cgroup)".into());
    }
    Ok(if s.len() > 1 {
        s.trim_end_matches('/').to_string()
    } else {
        s.to_string()
    })
}

fn comm_regex(s: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(s)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("not a regular expression: {e}"))
}

impl FilterArgs {
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
            && self.containers.is_empty()
            && self.cgroups.is_empty()
            && self.comms.is_empty()
    }

    pub fn matches(&self, comm: &str, cgroup: &str, a: &Attribution) -> bool {
        (self.units.is_empty() || a.unit.as_ref().is_some_and(|u| self.units.iter().any(|w| w == u)))
            && (self.containers.is_empty()
                || a.container_id
                    .as_ref()
                    .is_some_and(|c| self.containers.iter().any(|p| c.starts_with(p.as_str()))))
            && (self.cgroups.is_empty()
                || self
                    .cgroups
                    .iter()
                    .any(|p| crate::host::cgroup::in_scope(Some(p.as_str()), cgroup)))
            && (self.comms.is_empty() || self.comms.iter().any(|r| r.is_match(comm)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::attribution::attribute;

    #[test]
    fn filters_and_within_a_kind_or_across() {
        let svc = "/system.slice/nginx.service";
        let ctr =
            "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope";
        let f = FilterArgs {
            units: vec!["nginx.service".into()],
            ..Default::default()
        };
        assert!(f.matches("nginx", svc, &attribute(svc)));
        assert!(!f.matches("nginx", ctr, &attribute(ctr)));
        let f = FilterArgs {
            containers: vec![
                container_prefix("0123ab").unwrap_or_default(),
                container_prefix("01234567").unwrap(),
            ],
            comms: vec![comm_regex("^py").unwrap()],
            ..Default::default()
        };
        assert!(f.matches("python3", ctr, &attribute(ctr)));
        assert!(!f.matches("nginx", ctr, &attribute(ctr)), "both kinds must match");
        let f = FilterArgs {
            cgroups: vec![cgroup_prefix("/system.slice/").unwrap()],
            ..Default::default()
        };
        assert!(f.matches("x", svc, &attribute(svc)));
        assert!(!f.matches("x", "/system.slicex/a", &attribute("/system.slicex/a")));
        assert!(FilterArgs::default().matches("x", "/", &Attribution::default()));
        assert!(container_prefix("xyz1").is_err() && container_prefix("ab").is_err());
        assert!(cgroup_prefix("system.slice").is_err());
        assert!(comm_regex("(").is_err());
    }
}
