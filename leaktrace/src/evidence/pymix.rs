//! A CPython suspect's Python stacks in its bundle: the stacks.txt
//! section, mixed Python/native lines for stacks.folded, and meta.json's
//! account of them. Pure code over what the kernel counted and the child
//! named.
use std::collections::HashMap;

use leaktrace_common::python::PyFrame;

use super::{
    pprof::{PFrame, PStack},
    stackdata::folded_frame,
};
use crate::{
    fmt::term,
    host::cpython::{code::PyFunc, detect::Target},
    kernel::pystacks::{PyCounts, PySample},
};

/// What a bundle gets about a CPython suspect.
pub struct PyInput {
    pub target: Target,
    pub samples: Vec<PySample>,
    pub counts: PyCounts,
    pub funcs: HashMap<PyFrame, PyFunc>,
    /// Why frames are unnamed, if the child failed.
    pub error: Option<String>,
}

impl PyInput {
    /// `function (file:line)`; a code object that could not be read is
    /// `<code 0x...>`. Not escaped: callers escape for their file.
    pub fn label(&self, f: &PyFrame) -> String {
        match self.funcs.get(f) {
            Some(p) => format!("{} ({}:{})", p.function, p.file, p.line.unwrap_or(p.first_line)),
            None => format!("<code {:#x}>", f.code),
        }
    }

    fn labels(&self, s: &PySample) -> Vec<String> {
        s.frames.iter().map(|f| self.label(f)).collect()
    }
}

/// The interpreter's own frame-evaluation function, where it runs Python.
fn is_eval(name: &str) -> bool {
    name.starts_with("_PyEval_EvalFrame") || name.starts_with("PyEval_EvalFrame")
}

/// One stack, root first: the native frames down to the interpreter, the
/// Python frames (outermost first), then the native frames the innermost
/// Python frame called (e.g. `bytearray.__init__` ... `memset`). Where the
/// native stack shows no interpreter frame (its unwinding stopped short),
/// the Python frames go above all of it.
pub fn mix(native_leaf_first: &[String], py_leaf_first: &[String]) -> Vec<String> {
    mix_by(native_leaf_first, |n| is_eval(n), py_leaf_first)
}

/// `mix` over any frame type; `eval` tells the interpreter's frames.
fn mix_by<T: Clone>(native_leaf_first: &[T], eval: impl Fn(&T) -> bool, py_leaf_first: &[T]) -> Vec<T> {
    let evals: Vec<usize> = native_leaf_first
        .iter()
        .enumerate()
        .filter(|(_, n)| eval(n))
        .map(|(i, _)| i)
        .collect();
    let (leaf, root) = match (evals.first(), evals.last()) {
        (Some(&inner), Some(&outer)) => (&native_leaf_first[..inner], &native_leaf_first[outer + 1..]),
        _ => (native_leaf_first, &native_leaf_first[..0]),
    };
    root.iter()
        .rev()
        .chain(py_leaf_first.iter().rev())
        .chain(leaf.iter().rev())
        .cloned()
        .collect()
}

