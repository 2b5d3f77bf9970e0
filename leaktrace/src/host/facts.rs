//! Host facts that decide how bad an OOM will be: consoles and their speed,
//! printk levels, OOM sysctls, PSI. Parsers and the console estimate are
//! pure functions with unit tests; `read()` gathers the live values.
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Console {
    pub name: String,
    /// Flags column of /proc/consoles, e.g. "-W- (EC  p a)".
    pub flags: String,
    pub enabled: bool,
    pub serial: bool,
    /// Bits per second, for serial consoles.
    pub baud: Option<u32>,
    /// Where the baud rate came from: "termios", "kernel command line",
    /// "kernel default (9600)".
    pub baud_source: Option<String>,
}

/// Lines of /proc/consoles: "ttyS0                -W- (EC  p a)    4:64".
pub fn parse_consoles(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let name = l.split_whitespace().next()?;
            let rest = l[name.len()..].trim();
            // Drop the trailing major:minor.
            let flags = match rest.rsplit_once(char::is_whitespace) {
                Some((f, mm)) if mm.contains(':') => f.trim(),
                _ => rest,
            };
            Some((name.to_string(), flags.to_string()))
        })
        .collect()
}

/// console= arguments of the kernel command line: ("ttyS0", Some(19200)).
pub fn parse_cmdline_consoles(cmdline: &str) -> Vec<(String, Option<u32>)> {
    cmdline
        .split_whitespace()
        .take_while(|a| *a != "--")
        .filter_map(|a| a.strip_prefix("console="))
        .map(|v| {
            let (name, opts) = v.split_once(',').unwrap_or((v, ""));
            let baud = opts
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok();
            (name.to_string(), baud)
        })
        .collect()
}

