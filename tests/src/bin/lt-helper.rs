//! Test and benchmark workloads with known memory behaviour.
//!
//!   lt-helper grow  <mib_per_sec> <grow_secs> <hold_secs>
//!   lt-helper step  <mib> <delay_secs> <hold_secs>
//!   lt-helper churn <mib> <period_ms> <secs> [wait]   (maps, touches and unmaps <mib>
//!            in a loop for <secs>, and at least 3 cycles; `wait` prints `waiting`
//!            and starts at a line on stdin)
//!   lt-helper forkpool <children> <mib_each> <hold_secs> [delay_secs]
//!   lt-helper cowpool <children> <mib> <mib_per_sec> <secs>   (the parent touches
//!            <mib> of anonymous memory and forks the children; each child rewrites
//!            the pages it inherited, 1 MiB at a time at <mib_per_sec> from the start
//!            of the mapping, so the kernel copies them (copy-on-write): RSS stays
//!            flat, USS grows. They copy for <secs> (or until all is copied), then
//!            hold what they have; they die with the parent. Prints
//!            `children PIDS` and `ready` when all run)
//!   lt-helper leak <mib_per_sec> <secs>   (grows through `leak_into_cache`, a
//!            distinctively named function, for stack symbolization tests)
//!   lt-helper argv-dump <file> [args...]   (writes its arguments as JSON)
//!   lt-helper env-dump <file>   (writes its environment as a JSON object)
//!   lt-helper pagecache <file> <mib> <secs>   (writes the file once, then reads it
//!            in a loop: in a memcg smaller than the file this forces memcg reclaim)
//!   lt-helper faults <secs> <mib_per_iter> [byte|page] [wait]   (benchmark: prints
//!            pages/s; `page` writes every byte of each page instead of one byte;
//!            `wait` prints `ready` and waits for a line on stdin before starting)
//!   lt-helper idle <n> <secs>   (forks n children that sleep; prints `ready` when all
//!            exist; they die with the parent)
//!   lt-helper files <dir> <n>   (creates n empty files in dir, prints `done`, exits)
//!   lt-helper forkstorm <per_sec> <secs>   (forks that many children per second, each
//!            exits at once; prints `ready` first, then `forked N in S s` at the end)
//!
//!   lt-helper --comm <hex> <mode> ...   (first renames itself with prctl(PR_SET_NAME)
//!            to these bytes, e.g. 1b5d303bff07 for ESC ] 0 ; 0xff BEL, then runs <mode>)
//!
//! Each prints `ready` on stdout when its memory is in place (forkpool:
//! when every child has touched its memory) and then holds.
use std::{
    io::Write,
    time::{Duration, Instant},
};

const MIB: usize = 1 << 20;

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Anonymous private mapping; never freed unless `unmap` is called.
fn map(bytes: usize) -> *mut u8 {
    // SAFETY: anonymous mapping with no address hint; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "mmap {bytes} failed");
    p as *mut u8
}

fn unmap(p: *mut u8, bytes: usize) {
    // SAFETY: p/bytes come from a successful `map` call.
    unsafe { libc::munmap(p as *mut libc::c_void, bytes) };
}

/// The churn loop's minimum number of alloc/free cycles.
const CHURN_MIN_CYCLES: u32 = 3;

/// Writes one byte per page so that every page becomes resident.
fn touch(p: *mut u8, bytes: usize) {
    let ps = page();
    let mut off = 0;
    while off < bytes {
        // SAFETY: off < bytes, inside the mapping.
        unsafe { std::ptr::write_volatile(p.add(off), 1) };
        off += ps;
    }
}

/// The leaking function the evidence tests look for in stacks.txt: it maps
/// a chunk and touches every page itself, so the faulting instruction is in
/// this function.
#[inline(never)]
#[no_mangle]
pub fn leak_into_cache(cache: &mut Vec<(usize, usize)>, bytes: usize) {
    let p = map(bytes);
    let ps = page();
    let mut off = 0;
    while off < bytes {
        // A plain store in this function's own frame (write_volatile is a
        // call in debug builds). The pointer escapes into `cache`, so the
        // store cannot be optimized away.
        // SAFETY: off < bytes, inside the mapping just created.
        unsafe { *p.wrapping_add(off) = 0x5a };
        off += ps;
    }
    cache.push((p as usize, bytes));
}

fn ready() {
    let mut o = std::io::stdout();
    let _ = writeln!(o, "ready");
    let _ = o.flush();
}

fn sleep_s(s: f64) {
    std::thread::sleep(Duration::from_secs_f64(s));
}

fn arg(args: &[String], i: usize) -> f64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: see the top of tests/src/bin/lt-helper.rs");
        std::process::exit(2)
    })
}

