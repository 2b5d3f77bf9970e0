//! The JSON contract: a JSON Schema for every line leaktrace writes
//! (`--json`, events.jsonl) and for a bundle's meta.json, generated from
//! the types that are serialized (`leaktrace __schemas DIR`, checked in
//! under docs/schema/ and compared with a fresh copy by the tests).
//!
//! The schemas are strict: every field is required (an `Option` is
//! required and nullable), an object has no fields besides its own, and
//! `type` is the line's constant.
use std::path::Path;

use anyhow::{Context, Result};
use schemars::{generate::SchemaSettings, transform::RecursiveTransform, JsonSchema, Schema};

/// The version of the JSON contract; it lives with the sinks that write
/// the status line carrying it.
pub use crate::sinks::SCHEMA_VERSION as VERSION;

/// What each schema describes: (file stem, the line's `type` or None for
/// a file that is not a line, one sentence).
pub const FILES: &[(&str, Option<&str>, &str)] = &[
    (
        "status",
        Some("status"),
        "The first line of --json and of events.jsonl: what is live and why.",
    ),
    (
        "sample",
        Some("sample"),
        "One sampling interval in --json: the top growers, groups, cgroups and the data path's health.",
    ),
    (
        "evidence",
        Some("evidence"),
        "A process crossed an evidence trigger (and its bundle, when written).",
    ),
    (
        "oom_kill",
        Some("oom_kill"),
        "One OOM kill: who triggered it, who died, the kernel's report, the verdict and the stall.",
    ),
    (
        "oom_stall",
        Some("oom_stall"),
        "An OOM whose report or stalled tasks took long: the incident's stall section on its own line.",
    ),
    (
        "summary",
        Some("summary"),
        "events.jsonl: the periodic summary of the top growers (record).",
    ),
    (
        "doctor",
        Some("doctor"),
        "leaktrace doctor --json: the checklist, the slow-console risk and the remedies.",
    ),
    (
        "bundle-meta",
        None,
        "meta.json of an evidence bundle: trigger, thresholds, the process and its place.",
    ),
];

fn strict(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let Some(props) = obj.get("properties").and_then(|p| p.as_object()) else {
        return;
    };
    // Every field is written (none is skipped when empty), so all are
    // required; the one optional field (`map_pids`, debug only) is
    // named here.
    let names: Vec<serde_json::Value> = props
        .keys()
        .filter(|k| k.as_str() != "map_pids")
        .map(|k| serde_json::Value::String(k.clone()))
        .collect();
    obj.insert("required".into(), serde_json::Value::Array(names));
    obj.entry("additionalProperties")
        .or_insert(serde_json::Value::Bool(false));
}

fn generate<T: JsonSchema>(stem: &str, kind: Option<&str>, about: &str) -> Schema {
    let settings = SchemaSettings::draft2020_12().with_transform(RecursiveTransform(strict));
    let mut s = settings.into_generator().into_root_schema_for::<T>();
    s.insert("title".into(), format!("leaktrace {stem}").into());
    s.insert(
        "description".into(),
        format!("{about} JSON contract version {VERSION} (the status line's `schema`).").into(),
    );
    if let (Some(kind), Some(props)) = (kind, s.get_mut("properties").and_then(|p| p.as_object_mut())) {
        props.insert("type".into(), serde_json::json!({"const": kind}));
    }
    s
}

/// meta.json's per-bundle extras (evidence/stackfiles.rs `bundle_extras`)
/// are a flattened map: name them as optional objects, and close the
/// schema again (flatten opened it).
fn bundle_extras(s: &mut Schema) {
    if let Some(props) = s.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for (k, about) in [
            (
                "python",
                "py-spy's Python stacks: tool, version, status (python_stacks.txt)",
            ),
            (
                "go",
                "a Go program: what its stacks say; goroutines is null (not read)",
            ),
            (
                "stack_files",
                "stacks.folded / stacks.raw.json: what was written and what was cut",
            ),
            (
                "profile",
                "profile.pb.gz (pprof): sample types, counts, what was dropped for size",
            ),
            (
                "language_runtime",
                "cpython, go, node, jvm, dotnet or native; perf map status; hint for unnamed JIT frames",
            ),
        ] {
            props.insert(
                k.into(),
                serde_json::json!({"type": "object", "description": about}),
            );
        }
    }
    s.insert("additionalProperties".into(), false.into());
}

/// Every schema, by file stem.
pub fn all() -> Vec<(&'static str, Schema)> {
    use crate::{
        evidence::{bundle::Meta, EvidenceEvent},
        model::incident::{Incident, StallLine},
        sinks::{eventlog::SummaryLine, json::SampleOut, StatusLine},
    };
    FILES
        .iter()
        .map(|&(stem, kind, about)| {
            let s = match stem {
                "status" => generate::<StatusLine>(stem, kind, about),
                "sample" => generate::<SampleOut<'static>>(stem, kind, about),
                "evidence" => generate::<EvidenceEvent>(stem, kind, about),
                "oom_kill" => generate::<Incident>(stem, kind, about),
                "oom_stall" => generate::<StallLine<'static>>(stem, kind, about),
                "summary" => generate::<SummaryLine<'static>>(stem, kind, about),
                "doctor" => generate::<crate::commands::doctor::Report>(stem, kind, about),
                "bundle-meta" => {
                    let mut s = generate::<Meta<'static>>(stem, kind, about);
                    bundle_extras(&mut s);
                    s
                }
                _ => unreachable!("every file has a type"),
            };
            (stem, s)
        })
        .collect()
}

/// Writes DIR/<stem>.schema.json for every schema (DIR is created).
pub fn write_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (stem, s) in all() {
        let path = dir.join(format!("{stem}.schema.json"));
        let mut text = serde_json::to_string_pretty(&s)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_is_generated_strict() {
        let all = super::all();
        assert_eq!(all.len(), super::FILES.len());
        for (stem, s) in &all {
            let v = s.as_value();
            assert!(v["required"].as_array().is_some_and(|r| !r.is_empty()), "{stem}");
            assert_eq!(v["additionalProperties"], false, "{stem}");
        }
    }
}
