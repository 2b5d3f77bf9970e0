//! The two OOM ring buffers: `OOM_EVENTS` (report lines, reclaim stalls)
//! and `OOM_CRIT` (victim, kill, reaper, exit). They are drained by their
//! own thread, which does nothing else, so that no other work can make
//! them overflow.
use std::os::fd::{AsFd, AsRawFd, RawFd};

use anyhow::{Context, Result};
use aya::{
    maps::{MapData, RingBuf},
    Ebpf,
};
use leaktrace_common::{
    hook_source, line_flag, Life, LockHeldRecord, MarkVictimRecord, OomConstraint, OomControlRecord,
    OomHeader, OomKind, OomLineHead, ReclaimStallRecord, SigkillRecord, OOM_LINE_HEADER,
};

/// One decoded OOM record: who, when, and the event itself. `E` is the
/// event; [`OomEvent`] for a record as it comes off the ring, one of its
/// payloads once the model has told the kinds apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<E = OomEvent> {
    /// Thread id of the task the event happened in.
    pub pid: u32,
    pub tgid: u32,
    /// The task the event is about (victim, reaped task, signal receiver,
    /// chosen task); 0 when there is none.
    pub target: u32,
    pub ts_ns: u64,
    /// The comm of the task the event happened in, decoded lossily.
    pub comm: String,
    pub event: E,
}

impl<E> Record<E> {
    /// The record without its event, and the event: the model matches on
    /// the event and keeps the payload it wants, without a copy.
    pub fn split(self) -> (Record<()>, E) {
        let Record {
            pid,
            tgid,
            target,
            ts_ns,
            comm,
            event,
        } = self;
        let head = Record {
            pid,
            tgid,
            target,
            ts_ns,
            comm,
            event: (),
        };
        (head, event)
    }

    /// The same record carrying another event (the payload taken out of,
    /// or put back into, an [`OomEvent`]).
    pub fn with<F>(self, event: F) -> Record<F> {
        Record {
            pid: self.pid,
            tgid: self.tgid,
            target: self.target,
            ts_ns: self.ts_ns,
            comm: self.comm,
            event,
        }
    }
}

/// Every kind of OOM record, decoded. The model handles it with a `match`
/// that has no `_` arm: a kind added here does not compile until the model
/// handles it, and a kind added to `OomKind` does not compile until
/// [`Record::decode`] decodes it.
#[derive(Debug, Clone, PartialEq)]
pub enum OomEvent {
    /// A log line of an OOM report (printk:console).
    Line(ConsoleLine),
    /// oom:mark_victim.
    MarkVictim(Victim),
    /// The SIGKILL of the kill; `target` received it.
    Sigkill { result: i32 },
    /// An oom: reaper tracepoint about `target`.
    Reaper(ReaperStage),
    /// The victim `target` died.
    VictimExit,
    /// A reclaim episode of thread `target` near an OOM report.
    ReclaimStall(ReclaimStall),
    /// struct oom_control at oom_kill_process(); `target` = chosen tgid.
    Control(Control),
    /// out_of_memory()'s run with oom_lock held by thread `target`.
    LockHeld(LockHeld),
}

/// Whether a console line ended with a newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// A whole line.
    Newline,
    /// A fragment that the next pr_cont continues.
    Fragment,
    /// Not known (classic tracepoint).
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleLine {
    /// The line starts a report ("<comm> invoked oom-killer:").
    pub starts: bool,
    pub end: LineEnd,
    /// The text, decoded lossily, without its trailing newline.
    pub text: String,
}

