//! Reading the task iterator: one pass per interval. Each pass is a fresh
//! iterator instance (BPF_ITER_CREATE on the link), read to the end into
//! one reused buffer, then decoded.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};
use bytes::BytesMut;
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

pub struct TaskIter {
    link: OwnedFd,
    buf: BytesMut,
    thread_faults: HashMap<u32, (u64, u64)>,
    page: u64,
}

impl TaskIter {
    pub fn new(link: OwnedFd, page: u64) -> Self {
        Self {
            link,
            buf: BytesMut::with_capacity(256 * 1024),
            thread_faults: HashMap::default(),
            page,
        }
    }

    /// One pass over every task. `out` is cleared and filled with one
    /// sample per process whose record changed (the faults of its other
    /// threads added in), `live` with the tgid of every process.
    pub fn read_pass(&mut self, out: &mut Vec<ProcSample>, live: &mut Vec<u32>) -> Result<PassStats> {
        let mut attr = [0u32; 8];
        attr[0] = self.link.as_raw_fd() as u32;
        let fd = sys_bpf(BPF_ITER_CREATE, &mut attr).context("creating a task iterator (BPF_ITER_CREATE)")?;
        let file = std::fs::File::from(fd);
        // Straight into the buffer's spare capacity (kept between passes,
        // never zeroed).
        self.buf.clear();
        loop {
            self.buf.reserve(64 * 1024);
            let spare = self.buf.spare_capacity_mut();
            // SAFETY: reading into memory we own, at most its length; the
            // kernel writes `n` bytes, which set_len then makes visible.
            let n = unsafe {
                libc::read(
                    file.as_raw_fd(),
                    spare.as_mut_ptr() as *mut libc::c_void,
                    spare.len(),
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error()).context("reading the task iterator");
            }
            if n == 0 {
                break;
            }
            // SAFETY: the kernel initialised these `n` bytes.
            unsafe { self.buf.set_len(self.buf.len() + n as usize) };
        }
        let st = decode(&self.buf, self.page, out, live, &mut self.thread_faults);
        Ok(st)
    }
}

/// Decodes one pass. Pure: unit-tested on synthetic buffers. Allocates
/// nothing once the buffers have grown to the host's size: an unchanged
/// process (8 bytes from the kernel) is its tgid in `live`, nothing more.
pub fn decode(
    buf: &[u8],
    page: u64,
    out: &mut Vec<ProcSample>,
    live: &mut Vec<u32>,
    thread_faults: &mut HashMap<u32, (u64, u64)>,
) -> PassStats {
    out.clear();
    live.clear();
    thread_faults.clear();
    let mut st = PassStats {
        bytes: buf.len(),
        ..Default::default()
    };
    let mut at = 0;
    while at + 4 <= buf.len() {
        let kind = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let size = match kind {
            rec_kind::PROCESS => std::mem::size_of::<ProcRecord>(),
            rec_kind::THREAD => std::mem::size_of::<ThreadRecord>(),
            rec_kind::ALIVE => std::mem::size_of::<AliveRecord>(),
            _ => {
                st.decode_errors += 1;
                break;
            }
        };
        let Some(bytes) = buf.get(at..at + size) else {
            st.decode_errors += 1;
            break;
        };
        at += size;
        if kind == rec_kind::ALIVE {
            st.processes += 1;
            st.unchanged += 1;
            let tgid = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            live.push(tgid);
        } else if kind == rec_kind::PROCESS {
            // SAFETY: `bytes` holds size_of::<ProcRecord>() bytes; the
            // record is plain integers, any bit pattern is valid.
            let r: ProcRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const ProcRecord) };
            st.processes += 1;
            live.push(r.tgid);
            out.push(ProcSample::from_record(&r, page));
        } else {
            // SAFETY: as above, for ThreadRecord.
            let t: ThreadRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const ThreadRecord) };
            st.threads += 1;
            let e = thread_faults.entry(t.tgid).or_default();
            e.0 += t.min_flt;
            e.1 += t.maj_flt;
        }
    }
    if thread_faults.is_empty() {
        return st;
    }
    for p in out.iter_mut() {
        if let Some((min, maj)) = thread_faults.get(&p.tgid) {
            p.faults += min + maj;
            p.maj_faults += maj;
        }
    }
    st
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
        let st = decode(&[9, 0, 0, 0, 1, 2], 4096, &mut out, &mut live, &mut tf);
        assert_eq!((st.decode_errors, out.len()), (1, 0));
    }
}
