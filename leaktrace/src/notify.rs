//! The service manager's side channels, without libsystemd: the
//! sd_notify datagram protocol (READY=1, STATUS=, WATCHDOG=1, STOPPING=1)
//! and the sd-daemon priority prefixes for stderr lines that go to the
//! journal.
//!
//! Both are read from the environment once, at the start of `main` while
//! leaktrace still has one thread, and the notify variables are removed
//! then so that the children leaktrace starts (--exec-on-trigger, the
//! symbolizer) do not inherit the socket (systemd would ignore them with
//! NotifyAccess=main anyway).
//!
//! Sending never blocks: the socket is non-blocking, and a datagram the
//! manager cannot take now is dropped and counted (`dropped()`); the next
//! watchdog ping is at most half a watchdog period away.
use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::{Duration, Instant},
};

/// Where NOTIFY_SOCKET points, and the watchdog period if one was asked
/// for this process.
struct Env {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    journal: bool,
}

static ENV: OnceLock<Env> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static FAILED_ONCE: std::sync::Once = std::sync::Once::new();

/// Reads NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID and JOURNAL_STREAM,
/// and removes the first three from the environment. Call once, first
/// thing in `main`, before any thread exists.
pub fn init_from_env() {
    let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|s| {
        let addr = socket_addr(s.as_encoded_bytes())?;
        let sock = UnixDatagram::unbound().ok()?;
        sock.set_nonblocking(true).ok()?;
        Some((sock, addr))
    });
    let watchdog = watchdog_period(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );
    let journal = std::env::var("JOURNAL_STREAM")
        .ok()
        .is_some_and(|v| stderr_is_journal(&v));
    for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(v);
    }
    let _ = ENV.set(Env {
        socket,
        watchdog,
        journal,
    });
}

/// NOTIFY_SOCKET's value as an address: a path, or an abstract name when
/// it starts with '@'. Anything else (vsock:, empty) is not supported.
fn socket_addr(v: &[u8]) -> Option<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    match v.first()? {
        b'@' => SocketAddr::from_abstract_name(&v[1..]).ok(),
        b'/' => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(v)).ok()
        }
        _ => None,
    }
}

/// The watchdog period for this process: WATCHDOG_USEC when it is a
/// positive number and WATCHDOG_PID is absent or names `pid`.
fn watchdog_period(usec: Option<&str>, wd_pid: Option<&str>, pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(p) = wd_pid {
        if p.trim().parse::<u32>().ok() != Some(pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected; it only
/// counts when stderr is still that stream (a child with stderr redirected
/// inherits the variable but not the journal).
fn stderr_is_journal(v: &str) -> bool {
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat on fd 2 into a zeroed stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev == dev && st.st_ino == ino
}

/// True when stderr goes to the journal: log lines get `<N>` prefixes.
pub fn journal() -> bool {
    ENV.get().is_some_and(|e| e.journal)
}

/// Sends one notify message (several `KEY=value` lines); a no-op without
/// NOTIFY_SOCKET.
pub fn send(msg: &str) {
    let Some((sock, addr)) = ENV.get().and_then(|e| e.socket.as_ref()) else {
        return;
    };
    if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        FAILED_ONCE
            .call_once(|| log::warn!("cannot notify the service manager ({e}); counting further failures"));
    }
}

/// `STATUS=<text>`, one line (newlines would end the field).
pub fn status(text: &str) {
    send(&format!("STATUS={}", text.replace('\n', " ")));
}

/// Notify messages that could not be sent.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Watchdog pings for the sampling loop: `tick()` sends WATCHDOG=1 when
/// half the period has passed since the last one. Only the sampling
/// thread calls it, so a sampler that hangs stops the pings and systemd
/// restarts leaktrace after WatchdogSec.
pub struct Watchdog {
    every: Duration,
    last: Option<Instant>,
}

impl Watchdog {
    /// None when no watchdog was asked for (or no socket to ping).
    pub fn from_env() -> Option<Self> {
        let e = ENV.get()?;
        e.socket.as_ref()?;
        Some(Self {
            every: e.watchdog? / 2,
            last: None,
        })
    }

    /// How often it pings.
    pub fn every(&self) -> Duration {
        self.every
    }

    pub fn tick(&mut self) {
        let now = Instant::now();
        if self.last.is_none_or(|l| now.duration_since(l) >= self.every) {
            self.last = Some(now);
            send("WATCHDOG=1");
        }
    }
}

/// The sd-daemon prefix for a log level (sd-daemon.h: SD_ERR 3,
/// SD_WARNING 4, SD_INFO 6, SD_DEBUG 7).
pub fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// A log record as journald reads it from a stream: every line carries
/// the prefix, since journald makes one entry per line and a line without
/// one gets the stream's default priority (info).
pub fn journal_lines(level: log::Level, msg: &str) -> String {
    let p = priority(level);
    let mut out = String::with_capacity(msg.len() + 4);
    for line in msg.split('\n') {
        out.push('<');
        out.push(char::from(b'0' + p));
        out.push('>');
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_per_level() {
        assert_eq!(journal_lines(log::Level::Error, "boom"), "<3>boom\n");
        assert_eq!(journal_lines(log::Level::Warn, "careful"), "<4>careful\n");
        assert_eq!(journal_lines(log::Level::Info, "hook live"), "<6>hook live\n");
        assert_eq!(journal_lines(log::Level::Debug, "x"), "<7>x\n");
        assert_eq!(journal_lines(log::Level::Trace, "x"), "<7>x\n");
    }

    #[test]
    fn every_line_of_a_record_is_prefixed() {
        assert_eq!(
            journal_lines(log::Level::Warn, "first\nsecond"),
            "<4>first\n<4>second\n"
        );
    }

    #[test]
    fn watchdog_only_for_this_pid() {
        let d = Some(Duration::from_secs(2));
        assert_eq!(watchdog_period(Some("2000000"), None, 42), d);
        assert_eq!(watchdog_period(Some("2000000"), Some("42"), 42), d);
        assert_eq!(watchdog_period(Some("2000000"), Some("43"), 42), None);
        assert_eq!(watchdog_period(Some("0"), None, 42), None);
        assert_eq!(watchdog_period(Some("x"), None, 42), None);
        assert_eq!(watchdog_period(None, Some("42"), 42), None);
    }

    #[test]
    fn notify_socket_addresses() {
        use std::os::linux::net::SocketAddrExt;
        let a = socket_addr(b"@leaktrace-test").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"leaktrace-test"[..]));
        let p = socket_addr(b"/run/systemd/notify").unwrap();
        assert_eq!(p.as_pathname(), Some(std::path::Path::new("/run/systemd/notify")));
        assert!(socket_addr(b"vsock:2:1").is_none());
        assert!(socket_addr(b"").is_none());
    }

    #[test]
    fn journal_stream_must_match_stderr() {
        assert!(!stderr_is_journal("garbage"));
        assert!(!stderr_is_journal("1:"));
        // SAFETY: fstat on fd 2 into a zeroed stat buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(2, &mut st) } == 0 {
            assert!(stderr_is_journal(&format!("{}:{}", st.st_dev, st.st_ino)));
            assert!(!stderr_is_journal(&format!("{}:{}", st.st_dev, st.st_ino + 1)));
        }
    }
}
