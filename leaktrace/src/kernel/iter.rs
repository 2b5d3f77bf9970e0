//! Reading the task iterator: one pass per interval. Each pass is a fresh
//! iterator instance (BPF_ITER_CREATE on the link), read to the end into
//! one reused buffer, then decoded.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};
use leaktrace_common::{proc_flag, rec_kind, AliveRecord, ProcRecord, ThreadRecord};

use super::ProcSample;
use crate::fmt::FastMap as HashMap;

/// Calls bpf(2) with a small attribute block.
fn sys_bpf(cmd: u32, attr: &mut [u32; 8]) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid, zero-padded bpf_attr prefix of the size
    // passed; the kernel reads only the fields of `cmd`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as libc::c_long,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

const BPF_LINK_GET_FD_BY_ID: u32 = 30;
const BPF_ITER_CREATE: u32 = 33;

/// A new fd for the link with this id (the link stays attached while any
/// fd refers to it).
pub fn link_fd_by_id(id: u32) -> std::io::Result<OwnedFd> {
    let mut attr = [0u32; 8];
    attr[0] = id;
    sys_bpf(BPF_LINK_GET_FD_BY_ID, &mut attr)
}

/// A new fd for a link this process already holds an fd for, found by its
/// id in /proc/self/fdinfo and duplicated. Unlike BPF_LINK_GET_FD_BY_ID,
/// which needs CAP_SYS_ADMIN, this works with CAP_BPF alone.
pub fn own_link_fd(id: u32) -> std::io::Result<OwnedFd> {
    let want = id.to_string();
    for ent in std::fs::read_dir("/proc/self/fdinfo")?.flatten() {
        let Some(fd) = ent.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(ent.path()) else {
            continue;
        };
        let matches = info
            .lines()
            .find_map(|l| l.strip_prefix("link_id:"))
            .is_some_and(|v| v.trim() == want);
        if !matches {
            continue;
        }
        // SAFETY: fcntl on an fd number only reads it; a stale number
        // fails with EBADF and the result is a new fd we then own.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(dup) });
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no fd of this process refers to bpf link {id}"),
    ))
}

/// Bytes the kernel wrote in the last pass, and what was in them.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, schemars::JsonSchema)]
pub struct PassStats {
    pub bytes: usize,
    pub processes: usize,
    /// Of which unchanged since the last pass (8-byte records).
    pub unchanged: usize,
    pub threads: usize,
    /// Records of an unknown kind or cut short: decoding stopped there.
    pub decode_errors: u64,
}

/// The pass is read and decoded this many bytes at a time: the whole pass
/// is never held (10,000 changed processes are 1.6 MB of records).
const CHUNK: usize = 64 * 1024;

pub struct TaskIter {
    link: OwnedFd,
    /// One chunk and the start of a record cut at its end.
    buf: Vec<u8>,
    thread_faults: HashMap<u32, (u64, u64)>,
    page: u64,
}

impl TaskIter {
    pub fn new(link: OwnedFd, page: u64) -> Self {
        Self {
            link,
            buf: vec![0; 2 * CHUNK],
            thread_faults: HashMap::default(),
            page,
        }
    }

    /// One pass over every task. `out` is cleared and filled with one
    /// sample per process whose record changed (the faults of its other
    /// threads added in), `live` with the tgid of every process. Read in
    /// chunks, each decoded as it comes.
    pub fn read_pass(&mut self, out: &mut Vec<ProcSample>, live: &mut Vec<u32>) -> Result<PassStats> {
        let mut attr = [0u32; 8];
        attr[0] = self.link.as_raw_fd() as u32;
        let fd = sys_bpf(BPF_ITER_CREATE, &mut attr).context("creating a task iterator (BPF_ITER_CREATE)")?;
        let file = std::fs::File::from(fd);
        let mut dec = Decoder::new(self.page, out, live, &mut self.thread_faults);
        // Bytes at the front of `buf` not decoded yet (a cut record).
        let mut have = 0;
        loop {
            // SAFETY: reading into memory we own, at most its length.
            let n = unsafe {
                libc::read(
                    file.as_raw_fd(),
                    self.buf[have..].as_mut_ptr() as *mut libc::c_void,
                    self.buf.len() - have,
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error()).context("reading the task iterator");
            }
            if n == 0 {
                break;
            }
            have += n as usize;
            dec.st.bytes += n as usize;
            let used = dec.records(&self.buf[..have]);
            if dec.failed {
                break;
            }
            self.buf.copy_within(used..have, 0);
            have -= used;
        }
        if have > 0 && !dec.failed {
            // A record cut short at the end of the pass.
            dec.st.decode_errors += 1;
        }
        Ok(dec.finish())
    }
}