/// oom:mark_victim's fields, in bytes where the tracepoint gives kB.
#[derive(Debug, Clone, PartialEq)]
pub struct Victim {
    pub total_vm_bytes: u64,
    pub rss_anon_bytes: u64,
    pub rss_file_bytes: u64,
    pub rss_shmem_bytes: u64,
    pub pgtables_bytes: u64,
    pub uid: u32,
    pub oom_score_adj: i32,
    /// The victim's life as the kernel kept it, if it had an entry.
    pub life: Option<Life>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaperStage {
    Wake,
    Start,
    Finish,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReclaimStall {
    pub begin_ns: u64,
    pub end_ns: u64,
    /// memcg reclaim (else direct reclaim).
    pub memcg: bool,
}

/// The kind of hook that produced a record more than one kind can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookSource {
    /// fentry / fexit.
    Trampoline,
    /// kprobe / kretprobe.
    Kprobe,
}

impl HookSource {
    fn from_u32(v: u32) -> Self {
        if v == hook_source::KPROBE {
            Self::Kprobe
        } else {
            Self::Trampoline
        }
    }
}

/// The kernel's OOM constraint, or the raw value of one this build does
/// not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    Known(OomConstraint),
    Unknown(u32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub constraint: Constraint,
    pub totalpages: u64,
    pub chosen_points: i64,
    /// kernfs id of the OOM memcg, for a memcg OOM.
    pub memcg_id: Option<u64>,
    pub order: i32,
    pub gfp_mask: u32,
    pub source: HookSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockHeld {
    pub enter_ns: u64,
    pub return_ns: u64,
    pub ret: u32,
    pub source: HookSource,
}

/// Record types that are plain integers and byte arrays: any bit pattern
/// is a valid value.
///
/// # Safety
/// Implement only for `#[repr(C)]` types made of integers and arrays of
/// integers (and such types).
unsafe trait Plain: Copy {}
// SAFETY: all of these are #[repr(C)] integers and byte arrays.
unsafe impl Plain for OomHeader {}
// SAFETY: as above.
unsafe impl Plain for OomLineHead {}
// SAFETY: as above (Life is integers and a byte array).
unsafe impl Plain for MarkVictimRecord {}
// SAFETY: as above.
unsafe impl Plain for SigkillRecord {}
// SAFETY: as above.
unsafe impl Plain for ReclaimStallRecord {}
// SAFETY: as above.
unsafe impl Plain for OomControlRecord {}
// SAFETY: as above.
unsafe impl Plain for LockHeldRecord {}

/// The `T` at the start of `buf`, or None if `buf` is too short.
fn read<T: Plain>(buf: &[u8]) -> Option<T> {
    if buf.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: `buf` holds at least size_of::<T>() bytes (checked above),
    // the read is unaligned, and any bit pattern is a valid T (Plain).
    Some(unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const T) })
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn record<E>(h: &OomHeader, event: E) -> Record<E> {
    Record {
        pid: h.pid,
        tgid: h.tgid,
        target: h.target,
        ts_ns: h.ts_ns,
        comm: cstr(&h.comm),
        event,
    }
}

impl Record {
    /// Decodes one ring-buffer record. None if its kind is unknown or it
    /// is shorter than its kind's record: the caller counts and drops it.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let h: OomHeader = read(buf)?;
        let event = match OomKind::from_u32(h.kind)? {
            OomKind::Console => return Self::decode_line(buf),
            OomKind::MarkVictim => OomEvent::MarkVictim(Self::victim(&read::<MarkVictimRecord>(buf)?)),
            OomKind::WakeReaper => OomEvent::Reaper(ReaperStage::Wake),
            OomKind::StartReaping => OomEvent::Reaper(ReaperStage::Start),
            OomKind::FinishReaping => OomEvent::Reaper(ReaperStage::Finish),
            OomKind::SkipReaping => OomEvent::Reaper(ReaperStage::Skip),
            OomKind::VictimExit => OomEvent::VictimExit,
            OomKind::Sigkill => OomEvent::Sigkill {
                result: read::<SigkillRecord>(buf)?.result,
            },
            OomKind::ReclaimStall => {
                let r: ReclaimStallRecord = read(buf)?;
                OomEvent::ReclaimStall(ReclaimStall {
                    begin_ns: r.begin_ns,
                    end_ns: r.end_ns,
                    memcg: r.memcg != 0,
                })
            }
            OomKind::OomControl => OomEvent::Control(Self::control(&read::<OomControlRecord>(buf)?)),
            OomKind::OomLockHeld => {
                let r: LockHeldRecord = read(buf)?;
                OomEvent::LockHeld(LockHeld {
                    enter_ns: r.enter_ns,
                    return_ns: r.return_ns,
                    ret: r.ret,
                    source: HookSource::from_u32(r.source),
                })
            }
        };
        Some(record(&h, event))
    }

    fn victim(r: &MarkVictimRecord) -> Victim {
        let kb = |v: u64| v.saturating_mul(1024);
        Victim {
            total_vm_bytes: kb(r.total_vm_kb),
            rss_anon_bytes: kb(r.anon_rss_kb),
            rss_file_bytes: kb(r.file_rss_kb),
            rss_shmem_bytes: kb(r.shmem_rss_kb),
            pgtables_bytes: kb(r.pgtables_kb),
            uid: r.uid,
            oom_score_adj: r.oom_score_adj as i16 as i32,
            life: (r.has_life != 0).then_some(r.life),
        }
    }

    fn control(r: &OomControlRecord) -> Control {
        Control {
            constraint: OomConstraint::from_u32(r.constraint)
                .map_or(Constraint::Unknown(r.constraint), Constraint::Known),
            totalpages: r.totalpages,
            chosen_points: r.chosen_points,
            memcg_id: (r.has_memcg != 0 && r.memcg_id != 0).then_some(r.memcg_id),
            order: r.order,
            gfp_mask: r.gfp_mask,
            source: HookSource::from_u32(r.source),
        }
    }

    /// A report line: its head, then only `len` bytes of text (cut to what
    /// the record holds).
    fn decode_line(buf: &[u8]) -> Option<Self> {
        let head: OomLineHead = read(buf)?;
        let body = buf.get(OOM_LINE_HEADER..)?;
        let text = body.get(..head.len as usize).unwrap_or(body);
        let end = if head.flags & line_flag::NEWLINE_UNKNOWN != 0 {
            LineEnd::Unknown
        } else if head.flags & line_flag::NEWLINE != 0 {
            LineEnd::Newline
        } else {
            LineEnd::Fragment
        };
        let line = ConsoleLine {
            starts: head.flags & line_flag::STARTS != 0,
            end,
            text: String::from_utf8_lossy(text)
                .trim_end_matches(['\n', '\0'])
                .to_string(),
        };
        Some(record(&head.hdr, OomEvent::Line(line)))
    }
}