/// The same mixed stacks for profile.pb.gz, leaf first: Python frames
/// carry their file and line; native frames their address and mapping as
/// `pprof::from_raw` made them.
pub fn pprof_stacks(
    py: &PyInput,
    fp: &[(u32, u64)],
    by_id: &HashMap<u32, Vec<u64>>,
    raw: &super::stackdata::RawStacks,
) -> Vec<PStack> {
    let (_, native_stacks) = super::pprof::from_raw(raw);
    let mut by_addr: HashMap<u64, PFrame> = HashMap::new();
    for f in native_stacks.into_iter().flat_map(|s| s.frames) {
        by_addr.entry(f.address).or_insert(f);
    }
    let native = |id: u32| -> Vec<PFrame> {
        by_id
            .get(&id)
            .map(|ips| {
                ips.iter()
                    .map(|ip| {
                        by_addr.get(ip).cloned().unwrap_or_else(|| PFrame {
                            function: format!("{ip:#x}"),
                            file: None,
                            line: None,
                            address: *ip,
                            mapping: None,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let python = |f: &PyFrame| match py.funcs.get(f) {
        Some(p) => PFrame {
            function: p.function.clone(),
            file: Some(p.file.clone()),
            line: Some(p.line.unwrap_or(p.first_line)),
            address: 0,
            mapping: None,
        },
        None => PFrame {
            function: format!("<code {:#x}>", f.code),
            file: None,
            line: None,
            address: 0,
            mapping: None,
        },
    };
    let mut out = Vec::new();
    let mut with_py: HashMap<u32, u64> = HashMap::new();
    for s in &py.samples {
        *with_py.entry(s.native_stack_id).or_default() += s.count;
        let pyf: Vec<PFrame> = s.frames.iter().map(python).collect();
        let mut frames = mix_by(
            &native(s.native_stack_id),
            |f| f.address != 0 && is_eval(&f.function),
            &pyf,
        );
        frames.reverse();
        out.push(PStack {
            frames,
            samples: s.count,
        });
    }
    for (id, count) in fp {
        let rest = count.saturating_sub(with_py.get(id).copied().unwrap_or(0));
        if rest > 0 {
            out.push(PStack {
                frames: native(*id),
                samples: rest,
            });
        }
    }
    out.sort_by(|a, b| b.samples.cmp(&a.samples));
    out
}

/// stacks.folded for a CPython suspect: per native stack id, a mixed line
/// for each Python stack sampled with it, and a native-only line for its
/// samples that had none (no Python thread state, or the GIL released).
/// `fp`: (stack id, sampled faults); `by_id`: the native stack of each id.
pub fn folded(
    py: &PyInput,
    fp: &[(u32, u64)],
    by_id: &HashMap<u32, Vec<u64>>,
    name_of: &dyn Fn(u64) -> String,
) -> String {
    let native = |id: u32| -> Vec<String> {
        by_id
            .get(&id)
            .map(|ips| ips.iter().map(|ip| name_of(*ip)).collect())
            .unwrap_or_default()
    };
    let line = |frames: Vec<String>, n: u64| -> String {
        let f: Vec<String> = frames.iter().map(|s| folded_frame(s)).collect();
        format!(
            "{} {n}\n",
            if f.is_empty() {
                "[no frames]".into()
            } else {
                f.join(";")
            }
        )
    };
    let mut out = String::new();
    let mut with_py: HashMap<u32, u64> = HashMap::new();
    for s in &py.samples {
        *with_py.entry(s.native_stack_id).or_default() += s.count;
        out += &line(mix(&native(s.native_stack_id), &py.labels(s)), s.count);
    }
    for (id, count) in fp {
        let rest = count.saturating_sub(with_py.get(id).copied().unwrap_or(0));
        if rest > 0 {
            out += &line(native(*id).into_iter().rev().collect(), rest);
        }
    }
    out
}

/// The stacks.txt section: the functions that took the memory (innermost
/// Python frame), then the top Python stacks with their native leaf.
pub fn text(
    py: &PyInput,
    period: u32,
    page: u64,
    top: usize,
    name_of: &dyn Fn(u64) -> String,
    by_id: &HashMap<u32, Vec<u64>>,
) -> String {
    let t = &py.target;
    let mut s = format!(
        "# Python: CPython {} ({}), frames read in the kernel at each sampled fault\n\
         # (offsets: {}); {} sampled faults had Python frames",
        term(&t.version),
        term(&t.binary),
        t.layout.source,
        py.counts.samples
    );
    if py.counts.samples_without_frames > 0 {
        s += &format!(
            ", {} of them arrived without their frames",
            py.counts.samples_without_frames
        );
    }
    s += ".\n";
    if let Some(e) = &py.error {
        s += &format!("# naming the code objects failed: {}\n", term(e));
    }
    let total: u64 = py.samples.iter().map(|x| x.count).sum::<u64>().max(1);
    let mut by_fn: HashMap<String, u64> = HashMap::new();
    for x in &py.samples {
        if let Some(f) = x.frames.first() {
            *by_fn.entry(py.label(f)).or_default() += x.count;
        }
    }
    let mut fns: Vec<(String, u64)> = by_fn.into_iter().collect();
    fns.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    s += "\n== Python functions that touched the memory (innermost Python frame)\n";
    for (f, n) in fns.iter().take(top) {
        s += &format!(
            "  {n:>8} sampled faults ({:>5.1}%), ~{:.1} MiB  {}\n",
            *n as f64 * 100.0 / total as f64,
            (n * period as u64 * page) as f64 / 1048576.0,
            term(f)
        );
    }
    for (i, x) in py.samples.iter().take(top).enumerate() {
        s += &format!(
            "\n== Python stack {}: {} sampled faults ({:.1}%){}\n",
            i + 1,
            x.count,
            x.count as f64 * 100.0 / total as f64,
            if x.truncated { ", outermost frames cut" } else { "" }
        );
        let native: Vec<String> = by_id
            .get(&x.native_stack_id)
            .map(|ips| ips.iter().map(|ip| name_of(*ip)).collect())
            .unwrap_or_default();
        let leaf_native = native.iter().take_while(|n| !is_eval(n)).take(8);
        for n in leaf_native {
            s += &format!("  [native] {}\n", term(n));
        }
        for f in &x.frames {
            s += &format!("  {}\n", term(&py.label(f)));
        }
    }
    s + "\n"
}

/// meta.json's `python.kernel_frames` object.
pub fn meta(py: &PyInput) -> serde_json::Value {
    serde_json::json!({
        "version": py.target.version,
        "binary": py.target.binary,
        "offsets": py.target.layout.source,
        "samples": py.counts.samples,
        "samples_without_frames": py.counts.samples_without_frames,
        "stacks": py.samples.len(),
        "code_objects_named": py.funcs.len(),
        "error": py.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn python_frames_go_where_the_interpreter_runs() {
        let native = v(&[
            "memset",
            "bytearray_init",
            "_PyEval_EvalFrameDefault",
            "PyEval_EvalCode",
            "_PyEval_EvalFrameDefault",
            "Py_RunMain",
            "main",
        ]);
        let py = v(&["store_chunk (a.py:5)", "handle_request (a.py:9)"]);
        assert_eq!(
            mix(&native, &py).join(";"),
            "main;Py_RunMain;handle_request (a.py:9);store_chunk (a.py:5);bytearray_init;memset"
        );
        // Unwinding stopped before the interpreter: Python frames on top.
        assert_eq!(
            mix(&v(&["memset", "bytearray_init"]), &py).join(";"),
            "handle_request (a.py:9);store_chunk (a.py:5);bytearray_init;memset"
        );
    }

    #[test]
    fn folded_keeps_every_sample_once() {
        let t = Target {
            version: "3.11.2".into(),
            binary: "/usr/bin/python3.11".into(),
            runtime: 0,
            code_type: None,
            layout: crate::host::cpython::layout::for_version(3, 11).unwrap(),
        };
        let f = PyFrame {
            code: 0x10,
            instr: 0x20,
        };
        let mut funcs = HashMap::new();
        funcs.insert(
            f,
            PyFunc {
                function: "leak;er".into(),
                file: "/x.py".into(),
                line: Some(7),
                first_line: 3,
            },
        );
        let py = PyInput {
            target: t,
            samples: vec![PySample {
                native_stack_id: 1,
                frames: vec![f],
                truncated: false,
                count: 6,
            }],
            counts: PyCounts {
                samples: 6,
                samples_without_frames: 0,
            },
            funcs,
            error: None,
        };
        let by_id: HashMap<u32, Vec<u64>> = [(1, vec![1, 2, 3]), (2, vec![4])].into_iter().collect();
        let names = |ip: u64| match ip {
            1 => "memset".to_string(),
            2 => "_PyEval_EvalFrameDefault".into(),
            3 => "main".into(),
            _ => format!("{ip:#x}"),
        };
        let out = folded(&py, &[(1, 10), (2, 5)], &by_id, &names);
        assert_eq!(
            out,
            "main;leak:er (/x.py:7);memset 6\nmain;_PyEval_EvalFrameDefault;memset 4\n0x4 5\n"
        );
        let txt = text(&py, 16, 4096, 5, &names, &by_id);
        assert!(
            txt.contains("leak;er (/x.py:7)") && txt.contains("[native] memset"),
            "{txt}"
        );
    }
}