/// Decodes a pass's records as they come. Allocates nothing once `out`,
/// `live` and the thread map have grown to the host's size: an unchanged
/// process (8 bytes from the kernel) is its tgid in `live`, nothing more.
struct Decoder<'a> {
    page: u64,
    out: &'a mut Vec<ProcSample>,
    live: &'a mut Vec<u32>,
    thread_faults: &'a mut HashMap<u32, (u64, u64)>,
    st: PassStats,
    /// An unknown record kind: decoding stopped there.
    failed: bool,
}

impl<'a> Decoder<'a> {
    fn new(
        page: u64,
        out: &'a mut Vec<ProcSample>,
        live: &'a mut Vec<u32>,
        thread_faults: &'a mut HashMap<u32, (u64, u64)>,
    ) -> Self {
        out.clear();
        live.clear();
        thread_faults.clear();
        Self {
            page,
            out,
            live,
            thread_faults,
            st: PassStats::default(),
            failed: false,
        }
    }

    /// Decodes the whole records at the start of `buf`; returns how many
    /// bytes they took (the rest is a record cut short, or garbage when
    /// `failed`).
    fn records(&mut self, buf: &[u8]) -> usize {
        let mut at = 0;
        while at + 4 <= buf.len() {
            let kind = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            let size = match kind {
                rec_kind::PROCESS => std::mem::size_of::<ProcRecord>(),
                rec_kind::THREAD => std::mem::size_of::<ThreadRecord>(),
                rec_kind::ALIVE => std::mem::size_of::<AliveRecord>(),
                _ => {
                    self.st.decode_errors += 1;
                    self.failed = true;
                    return at;
                }
            };
            let Some(bytes) = buf.get(at..at + size) else {
                return at;
            };
            at += size;
            if kind == rec_kind::ALIVE {
                self.st.processes += 1;
                self.st.unchanged += 1;
                let tgid = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                self.live.push(tgid);
            } else if kind == rec_kind::PROCESS {
                // SAFETY: `bytes` holds size_of::<ProcRecord>() bytes; the
                // record is plain integers, any bit pattern is valid.
                let r: ProcRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const ProcRecord) };
                self.st.processes += 1;
                self.live.push(r.tgid);
                if self.out.len() == self.out.capacity() {
                    // A quarter more, not twice: a full pass holds every
                    // process, and the capacity stays.
                    self.out.reserve_exact((self.out.len() / 4).max(256));
                }
                self.out.push(ProcSample::from_record(&r, self.page));
            } else {
                // SAFETY: as above, for ThreadRecord.
                let t: ThreadRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const ThreadRecord) };
                self.st.threads += 1;
                let e = self.thread_faults.entry(t.tgid).or_default();
                e.0 += t.min_flt;
                e.1 += t.maj_flt;
            }
        }
        at
    }

    /// The faults of other threads added to their processes.
    fn finish(self) -> PassStats {
        if !self.thread_faults.is_empty() {
            for p in self.out.iter_mut() {
                if let Some((min, maj)) = self.thread_faults.get(&p.tgid) {
                    p.faults += min + maj;
                    p.maj_faults += maj;
                }
            }
        }
        self.st
    }
}

/// Decodes one whole pass. Pure: unit-tested on synthetic buffers.
#[cfg(test)]
pub fn decode(
    buf: &[u8],
    page: u64,
    out: &mut Vec<ProcSample>,
    live: &mut Vec<u32>,
    thread_faults: &mut HashMap<u32, (u64, u64)>,
) -> PassStats {
    let mut dec = Decoder::new(page, out, live, thread_faults);
    dec.st.bytes = buf.len();
    let used = dec.records(buf);
    if used < buf.len() && !dec.failed {
        dec.st.decode_errors += 1;
    }
    dec.finish()
}