pub struct OomRings {
    events: RingBuf<MapData>,
    crit: RingBuf<MapData>,
}

impl OomRings {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Self {
            events: RingBuf::try_from(ebpf.take_map("OOM_EVENTS").context("map OOM_EVENTS missing")?)?,
            crit: RingBuf::try_from(ebpf.take_map("OOM_CRIT").context("map OOM_CRIT missing")?)?,
        })
    }

    pub fn raw_fds(&self) -> [RawFd; 2] {
        [self.crit.as_fd().as_raw_fd(), self.events.as_fd().as_raw_fd()]
    }

    /// Drains both rings into `out`, merged in time order so that a kill
    /// is never handled before the report line that preceded it.
    pub fn drain(&mut self, out: &mut Vec<Record>) -> u64 {
        let mut bad = 0;
        for ring in [&mut self.crit, &mut self.events] {
            while let Some(item) = ring.next() {
                match Record::decode(&item) {
                    Some(r) => out.push(r),
                    None => bad += 1,
                }
            }
        }
        out.sort_by_key(|r| r.ts_ns);
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: Plain>(e: &T) -> &[u8] {
        // SAFETY: viewing a plain-data struct as its bytes.
        unsafe { std::slice::from_raw_parts(e as *const T as *const u8, std::mem::size_of::<T>()) }
    }

    fn hdr(kind: OomKind, target: u32) -> OomHeader {
        OomHeader {
            kind: kind as u32,
            target,
            ..OomHeader::default()
        }
    }

    #[test]
    fn decode_roundtrip_and_victim_life() {
        // A report line: the header, then only its text.
        let mut head = OomLineHead {
            hdr: hdr(OomKind::Console, 0),
            flags: line_flag::STARTS | line_flag::NEWLINE,
            len: 6,
        };
        head.hdr.pid = 5;
        head.hdr.comm[..4].copy_from_slice(b"test");
        let mut line = bytes(&head).to_vec();
        line.extend_from_slice(b"hello\n");
        let r = Record::decode(&line).unwrap();
        assert_eq!((r.pid, r.comm.as_str()), (5, "test"));
        let OomEvent::Line(l) = &r.event else {
            panic!("not a line: {r:?}")
        };
        assert_eq!(
            (l.starts, l.end, l.text.as_str()),
            (true, LineEnd::Newline, "hello")
        );
        assert!(Record::decode(&line[..10]).is_none());
        // A length that claims more than the record holds is cut.
        head.len = 600;
        line[..OOM_LINE_HEADER].copy_from_slice(bytes(&head));
        let OomEvent::Line(l) = Record::decode(&line).unwrap().event else {
            panic!("not a line")
        };
        assert_eq!(l.text, "hello");
        // A header-only kind... and one whose record is cut short.
        let k = SigkillRecord {
            hdr: hdr(OomKind::Sigkill, 9),
            result: 0,
            _pad: 0,
        };
        let r = Record::decode(bytes(&k)).unwrap();
        assert_eq!((r.target, r.event), (9, OomEvent::Sigkill { result: 0 }));
        assert!(Record::decode(&bytes(&k)[..40]).is_none(), "short SIGKILL record");
        let exit = hdr(OomKind::VictimExit, 3);
        assert_eq!(Record::decode(bytes(&exit)).unwrap().event, OomEvent::VictimExit);

        let life = Life {
            birth_ns: 42,
            birth_rss_pages: 3,
            ..Life::default()
        };
        let v = MarkVictimRecord {
            hdr: hdr(OomKind::MarkVictim, 100),
            total_vm_kb: 1,
            anon_rss_kb: 2,
            file_rss_kb: 0,
            shmem_rss_kb: 0,
            pgtables_kb: 0,
            uid: 0,
            oom_score_adj: -1000,
            has_life: 1,
            _pad: 0,
            life,
        };
        let OomEvent::MarkVictim(m) = Record::decode(bytes(&v)).unwrap().event else {
            panic!("not a victim")
        };
        assert_eq!(m.life.unwrap().birth_ns, 42);
        assert_eq!((m.rss_anon_bytes, m.oom_score_adj), (2048, -1000));
    }

    /// Short or garbage records are dropped (and counted by the caller),
    /// never a panic.
    #[test]
    fn garbage_is_dropped_not_a_panic() {
        assert!(Record::decode(&[]).is_none());
        assert!(Record::decode(&[1, 0, 0]).is_none());
        let mut unknown = hdr(OomKind::Console, 0);
        unknown.kind = 999;
        assert!(Record::decode(bytes(&unknown)).is_none());
        for &k in OomKind::ALL {
            let h = hdr(k, 0);
            let full = [bytes(&h), &[0xff; 600][..]].concat();
            for n in 0..full.len() {
                let _ = Record::decode(&full[..n]);
            }
            assert!(Record::decode(&full).is_some(), "{k:?} decodes");
        }
    }
}