/// Bytes from hex ("1b5d" -> [0x1b, 0x5d]).
fn unhex(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// `cowpool`: see the top of this file.
fn cowpool(args: &[String]) {
    let (n, mib, rate, secs) = (
        arg(args, 2) as usize,
        arg(args, 3) as usize,
        arg(args, 4),
        arg(args, 5),
    );
    let bytes = mib * MIB;
    let mem = map(bytes);
    touch(mem, bytes);
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid 2-element array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let mut kids = Vec::new();
    for _ in 0..n {
        // SAFETY: the child only writes to its inherited mapping, sleeps, exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: prctl with integer arguments only (die with the parent).
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
            // SAFETY: writing one byte from a valid buffer to the pipe.
            unsafe { libc::write(fds[1], b"x".as_ptr() as *const libc::c_void, 1) };
            let start = Instant::now();
            // MiB k is copied at start + k / rate: the true rate is exact.
            for k in 0..mib.min((rate * secs) as usize) {
                let due = start + Duration::from_secs_f64(k as f64 / rate);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                // A write to a page shared with the parent makes the kernel
                // copy it for this child.
                // SAFETY: the chunk is inside the inherited mapping.
                touch(unsafe { mem.add(k * MIB) }, MIB);
            }
            loop {
                // SAFETY: pause has no preconditions (SIGKILL ends it).
                unsafe { libc::pause() };
            }
        }
        kids.push(pid);
    }
    let mut buf = [0u8; 1];
    for _ in 0..n {
        // SAFETY: reading one byte into a valid buffer.
        unsafe { libc::read(fds[0], buf.as_mut_ptr() as *mut libc::c_void, 1) };
    }
    let mut o = std::io::stdout();
    let list: Vec<String> = kids.iter().map(|k| k.to_string()).collect();
    let _ = writeln!(o, "children {}", list.join(" "));
    ready();
    for k in kids {
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(k, &mut st, 0) };
    }
    unmap(mem, bytes);
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--comm") {
        let mut name = unhex(args.get(2).expect("--comm HEX"));
        name.truncate(15);
        name.push(0);
        // SAFETY: prctl with a NUL-terminated buffer of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
        args.drain(1..3);
    }
    match args.get(1).map(String::as_str) {
        Some("grow") => {
            // Touch `rate` MiB per second in 1 MiB chunks on a fixed schedule,
            // so the true rate is exact regardless of scheduling jitter.
            let (rate, secs, hold) = (arg(&args, 2), arg(&args, 3), arg(&args, 4));
            let total = (rate * secs) as usize;
            let base = map(total.max(1) * MIB);
            let t0 = Instant::now();
            for i in 0..total {
                let due = Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
                // SAFETY: chunk i lies inside the mapping of `total` MiB.
                touch(unsafe { base.add(i * MIB) }, MIB);
            }
            ready();
            sleep_s(hold);
        }
        Some("step") => {
            let (mib, delay, hold) = (arg(&args, 2), arg(&args, 3), arg(&args, 4));
            sleep_s(delay);
            let bytes = mib as usize * MIB;
            touch(map(bytes), bytes);
            ready();
            sleep_s(hold);
        }
        Some("churn") => {
            let (mib, period_ms, secs) = (arg(&args, 2), arg(&args, 3), arg(&args, 4));
            let bytes = mib as usize * MIB;
            let half = period_ms / 2000.0;
            if args.get(5).map(String::as_str) == Some("wait") {
                println!("waiting");
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
            }
            let t0 = Instant::now();
            ready();
            // At least CHURN_MIN_CYCLES cycles, however slowly the host
            // runs us (a starved emulated guest once ran one cycle in 14 s).
            let mut cycles = 0;
            while t0.elapsed().as_secs_f64() < secs || cycles < CHURN_MIN_CYCLES {
                let p = map(bytes);
                touch(p, bytes);
                sleep_s(half);
                unmap(p, bytes);
                sleep_s(half);
                cycles += 1;
            }
            eprintln!("churn: {cycles} cycles in {:.1} s", t0.elapsed().as_secs_f64());
        }
        Some("forkpool") => {
            let (n, mib, hold) = (arg(&args, 2) as usize, arg(&args, 3), arg(&args, 4));
            // Optional: the children wait this long before touching, so
            // that all of them change at about the same moment.
            let delay = if args.len() > 5 { arg(&args, 5) } else { 0.0 };
            let mut fds = [0i32; 2];
            // SAFETY: fds is a valid 2-element array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let mut kids = Vec::new();
            for _ in 0..n {
                // SAFETY: the child only touches memory, writes a byte, sleeps, exits.
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0, "fork failed");
                if pid == 0 {
                    // Die with the parent: a test that kills the pool (or
                    // fails) must not leave the children behind.
                    // SAFETY: prctl with integer arguments only.
                    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
                    let bytes = mib as usize * MIB;
                    sleep_s(delay);
                    touch(map(bytes), bytes);
                    // SAFETY: writing one byte from a valid buffer to the pipe.
                    unsafe { libc::write(fds[1], b"x".as_ptr() as *const libc::c_void, 1) };
                    sleep_s(hold);
                    // SAFETY: leave without running the parent's atexit state.
                    unsafe { libc::_exit(0) };
                }
                kids.push(pid);
            }
            let mut buf = [0u8; 1];
            for _ in 0..n {
                // SAFETY: reading one byte into a valid buffer.
                unsafe { libc::read(fds[0], buf.as_mut_ptr() as *mut libc::c_void, 1) };
            }
            let mut o = std::io::stdout();
            let _ = writeln!(
                o,
                "children {}",
                kids.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(" ")
            );
            ready();
            for k in kids {
                let mut st = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(k, &mut st, 0) };
            }
        }
        Some("cowpool") => cowpool(&args),
        Some("leak") => {
            let (rate, secs) = (arg(&args, 2), arg(&args, 3));
            let mut cache = Vec::new();
            let t0 = Instant::now();
            let mut i = 0u64;
            while t0.elapsed().as_secs_f64() < secs {
                let due = Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
                leak_into_cache(&mut cache, MIB);
                i += 1;
            }
            ready();
        }
        Some("files") => {
            // Creates N empty files in DIR (slab: inodes and dentries),
            // prints `done`, then exits.
            let dir = std::path::PathBuf::from(&args[2]);
            let n: usize = args[3].parse().expect("count");
            for i in 0..n {
                std::fs::File::create(dir.join(format!("f{i}"))).expect("create");
            }
            println!("done");
        }
        Some("env-dump") => {
            let file = args.get(2).expect("file");
            let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
            std::fs::write(file, serde_json::to_string(&env).unwrap()).expect("write env");
        }
        Some("argv-dump") => {
            let file = args.get(2).expect("file");
            let rest: Vec<String> = args[3..].to_vec();
            std::fs::write(file, serde_json::to_string(&rest).unwrap()).expect("write argv");
        }
        Some("pagecache") => {
            use std::io::{Read, Seek, SeekFrom, Write as _};
            let path = args.get(2).cloned().unwrap_or_else(|| {
                eprintln!("usage: lt-helper pagecache <file> <mib> <secs>");
                std::process::exit(2)
            });
            let (mib, secs) = (arg(&args, 3), arg(&args, 4));
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .expect("open");
            let chunk = vec![7u8; MIB];
            for i in 0..mib as usize {
                f.write_all(&chunk).expect("write");
                if i % 8 == 7 {
                    f.sync_data().expect("fsync");
                }
            }
            f.sync_all().expect("fsync");
            ready();
            let mut buf = vec![0u8; MIB];
            let t0 = Instant::now();
            while t0.elapsed().as_secs_f64() < secs {
                f.seek(SeekFrom::Start(0)).expect("seek");
                while f.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
            }
            let _ = std::fs::remove_file(&path);
        }
        Some("faults") => {
            // mmap, touch every page, munmap, in a loop: the page-fault path.
            let (secs, mib) = (arg(&args, 2), arg(&args, 3));
            let full = args.get(4).map(String::as_str) == Some("page");
            if args.get(5).map(String::as_str) == Some("wait") {
                ready();
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
            }
            let bytes = mib as usize * MIB;
            let t0 = Instant::now();
            let mut pages = 0u64;
            while t0.elapsed().as_secs_f64() < secs {
                let p = map(bytes);
                if full {
                    // SAFETY: p..p+bytes is the mapping just created.
                    unsafe { std::ptr::write_bytes(p, 1, bytes) };
                } else {
                    touch(p, bytes);
                }
                unmap(p, bytes);
                pages += (bytes / page()) as u64;
            }
            println!("{:.0}", pages as f64 / t0.elapsed().as_secs_f64());
        }
        Some("idle") => {
            let (n, secs) = (arg(&args, 2) as usize, arg(&args, 3));
            for _ in 0..n {
                // SAFETY: the child only sleeps and exits.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: prctl with integer arguments only.
                    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
                    sleep_s(secs);
                    // SAFETY: leave without running the parent's atexit state.
                    unsafe { libc::_exit(0) };
                }
                if pid < 0 {
                    eprintln!("fork failed after {} children", n);
                    std::process::exit(1);
                }
            }
            ready();
            sleep_s(secs);
        }
        Some("forkstorm") => {
            let (rate, secs) = (arg(&args, 2), arg(&args, 3));
            ready();
            let t0 = Instant::now();
            let mut n = 0u64;
            while t0.elapsed().as_secs_f64() < secs {
                // Keep to the schedule in batches of 1 ms.
                let due = (t0.elapsed().as_secs_f64() * rate) as u64;
                while n < due {
                    // SAFETY: the child exits at once without touching
                    // the parent's state.
                    let pid = unsafe { libc::fork() };
                    if pid == 0 {
                        // SAFETY: leave without running atexit handlers.
                        unsafe { libc::_exit(0) };
                    }
                    if pid > 0 {
                        n += 1;
                    }
                    // SAFETY: reaping any exited children, non-blocking.
                    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            // SAFETY: reap the rest.
            while unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) } > 0 {}
            println!("forked {n} in {:.1} s", t0.elapsed().as_secs_f64());
        }
        _ => {
            eprintln!("usage: lt-helper grow|step|churn|forkpool|faults|idle|forkstorm ... (see source)");
            std::process::exit(2);
        }
    }
}
