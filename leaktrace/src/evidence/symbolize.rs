//! stacks.txt: the sampled fault stacks of a suspect, symbolized with
//! blazesym (ELF symbols and DWARF of the live process).
//!
//! The ELF and DWARF files belong to the traced process, which anyone may
//! have built: a size field can be made huge, and a parser asked to
//! allocate it panics or aborts. So symbolization never runs in the root
//! daemon. It runs in a child (`leaktrace __symbolize`, the same binary)
//! with an empty environment, an address-space limit, a CPU limit, a wall
//! clock timeout, oom_score_adj 1000 and death with its parent; the child
//! gets the addresses on stdin and answers in JSON on stdout, capped.
//! When the child fails, the stacks keep their raw addresses and say why.
use std::{
    collections::HashMap,
    io::{Read, Write},
    os::unix::process::{CommandExt, ExitStatusExt},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use crate::fmt::term;

/// Longest symbol name or file path kept from a binary.
const NAME_CAP: usize = 1024;
/// Most bytes read from the child.
const ANSWER_CAP: u64 = 8 << 20;
/// Most bytes of request the child reads.
const REQUEST_CAP: u64 = 4 << 20;

/// Most stack copies sent to the child for one bundle (16 KiB each, twice
/// that in hex): within `REQUEST_CAP`.
const COPIES_PER_REQUEST: usize = 48;

#[derive(Serialize, Deserialize)]
struct Request {
    pid: u32,
    stacks: Vec<Vec<u64>>,
    /// When present, the child unwinds these instead and answers with one
    /// stack of addresses per copy.
    #[serde(default)]
    copies: Vec<super::unwind::CopyReq>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Frame {
    Sym {
        name: String,
        offset: u64,
        file: Option<String>,
        line: Option<u32>,
    },
    Unknown(String),
}

/// Per stack: its frames, or why the stack could not be symbolized.
type Answer = Vec<Result<Vec<Frame>, String>>;

fn cap(mut s: String) -> String {
    if s.len() > NAME_CAP {
        let mut end = NAME_CAP;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// `leaktrace __symbolize`: the child side. Reads a request on stdin,
/// writes the answer on stdout; exit code 0 if it answered.
pub fn child_main() -> i32 {
    use blazesym::symbolize::{
        source::{Process, Source},
        Input, Reason, Symbolized, Symbolizer,
    };
    let mut raw = Vec::new();
    if std::io::stdin().take(REQUEST_CAP).read_to_end(&mut raw).is_err() {
        return 1;
    }
    let Ok(req) = serde_json::from_slice::<Request>(&raw) else {
        return 1;
    };
    if !req.copies.is_empty() {
        let unwound = super::unwind::unwind_all(req.pid, &req.copies);
        let out = std::io::stdout();
        let mut out = out.lock();
        if serde_json::to_writer(&mut out, &unwound).is_err() || out.flush().is_err() {
            return 1;
        }
        return 0;
    }
    let sym = Symbolizer::new();
    let mut proc_src = Process::new(req.pid.into());
    proc_src.perf_map = false; // read by perfmap.rs, as hostile input
    let src = Source::Process(proc_src);
    let all: Vec<u64> = req.stacks.iter().flatten().copied().collect();
    let (jit, _) = super::perfmap::lookup(req.pid, &all);
    let answer: Answer = req
        .stacks
        .iter()
        .map(|ips| {
            let syms = sym
                .symbolize(&src, Input::AbsAddr(ips.as_slice()))
                .map_err(|e| cap(e.to_string()))?;
            Ok(syms
                .into_iter()
                .zip(ips)
                .map(|(s, ip)| match s {
                    Symbolized::Sym(sy) => Frame::Sym {
                        name: cap(sy.name.to_string()),
                        offset: sy.offset as u64,
                        file: sy
                            .code_info
                            .as_ref()
                            .map(|c| cap(c.file.to_string_lossy().into_owned())),
                        line: sy.code_info.as_ref().and_then(|c| c.line),
                    },
                    // Outside any mapped file (JIT code): the perf map.
                    Symbolized::Unknown(reason) => {
                        match jit.get(ip).filter(|_| reason == Reason::UnknownAddr) {
                            Some((name, offset)) => Frame::Sym {
                                name: name.clone(),
                                offset: *offset,
                                file: None,
                                line: None,
                            },
                            None => Frame::Unknown(reason.to_string()),
                        }
                    }
                })
                .collect())
        })
        .collect();
    let out = std::io::stdout();
    let mut out = out.lock();
    if serde_json::to_writer(&mut out, &answer).is_err() || out.flush().is_err() {
        return 1;
    }
    0
}

/// The frame-pointer stacks of `pid` (with their stack ids), where its
/// stack copies unwind deeper with CFI (in the sandboxed child), replaced
/// by the CFI stacks; counts merged per unique stack. Without copies, or
/// when the child fails, the frame-pointer stacks as they are. Also the
/// best stack per stack id (`unwind::best_by_id`).
pub fn unwind_merge(
    pid: u32,
    fp: Vec<(u32, Vec<u64>, u64)>,
    copies: &[crate::kernel::stacks::RawCopy],
) -> (Vec<(Vec<u64>, u64)>, HashMap<u32, Vec<u64>>) {
    let plain = |fp: Vec<(u32, Vec<u64>, u64)>| {
        let by_id = fp.iter().map(|(id, ips, _)| (*id, ips.clone())).collect();
        (fp.into_iter().map(|(_, ips, n)| (ips, n)).collect(), by_id)
    };
    if copies.is_empty() {
        return plain(fp);
    }
    let copies = &copies[copies.len().saturating_sub(COPIES_PER_REQUEST)..];
    let req = Request {
        pid,
        stacks: Vec::new(),
        copies: copies.iter().map(Into::into).collect(),
    };
    let t0 = Instant::now();
    match in_child::<Vec<Vec<u64>>>(&req) {
        Ok(unwound) if unwound.len() == copies.len() => {
            log::info!(
                "pid {pid}: {} stack copies unwound with CFI in {} ms",
                copies.len(),
                t0.elapsed().as_millis()
            );
            (
                super::unwind::merge(&fp, copies, &unwound),
                super::unwind::best_by_id(&fp, copies, &unwound),
            )
        }
        Ok(_) => plain(fp),
        Err(e) => {
            log::debug!("CFI unwinding for pid {pid}: {e}");
            plain(fp)
        }
    }
}

/// Runs `req` in the `__symbolize` child and decodes its answer.
fn in_child<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, String> {
    let req = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    let buf = run_sandboxed("__symbolize", req, ANSWER_CAP)?;
    serde_json::from_slice(&buf).map_err(|e| format!("the symbolizer's answer was cut or unreadable: {e}"))
}

/// Runs `leaktrace <sub>` (this same binary) sandboxed, under the limits in
/// `limits::SYMBOLIZER_*`: an empty environment, an address-space and a CPU
/// limit, no core, no file writes, a wall-clock timeout, oom_score_adj
/// 1000, death with its parent. Sends `req` on stdin and returns stdout
/// (capped at `cap` bytes). Every child that parses a traced process's
/// binaries goes through here.
pub(crate) fn run_sandboxed(sub: &str, req: Vec<u8>, cap: u64) -> Result<Vec<u8>, String> {
    let mem = crate::limits::SYMBOLIZER_MEMORY.bound();
    let secs = crate::limits::SYMBOLIZER_SECONDS.bound();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(sub)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit,
    // prctl, open, write, close) on values prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for (res, v) in [
                (libc::RLIMIT_AS, mem),
                (libc::RLIMIT_CPU, secs),
                (libc::RLIMIT_CORE, 0),
                (libc::RLIMIT_FSIZE, 0),
            ] {
                let r = libc::rlimit {
                    rlim_cur: v,
                    rlim_max: v,
                };
                if libc::setrlimit(res, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // First to go if memory runs out, not leaktrace's -1000.
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
            if fd >= 0 {
                libc::write(fd, b"1000".as_ptr() as *const libc::c_void, 4);
                libc::close(fd);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {sub}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    // The child reads its whole request before it answers; a reader
    // thread keeps a big answer from filling the pipe while we wait.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&req);
    });
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout).take(cap).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = writer.join();
                crate::limits::SYMBOLIZER_SECONDS.hit();
                return Err(format!("{sub} took more than {secs} s and was killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let _ = writer.join();
    let buf = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(match status.signal() {
            Some(libc::SIGABRT) | Some(libc::SIGSEGV) | Some(libc::SIGBUS) => {
                crate::limits::SYMBOLIZER_MEMORY.hit();
                format!(
                    "{sub} died (signal {}): a binary asked for more than {} MiB or was malformed",
                    status.signal().unwrap_or(0),
                    mem >> 20
                )
            }
            Some(libc::SIGXCPU) | Some(libc::SIGKILL) => {
                crate::limits::SYMBOLIZER_SECONDS.hit();
                format!("{sub} used more than {secs} s of CPU")
            }
            _ => format!("{sub} failed ({status})"),
        });
    }
    Ok(buf)
}

/// Formats stacks.txt. Symbolizes against the live process (in a child);
/// frames that cannot be symbolized are shown as addresses. Every name
/// and path from a binary is escaped (`fmt::term`): this is a text file a
/// person reads in a terminal.
#[cfg(test)]
pub fn render(
    pid: u32,
    comm: &str,
    period: u32,
    page: u64,
    stacks: &[(Vec<u64>, u64)],
    top: usize,
) -> String {
    render_named(pid, comm, period, page, stacks, top).0
}

/// `render`, and the names it found per address (for stacks.folded).
pub fn render_named(
    pid: u32,
    comm: &str,
    period: u32,
    page: u64,
    stacks: &[(Vec<u64>, u64)],
    top: usize,
) -> (String, std::collections::HashMap<u64, String>) {
    let mut names = std::collections::HashMap::new();
    let total: u64 = stacks.iter().map(|s| s.1).sum();
    let mut s = format!(
        "# leaktrace stacks.txt: where pid {pid} ({}) touches its memory\n\
         # user stacks of page faults, sampled in the kernel (1 in {period} faults) since it became a suspect;\n\
         # frames: the kernel's frame-pointer walk, or, where it goes deeper, CFI (.eh_frame) unwinding of a 16 KiB stack copy;\n\
         # symbolized with blazesym from the live process's ELF symbols and DWARF, in a child process.\n\
         # {total} sampled faults in {} distinct stacks. Bytes = samples x {period} x page size ({page} B), an estimate.\n",
        term(comm),
        stacks.len()
    );
    if stacks.is_empty() {
        s += "# no samples: the process took no page faults while it was a suspect\n";
        return (s, names);
    }
    let shown: Vec<Vec<u64>> = stacks.iter().take(top).map(|(ips, _)| ips.clone()).collect();
    let answer = in_child::<Answer>(&Request {
        pid,
        stacks: shown,
        copies: Vec::new(),
    });
    if let Err(e) = &answer {
        s += &format!("# symbolization failed: {}; addresses are raw\n", term(e));
    }
    for (i, (ips, count)) in stacks.iter().take(top).enumerate() {
        let bytes = count * period as u64 * page;
        s += &format!(
            "\n== stack {}: {count} sampled faults ({:.1}%), ~{:.1} MiB touched\n",
            i + 1,
            *count as f64 * 100.0 / total.max(1) as f64,
            bytes as f64 / 1048576.0
        );
        let frames: &[Frame] = match answer.as_ref().map(|a| a.get(i)) {
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => {
                s += &format!("  (symbolization failed: {})\n", term(e));
                &[]
            }
            _ => &[],
        };
        for (j, ip) in ips.iter().enumerate() {
            match frames.get(j) {
                Some(Frame::Sym {
                    name,
                    offset,
                    file,
                    line,
                }) => {
                    let loc = file
                        .as_ref()
                        .map(|f| format!(" ({}:{})", term(f), line.unwrap_or(0)))
                        .unwrap_or_default();
                    s += &format!("  {ip:#018x} {}+{offset:#x}{loc}\n", term(name));
                    names.insert(*ip, name.clone());
                }
                Some(Frame::Unknown(reason)) => s += &format!("  {ip:#018x} ?? ({})\n", term(reason)),
                None => s += &format!("  {ip:#018x} ??\n"),
            }
        }
    }
    (s, names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_capped_on_a_char_boundary() {
        let long = "é".repeat(NAME_CAP);
        let c = cap(long);
        assert!(c.len() <= NAME_CAP + '…'.len_utf8());
        assert!(c.ends_with('…'));
        assert_eq!(cap("main".into()), "main");
    }

    #[test]
    fn a_failed_symbolizer_leaves_raw_addresses() {
        // In the unit-test binary /proc/self/exe is not leaktrace, so the
        // child cannot answer: the stacks must still be written, raw.
        let s = render(
            1,
            "a\x1b]52;c;x\x07",
            16,
            4096,
            &[(vec![0x401000, 0x402000], 3)],
            5,
        );
        assert!(s.contains("0x0000000000401000"), "{s}");
        assert!(s.contains("symbolization failed"), "{s}");
        assert!(!s.contains('\x1b') && !s.contains('\x07'), "escaped: {s}");
    }
}