pub fn is_serial(name: &str) -> bool {
    // UARTs; hypervisor consoles (hvc) and VGA/virtual terminals (tty0) are
    // not limited by a baud rate.
    ["ttyS", "ttyAMA", "ttyUSB", "ttyMSM", "ttySAC", "ttymxc", "ttyPS"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// The output speed of a tty from termios (`stty -F /dev/<name>` does the
/// same). None if it cannot be opened.
pub fn termios_baud(name: &str) -> Option<u32> {
    use std::os::{fd::AsRawFd, unix::fs::OpenOptionsExt};
    // O_NOCTTY: never become our controlling terminal.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/dev/{name}"))
        .ok()?;
    // SAFETY: zeroed termios is a valid out-parameter for tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: f is an open fd; t is a valid termios to fill.
    if unsafe { libc::tcgetattr(f.as_raw_fd(), &mut t) } != 0 {
        return None;
    }
    // SAFETY: t was filled by tcgetattr.
    speed_to_baud(unsafe { libc::cfgetospeed(&t) })
}

fn speed_to_baud(s: libc::speed_t) -> Option<u32> {
    Some(match s {
        libc::B1200 => 1200,
        libc::B2400 => 2400,
        libc::B4800 => 4800,
        libc::B9600 => 9600,
        libc::B19200 => 19200,
        libc::B38400 => 38400,
        libc::B57600 => 57600,
        libc::B115200 => 115200,
        libc::B230400 => 230400,
        libc::B460800 => 460800,
        libc::B921600 => 921600,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Printk {
    pub console_loglevel: u8,
    pub default_message_loglevel: u8,
}

/// /proc/sys/kernel/printk: "4\t4\t1\t7".
pub fn parse_printk(text: &str) -> Option<Printk> {
    let mut it = text.split_whitespace().map(|v| v.parse::<u8>().ok());
    Some(Printk {
        console_loglevel: it.next()??,
        default_message_loglevel: it.next()??,
    })
}

/// How long printing one OOM report to a console takes, by line class.
/// Levels are those the kernel prints them at: the header and stack at
/// KERN_WARNING/default (4), memory state and the task dump at KERN_INFO
/// (6), the "Killed process" line at KERN_ERR (3). A line reaches the
/// console when its level is below console_loglevel. Sizes are typical
/// lengths seen in real reports (tests/fixtures/oom).
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema, PartialEq)]
pub struct Estimate {
    pub lines: u64,
    pub bytes: u64,
    pub seconds: f64,
}

pub fn estimate_report(baud: u32, console_loglevel: u8, dump_tasks: bool, ntasks: u64) -> Estimate {
    // (level, lines, bytes per line)
    let classes: [(u8, u64, u64); 6] = [
        (4, 1, 110),                                       // "<comm> invoked oom-killer: ..."
        (4, 26, 50),                                       // CPU/Comm line and call trace
        (6, 45, 70),                                       // Mem-Info / memcg usage and stats
        (6, if dump_tasks { ntasks + 2 } else { 0 }, 105), // task dump header + one row per task
        (6, 1, 220),                                       // oom-kill:constraint=...
        (3, 1, 200),                                       // "...: Killed process ..."
    ];
    let (mut lines, mut bytes) = (0, 0);
    for (level, n, len) in classes {
        if level < console_loglevel {
            lines += n;
            bytes += n * (len + 1);
        }
    }
    // 8N1: 10 bits on the wire per byte.
    let seconds = if baud == 0 {
        0.0
    } else {
        bytes as f64 * 10.0 / baud as f64
    };
    Estimate {
        lines,
        bytes,
        seconds,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub consoles: Vec<Console>,
    pub printk: Option<Printk>,
    pub oom_dump_tasks: Option<i64>,
    pub panic_on_oom: Option<i64>,
    pub oom_kill_allocating_task: Option<i64>,
    pub overcommit_memory: Option<i64>,
    pub overcommit_ratio: Option<i64>,
    pub mem_total_kb: Option<u64>,
    pub swap_total_kb: Option<u64>,
    pub tasks: u64,
    pub psi_memory: Option<String>,
}

pub fn sysctl(path: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn meminfo_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The kernel's count of OOM kills since boot (/proc/vmstat `oom_kill`,
/// host and memcg OOMs alike; 4.13+). With the boot id it tells how many
/// kills happened while leaktrace was not running.
pub fn oom_kills_since_boot() -> Option<u64> {
    let (b, _) = super::procfs::read_capped(std::path::Path::new("/proc/vmstat"), 64 << 10).ok()?;
    parse_vmstat(&String::from_utf8_lossy(&b), "oom_kill")
}

fn parse_vmstat(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
#[test]
fn vmstat_oom_kill_is_read() {
    assert_eq!(parse_vmstat("nr_free_pages 5\noom_kill 12\n", "oom_kill"), Some(12));
    assert_eq!(parse_vmstat("oom_kill_x 3\n", "oom_kill"), None);
    assert!(oom_kills_since_boot().is_some(), "this kernel has oom_kill in /proc/vmstat");
}

/// /proc and /sys are mounted: every fact and every check comes from
/// them. In a bare chroot or a container without them leaktrace would
/// otherwise print "unknown" everywhere and call that healthy.
pub fn require_proc_and_sys() -> anyhow::Result<()> {
    for (what, probe, how) in [
        ("/proc", "/proc/self/stat", "mount -t proc proc /proc"),
        ("/sys", "/sys/kernel", "mount -t sysfs sysfs /sys"),
    ] {
        if !std::path::Path::new(probe).exists() {
            anyhow::bail!(
                "{what} is not mounted here (a chroot or a container without it?): leaktrace reads the \
                 kernel's state there; mount it ({how}) or run on the host"
            );
        }
    }
    Ok(())
}

/// Processes on the host, for the console-risk estimate. Listing /proc
/// costs about 1 ms per 1,000 processes, and every OOM incident asks: in
/// an OOM storm on a host with 10,000 processes that was most of
/// leaktrace's CPU (docs/performance.md). Counted at most every 10 s.
fn tasks_now() -> u64 {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    static LAST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);
    let Ok(mut last) = LAST.lock() else {
        return super::procfs::pids().map(|p| p.len()).unwrap_or(0) as u64;
    };
    if let Some((at, n)) = *last {
        if at.elapsed() < Duration::from_secs(10) {
            return n;
        }
    }
    let n = super::procfs::pids().map(|p| p.len()).unwrap_or(0) as u64;
    *last = Some((Instant::now(), n));
    n
}

pub fn read() -> Facts {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let from_cmdline = parse_cmdline_consoles(&cmdline);
    let consoles = parse_consoles(&std::fs::read_to_string("/proc/consoles").unwrap_or_default())
        .into_iter()
        .map(|(name, flags)| {
            let serial = is_serial(&name);
            let enabled = flags.contains('E');
            let (baud, src) = if !serial {
                (None, None)
            } else if let Some(b) = termios_baud(&name) {
                (Some(b), Some("termios".to_string()))
            } else if let Some(b) = from_cmdline
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, b)| *b)
            {
                (Some(b), Some("kernel command line".to_string()))
            } else {
                (Some(9600), Some("kernel default (9600)".to_string()))
            };
            Console {
                name,
                flags,
                enabled,
                serial,
                baud,
                baud_source: src,
            }
        })
        .collect();
    Facts {
        consoles,
        printk: std::fs::read_to_string("/proc/sys/kernel/printk")
            .ok()
            .and_then(|t| parse_printk(&t)),
        oom_dump_tasks: sysctl("vm/oom_dump_tasks"),
        panic_on_oom: sysctl("vm/panic_on_oom"),
        oom_kill_allocating_task: sysctl("vm/oom_kill_allocating_task"),
        overcommit_memory: sysctl("vm/overcommit_memory"),
        overcommit_ratio: sysctl("vm/overcommit_ratio"),
        mem_total_kb: meminfo_kb("MemTotal"),
        swap_total_kb: meminfo_kb("SwapTotal"),
        tasks: tasks_now(),
        psi_memory: std::fs::read_to_string("/proc/pressure/memory").ok(),
    }
}

/// PSI memory totals (µs): (some, full).
pub fn parse_psi_totals(text: &str) -> Option<(u64, u64)> {
    let get = |kind: &str| -> Option<u64> {
        let l = text.lines().find(|l| l.starts_with(kind))?;
        l.split_whitespace()
            .find_map(|f| f.strip_prefix("total=")?.parse().ok())
    };
    Some((get("some")?, get("full")?))
}

/// PSI memory "full avg10" in percent.
pub fn parse_psi_full_avg10(text: &str) -> Option<f64> {
    let l = text.lines().find(|l| l.starts_with("full"))?;
    l.split_whitespace()
        .find_map(|f| f.strip_prefix("avg10=")?.parse().ok())
}

pub fn psi_full_avg10() -> Option<f64> {
    parse_psi_full_avg10(&std::fs::read_to_string("/proc/pressure/memory").ok()?)
}

pub fn psi_totals() -> Option<(u64, u64)> {
    parse_psi_totals(&std::fs::read_to_string("/proc/pressure/memory").ok()?)
}

/// The running kernel's release (uname -r).
pub fn kernel_release() -> Option<String> {
    let (b, _) = super::procfs::read_capped(std::path::Path::new("/proc/sys/kernel/osrelease"), 256).ok()?;
    Some(String::from_utf8_lossy(&b).trim().to_string())
}

/// Advice to turn off the task dump only when it lists at least this many.
pub const DUMP_ADVICE_TASKS: u64 = 200;

/// The remedies the kernel offers for a slow OOM report, with the host's
/// current values. Never applied by leaktrace: these are commands to run.
pub fn recommendations(f: &Facts) -> Vec<String> {
    let mut r = Vec::new();
    let level = f.printk.map(|p| p.console_loglevel).unwrap_or(0);
    let slow: Vec<&Console> = f.consoles.iter().filter(|c| c.enabled && c.serial).collect();
    // A dump of a few tasks costs nothing worth the advice.
    if f.oom_dump_tasks == Some(1) && f.tasks >= DUMP_ADVICE_TASKS {
        r.push(format!(
            "sysctl -w vm.oom_dump_tasks=0   (now 1): the report stops listing all {} tasks; you lose the kernel's \
             task table, but leaktrace's incident keeps its own view of the processes",
            f.tasks
        ));
    }
    if level > 4 && !slow.is_empty() {
        r.push(format!(
            "dmesg -n 4   (console_loglevel now {level}): OOM reports stay in the kernel log and off the console; \
             only the 'Killed process' line (KERN_ERR) is still printed there"
        ));
    }
    for c in slow {
        r.push(format!(
            "console {}: {} baud ({}); a faster rate (console={},115200n8) or dropping this console from the kernel \
             command line shortens every report; kernels with threaded (nbcon) console printing do not print in \
             the OOM path",
            c.name,
            c.baud.unwrap_or(0),
            c.baud_source.as_deref().unwrap_or("unknown"),
            c.name
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consoles_and_cmdline() {
        let c = parse_consoles(
            "ttyS0                -W- (EC  p a)    4:64\ntty0                 -WU (E  p  )    4:7\n",
        );
        assert_eq!(c[0], ("ttyS0".into(), "-W- (EC  p a)".into()));
        assert_eq!(c[1].0, "tty0");
        let k = parse_cmdline_consoles(
            "quiet console=tty0 console=ttyS1,19200n8 root=/dev/sda -- console=ttyS9,1",
        );
        assert_eq!(k, vec![("tty0".into(), None), ("ttyS1".into(), Some(19200))]);
        assert!(is_serial("ttyS1") && !is_serial("tty0") && !is_serial("hvc0"));
        assert_eq!(
            parse_printk("4\t4\t1\t7\n"),
            Some(Printk {
                console_loglevel: 4,
                default_message_loglevel: 4
            })
        );
        assert_eq!(parse_psi_totals("some avg10=0.00 avg60=0.00 avg300=0.00 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=45\n"), Some((123, 45)));
    }

    #[test]
    fn psi_full_avg10() {
        let t = "some avg10=1.50 avg60=0.00 avg300=0.00 total=123\nfull avg10=12.25 avg60=0.00 avg300=0.00 total=45\n";
        assert_eq!(parse_psi_full_avg10(t), Some(12.25));
        assert_eq!(parse_psi_full_avg10("some avg10=1.0 total=1\n"), None);
    }

    /// Seed 004: console=ttyS1,19200 and a busy host.
    #[test]
    fn slow_serial_with_many_tasks_takes_seconds() {
        let e = estimate_report(19200, 8, true, 3000);
        assert!(e.seconds > 60.0, "{e:?}");
        assert!(e.lines > 3000);
        // The task dump is most of it: without it, well under the minute.
        let no_dump = estimate_report(19200, 8, false, 3000);
        assert!(no_dump.seconds < 5.0 && no_dump.seconds > 0.5, "{no_dump:?}");
        // At the default console_loglevel 4 only the KERN_ERR line goes out.
        let quiet = estimate_report(19200, 4, true, 3000);
        assert_eq!(quiet.lines, 1);
        assert!(quiet.seconds < 0.2, "{quiet:?}");
        // Level 5..6: header and stack, not the task dump.
        let mid = estimate_report(19200, 5, true, 3000);
        assert_eq!(mid.lines, 28);
    }

    #[test]
    fn recommendations_name_current_values() {
        let f = Facts {
            consoles: vec![Console {
                name: "ttyS1".into(),
                flags: "-W- (EC p a)".into(),
                enabled: true,
                serial: true,
                baud: Some(19200),
                baud_source: Some("kernel command line".into()),
            }],
            printk: Some(Printk {
                console_loglevel: 7,
                default_message_loglevel: 4,
            }),
            oom_dump_tasks: Some(1),
            panic_on_oom: Some(0),
            oom_kill_allocating_task: Some(0),
            overcommit_memory: Some(0),
            overcommit_ratio: Some(50),
            mem_total_kb: Some(1 << 20),
            swap_total_kb: Some(0),
            tasks: 3000,
            psi_memory: None,
        };
        let r = recommendations(&f);
        assert!(
            r.iter()
                .any(|s| s.starts_with("sysctl -w vm.oom_dump_tasks=0   (now 1)")),
            "{r:?}"
        );
        assert!(
            r.iter()
                .any(|s| s.contains("dmesg -n 4   (console_loglevel now 7)")),
            "{r:?}"
        );
        assert!(r.iter().any(|s| s.contains("ttyS1: 19200 baud")), "{r:?}");
        // No serial console: nothing about consoles.
        let mut quiet = f.clone();
        quiet.consoles.clear();
        quiet.oom_dump_tasks = Some(0);
        assert!(recommendations(&quiet).is_empty());
    }
}
