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
use leaktrace_common::{line_flag, oom_kind, Life, OomEvent, OOM_EVENT_HEADER, OOM_LINE_HEADER};

/// A decoded `OomEvent`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: u32,
    pub pid: u32,
    pub tgid: u32,
    pub target: u32,
    pub ts_ns: u64,
    pub vals: [u64; 8],
    /// The comm of the task the event happened in, decoded lossily.
    pub comm: String,
    /// A log line, decoded lossily, without its trailing newline.
    pub text: String,
    /// MARK_VICTIM: the victim's life as the kernel kept it.
    pub life: Option<Life>,
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl Record {
    /// Decodes one ring-buffer record: an `OomLine` (a report line, only
    /// as long as its text) or an `OomEvent` (its header, then the text or
    /// the victim's life if there is one). None if it is too short.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        let kind = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
        if kind == oom_kind::CONSOLE {
            return Self::decode_line(buf);
        }
        if buf.len() < OOM_EVENT_HEADER {
            return None;
        }
        // SAFETY: OomEvent is plain integers and byte arrays: all-zero is a
        // valid value, and the bytes copied in are the record's own.
        let mut e: OomEvent = unsafe { std::mem::zeroed() };
        let n = buf.len().min(std::mem::size_of::<OomEvent>());
        // SAFETY: copying at most size_of::<OomEvent>() bytes into it.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), &mut e as *mut OomEvent as *mut u8, n) };
        let len = (e.len as usize).min(e.text.len()).min(n - OOM_EVENT_HEADER);
        let life = (e.kind == oom_kind::MARK_VICTIM && len == std::mem::size_of::<Life>()).then(|| {
            // SAFETY: `len` bytes of text hold a Life (checked above); plain
            // integers and bytes, any bit pattern valid.
            unsafe { std::ptr::read_unaligned(e.text.as_ptr() as *const Life) }
        });
        let text = if life.is_some() {
            String::new()
        } else {
            String::from_utf8_lossy(&e.text[..len])
                .trim_end_matches(['\n', '\0'])
                .to_string()
        };
        Some(Self {
            kind: e.kind,
            pid: e.pid,
            tgid: e.tgid,
            target: e.target,
            ts_ns: e.ts_ns,
            vals: e.vals,
            comm: cstr(&e.comm),
            text,
            life,
        })
    }

    fn decode_line(buf: &[u8]) -> Option<Self> {
        if buf.len() < OOM_LINE_HEADER {
            return None;
        }
        let u32_at = |o: usize| u32::from_le_bytes(buf[o..o + 4].try_into().unwrap_or_default());
        let (pid, tgid, flags) = (u32_at(4), u32_at(8), u32_at(12));
        let ts_ns = u64::from_le_bytes(buf[16..24].try_into().unwrap_or_default());
        let len = (u32_at(40) as usize).min(buf.len() - OOM_LINE_HEADER);
        let mut vals = [0; 8];
        vals[0] = (flags & line_flag::STARTS != 0) as u64;
        vals[1] = if flags & line_flag::NEWLINE_UNKNOWN != 0 {
            2
        } else {
            (flags & line_flag::NEWLINE != 0) as u64
        };
        Some(Self {
            kind: oom_kind::CONSOLE,
            pid,
            tgid,
            target: 0,
            ts_ns,
            vals,
            comm: cstr(&buf[24..40]),
            text: String::from_utf8_lossy(&buf[OOM_LINE_HEADER..OOM_LINE_HEADER + len])
                .trim_end_matches(['\n', '\0'])
                .to_string(),
            life: None,
        })
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

    fn zeroed() -> OomEvent {
        // SAFETY: OomEvent is plain integers and byte arrays; all-zero is valid.
        unsafe { std::mem::zeroed() }
    }

    fn bytes(e: &OomEvent) -> &[u8] {
        // SAFETY: viewing a plain-data struct as bytes.
        unsafe {
            std::slice::from_raw_parts(e as *const OomEvent as *const u8, std::mem::size_of::<OomEvent>())
        }
    }

    #[test]
    fn decode_roundtrip_and_victim_life() {
        // A report line: the header, then only its text.
        let mut line = vec![0u8; OOM_LINE_HEADER];
        line[..4].copy_from_slice(&oom_kind::CONSOLE.to_le_bytes());
        line[4..8].copy_from_slice(&5u32.to_le_bytes());
        line[12..16].copy_from_slice(&(line_flag::STARTS | line_flag::NEWLINE).to_le_bytes());
        line[24..28].copy_from_slice(b"test");
        line[40..44].copy_from_slice(&6u32.to_le_bytes());
        line.extend_from_slice(b"hello\n");
        let r = Record::decode(&line).unwrap();
        assert_eq!(
            (r.kind, r.pid, r.comm.as_str(), r.text.as_str()),
            (oom_kind::CONSOLE, 5, "test", "hello")
        );
        assert_eq!((r.vals[0], r.vals[1]), (1, 1));
        assert!(r.life.is_none());
        assert!(Record::decode(&line[..10]).is_none());
        // A length that claims more than the record holds is cut.
        line[40..44].copy_from_slice(&600u32.to_le_bytes());
        assert_eq!(Record::decode(&line).unwrap().text, "hello");
        // A header-only event.
        let mut e = zeroed();
        e.kind = oom_kind::SIGKILL;
        e.target = 9;
        let r = Record::decode(&bytes(&e)[..OOM_EVENT_HEADER]).unwrap();
        assert_eq!((r.kind, r.target, r.text.as_str()), (oom_kind::SIGKILL, 9, ""));

        let mut v = zeroed();
        v.kind = oom_kind::MARK_VICTIM;
        let life = Life {
            birth_ns: 42,
            birth_rss_pages: 3,
            ..Life::default()
        };
        // SAFETY: copying a plain-data struct into the text bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                &life as *const Life as *const u8,
                v.text.as_mut_ptr(),
                std::mem::size_of::<Life>(),
            )
        };
        v.len = std::mem::size_of::<Life>() as u32;
        let r = Record::decode(bytes(&v)).unwrap();
        assert_eq!(r.life.unwrap().birth_ns, 42);
        assert_eq!(r.text, "");
    }
}
