//! Short lives: the `EXITS` ring carries the life of each process that
//! grew and died (and of each OOM victim), so that one born and gone
//! between two samples still counts as a grower.
use std::os::fd::{AsFd, AsRawFd, RawFd};

use anyhow::{Context, Result};
use aya::{
    maps::{MapData, RingBuf},
    Ebpf,
};
use leaktrace_common::{life_flag, ExitRecord};

/// A decoded exit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitSample {
    pub tgid: u32,
    pub ppid: u32,
    pub comm: [u8; 16],
    /// CLOCK_MONOTONIC ns.
    pub exit_ns: u64,
    pub start_ns: u64,
    /// (ns, RSS bytes) at the birth of its last image, if it was born
    /// while leaktrace ran.
    pub birth: Option<(u64, u64)>,
    /// The peak RSS of its last image, when the kernel knows it is that
    /// image's own (after an exec the inherited peak is not).
    pub peak_bytes: Option<u64>,
    pub memcg_id: u64,
    pub exit_code: u32,
    pub oom_victim: bool,
    /// Died within AFTER_KILL_NS of an OOM victim, around it (its memcg,
    /// parent chain or siblings).
    pub after_kill: bool,
    /// argv at exec (NUL-separated), or the parent's if it never exec'd.
    pub args: Vec<u8>,
}

impl ExitSample {
    pub fn from_record(r: &ExitRecord, page: u64) -> Self {
        let l = &r.life;
        let own_peak = l.flags & life_flag::EXECED == 0 || r.maxrss_pages > l.maxrss_at_exec;
        Self {
            tgid: r.tgid,
            ppid: r.ppid,
            comm: r.comm,
            exit_ns: r.exit_ns,
            start_ns: l.start_ns,
            birth: (l.birth_ns != 0).then_some((l.birth_ns, l.birth_rss_pages * page)),
            peak_bytes: (own_peak && r.maxrss_pages > 0).then_some(r.maxrss_pages * page),
            memcg_id: r.memcg_id,
            exit_code: r.exit_code,
            oom_victim: r.reason == leaktrace_common::exit_reason::OOM_VICTIM,
            after_kill: r.reason == leaktrace_common::exit_reason::AFTER_OOM_KILL,
            args: l.argv().to_vec(),
        }
    }
}

pub struct ExitsReader {
    ring: RingBuf<MapData>,
    page: u64,
}

impl ExitsReader {
    pub fn take(ebpf: &mut Ebpf, page: u64) -> Result<Self> {
        Ok(Self {
            ring: RingBuf::try_from(ebpf.take_map("EXITS").context("map EXITS missing")?)?,
            page,
        })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.ring.as_fd().as_raw_fd()
    }

    /// Everything waiting in the ring; at most `cap` records are kept in
    /// `out`, the rest are counted and returned.
    pub fn drain(&mut self, out: &mut Vec<ExitSample>, cap: usize) -> u64 {
        let mut dropped = 0;
        while let Some(item) = self.ring.next() {
            if item.len() < std::mem::size_of::<ExitRecord>() {
                dropped += 1;
                continue;
            }
            if out.len() >= cap {
                dropped += 1;
                crate::limits::EXITS_PER_TICK.hit();
                continue;
            }
            // SAFETY: the item holds a whole ExitRecord (checked above);
            // plain integers, any bit pattern valid.
            let r: ExitRecord = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const ExitRecord) };
            out.push(ExitSample::from_record(&r, self.page));
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktrace_common::Life;

    #[test]
    fn peak_after_exec_counts_only_when_above_the_inherited_one() {
        let mut life = Life {
            start_ns: 5,
            birth_ns: 10,
            birth_rss_pages: 100,
            maxrss_at_exec: 50_000,
            flags: life_flag::EXECED,
            args_len: 4,
            ..Life::default()
        };
        life.args[..4].copy_from_slice(b"a\0b\0");
        let mut r = ExitRecord {
            tgid: 7,
            ppid: 1,
            exit_ns: 20,
            maxrss_pages: 40_000,
            memcg_id: 3,
            exit_code: 9,
            reason: leaktrace_common::exit_reason::OOM_VICTIM,
            comm: [0; 16],
            life,
        };
        let e = ExitSample::from_record(&r, 4096);
        assert_eq!(e.peak_bytes, None, "the peak may be the image before exec");
        assert_eq!(e.birth, Some((10, 100 * 4096)));
        assert_eq!(e.args, b"a\0b\0");
        assert!(e.oom_victim);
        r.maxrss_pages = 60_000;
        assert_eq!(ExitSample::from_record(&r, 4096).peak_bytes, Some(60_000 * 4096));
        // Forked, never exec'd: maxrss is its own mm's.
        r.life.flags = life_flag::FORKED;
        r.maxrss_pages = 40_000;
        assert_eq!(ExitSample::from_record(&r, 4096).peak_bytes, Some(40_000 * 4096));
    }
}