impl ProcSample {
    pub fn from_record(r: &ProcRecord, page: u64) -> Self {
        let pages = |v: i64| v.max(0) as u64 * page;
        let life = r.flags & proc_flag::LIFE != 0;
        Self {
            tgid: r.tgid,
            ppid: r.ppid,
            start_ns: r.start_ns,
            comm: r.comm,
            threads: r.nr_threads,
            rss: r.rss_pages.map(pages),
            hiwater_bytes: r.hiwater_pages * page,
            total_vm_bytes: r.total_vm_pages * page,
            faults: r.min_flt + r.maj_flt,
            maj_faults: r.maj_flt,
            memcg_id: r.memcg_id,
            exec_id: r.exec_id,
            forks: r.forks,
            reclaim_ns: r.reclaim_ns,
            birth: (life && r.birth_ns != 0).then_some((r.birth_ns, r.birth_rss_pages * page)),
            oom_score_adj: r.oom_score_adj,
            no_mm: r.flags & proc_flag::NO_MM != 0,
            unchanged: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_bytes<T>(v: &T) -> &[u8] {
        // SAFETY: viewing a plain-data value as its bytes.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
    }

    #[test]
    fn decodes_processes_and_adds_their_threads_faults() {
        let mut p = ProcRecord {
            kind: rec_kind::PROCESS,
            tgid: 10,
            ppid: 1,
            min_flt: 5,
            maj_flt: 1,
            flags: proc_flag::LIFE,
            birth_ns: 77,
            birth_rss_pages: 2,
            ..Default::default()
        };
        p.rss_pages = [1, 2, 0, 3];
        p.comm[..4].copy_from_slice(b"grow");
        let t = ThreadRecord {
            kind: rec_kind::THREAD,
            tgid: 10,
            min_flt: 100,
            maj_flt: 2,
        };
        let mut buf = Vec::new();
        buf.extend_from_slice(as_bytes(&t));
        buf.extend_from_slice(as_bytes(&p));
        buf.extend_from_slice(as_bytes(&t));
        buf.extend_from_slice(as_bytes(&AliveRecord {
            kind: rec_kind::ALIVE,
            tgid: 11,
        }));
        let (mut out, mut live, mut tf) = (Vec::new(), Vec::new(), HashMap::default());
        let st = decode(&buf, 4096, &mut out, &mut live, &mut tf);
        assert_eq!(
            (st.processes, st.unchanged, st.threads, st.decode_errors),
            (2, 1, 2, 0)
        );
        assert_eq!(out.len(), 1, "only the changed record is a sample");
        assert_eq!(live, vec![10, 11]);
        let s = &out[0];
        assert_eq!(s.rss, [4096, 8192, 0, 12288]);
        assert_eq!(s.faults, 5 + 1 + 2 * 102);
        assert_eq!(s.maj_faults, 1 + 4);
        assert_eq!(s.birth, Some((77, 8192)));
        assert_eq!(&s.comm[..4], b"grow");
        // A truncated or unknown record stops decoding and is counted.
        let st = decode(&buf[..buf.len() - 11], 4096, &mut out, &mut live, &mut tf);
        assert_eq!(st.decode_errors, 1);
        // Fed in pieces cut anywhere, as the reads of a pass come: the same.
        for cut in [1, 7, 100, 161, buf.len() - 3] {
            let (mut o2, mut l2, mut t2) = (Vec::new(), Vec::new(), HashMap::default());
            let mut dec = Decoder::new(4096, &mut o2, &mut l2, &mut t2);
            let used = dec.records(&buf[..cut]);
            let mut rest = buf[used..cut].to_vec();
            rest.extend_from_slice(&buf[cut..]);
            let used2 = dec.records(&rest);
            assert_eq!(used2, rest.len(), "cut at {cut}");
            let st2 = dec.finish();
            assert_eq!((st2.processes, st2.threads, st2.decode_errors), (2, 2, 0));
            assert_eq!((o2.len(), o2[0].faults, l2.clone()), (1, 5 + 1 + 2 * 102, vec![10, 11]));
        }
        let st = decode(&[9, 0, 0, 0, 1, 2], 4096, &mut out, &mut live, &mut tf);
        assert_eq!((st.decode_errors, out.len()), (1, 0));
    }
}
