//! While the live view owns the terminal, a log line written to stderr
//! would land in the middle of the screen and corrupt it. stderr is
//! pointed at a pipe instead; its lines are kept (bounded, counted) and
//! shown in the header, and written to the real stderr when the view
//! ends, so no warning is lost.
use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Read},
    os::fd::{FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicI32, Ordering},
        Arc, Mutex,
    },
};

/// The real stderr while captured (-1 when not), for the panic hook.
static SAVED: AtomicI32 = AtomicI32::new(-1);

/// Points fd 2 back at the real stderr (from the panic hook: the panic
/// message must reach the user).
pub fn give_back() {
    let fd = SAVED.swap(-1, Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: `fd` is the saved stderr, open until Capture drops.
        unsafe { libc::dup2(fd, 2) };
    }
}

/// Log lines kept while the view runs; older ones are counted.
pub const MAX_LINES: usize = 200;
/// Bytes kept of one line.
const MAX_LINE: usize = 1024;

#[derive(Default)]
pub struct Kept {
    pub lines: VecDeque<String>,
    pub total: u64,
}

pub struct Capture {
    saved: Option<OwnedFd>,
    pub kept: Arc<Mutex<Kept>>,
}

impl Capture {
    /// Points fd 2 at a pipe. On failure stderr stays as it was.
    pub fn start() -> Self {
        let kept = Arc::new(Mutex::new(Kept::default()));
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Self { saved: None, kept };
        }
        // SAFETY: both descriptors were just returned by pipe2 and are ours.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: dup of fd 2, which is open for the process's lifetime.
        let saved = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
        if saved < 0 {
            return Self { saved: None, kept };
        }
        // SAFETY: `saved` was just returned by fcntl and is ours.
        let saved = unsafe { OwnedFd::from_raw_fd(saved) };
        use std::os::fd::AsRawFd;
        // SAFETY: replaces fd 2 with the pipe's write end; `wr` stays
        // valid for the call.
        if unsafe { libc::dup2(wr.as_raw_fd(), 2) } < 0 {
            return Self { saved: None, kept };
        }
        drop(wr);
        SAVED.store(saved.as_raw_fd(), Ordering::SeqCst);
        let k = kept.clone();
        let _ = std::thread::Builder::new()
            .name("lt-tui-stderr".into())
            .spawn(move || read_lines(std::fs::File::from(rd), &k));
        Self {
            saved: Some(saved),
            kept,
        }
    }

    /// Gives fd 2 back and writes what was kept to it.
    pub fn stop(&mut self) {
        let Some(_saved) = self.saved.take() else { return };
        // Puts the original stderr back on fd 2; the pipe's write end
        // closes, and the reader sees EOF.
        give_back();
        // The reader may still hold the last lines: give it a moment.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let k = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = k.total - k.lines.len() as u64;
        if dropped > 0 {
            eprintln!("({dropped} earlier log lines were not kept)");
        }
        for l in &k.lines {
            eprintln!("{l}");
        }
    }
}

fn read_lines(f: std::fs::File, kept: &Mutex<Kept>) {
    let mut r = BufReader::new(f);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // A line longer than MAX_LINE comes in pieces: bounded either way.
        match r.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = strip_sgr(&String::from_utf8_lossy(&buf)).trim_end().to_string();
                push(kept, line);
            }
        }
    }
}

/// The logger's own colours (ESC [ ... m) out; any other control is
/// escaped later, when drawn.
fn strip_sgr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\u{1b}' && it.peek() == Some(&'[') {
            let mut seq = String::from("\u{1b}[");
            it.next();
            while let Some(&d) = it.peek() {
                if d.is_ascii_digit() || d == ';' {
                    seq.push(d);
                    it.next();
                } else {
                    break;
                }
            }
            if it.peek() == Some(&'m') {
                it.next();
            } else {
                out.push_str(&seq);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn push(kept: &Mutex<Kept>, line: String) {
    let mut k = kept.lock().unwrap_or_else(|e| e.into_inner());
    k.total += 1;
    if k.lines.len() == MAX_LINES {
        k.lines.pop_front();
    }
    k.lines.push_back(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_go_other_escapes_stay() {
        assert_eq!(strip_sgr("\u{1b}[90m[\u{1b}[0m\u{1b}[33mWARN x"), "[WARN x");
        assert_eq!(strip_sgr("a\u{1b}[2Jb"), "a\u{1b}[2Jb");
    }

    #[test]
    fn kept_lines_are_bounded_and_counted() {
        let k = Mutex::new(Kept::default());
        for i in 0..MAX_LINES + 3 {
            push(&k, i.to_string());
        }
        let k = k.lock().unwrap();
        assert_eq!((k.lines.len(), k.total), (MAX_LINES, MAX_LINES as u64 + 3));
        assert_eq!(k.lines[0], "3");
    }
}
