//! CFI unwinding of the user stack copies the kernel sends (see
//! `leaktrace_common::StackCopy`), for code built without frame pointers.
//!
//! Runs in the sandboxed symbolizer child (`symbolize::in_child`): the
//! binaries it parses (.eh_frame, .eh_frame_hdr, .debug_frame) belong to
//! the traced process. They are found through /proc/PID/maps and read
//! through /proc/PID/map_files (the very file mapped, even if deleted or
//! replaced since), else /proc/PID/root/PATH, each up to
//! `limits::UNWIND_MODULE_BYTES`, at most `limits::UNWIND_MODULES` of them.
use std::collections::{HashMap, HashSet};

use framehop::{
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
    ExplicitModuleSectionInfo, Module, Unwinder,
};
use object::{Object, ObjectSection, ObjectSegment};
use serde::{Deserialize, Serialize};

use crate::kernel::stacks::RawCopy;

/// Most frames kept from one unwound stack (the kernel's stack map keeps
/// 127).
const MAX_FRAMES: usize = 127;

/// One stack copy, as the child receives it.
#[derive(Serialize, Deserialize, Clone)]
pub struct CopyReq {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub base: u64,
    /// The copied bytes, hex.
    pub data: String,
}

impl From<&RawCopy> for CopyReq {
    fn from(c: &RawCopy) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut data = String::with_capacity(c.data.len() * 2);
        for b in &c.data {
            data.push(HEX[(b >> 4) as usize] as char);
            data.push(HEX[(b & 15) as usize] as char);
        }
        Self {
            ip: c.ip,
            sp: c.sp,
            bp: c.bp,
            base: c.base,
            data,
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            d(p[0]) << 4 | d(p[1])
        })
        .collect()
}

/// An executable file mapping of the process.
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: String,
}

fn exec_mappings(pid: u32) -> Vec<Mapping> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(range), Some(perms), Some(off)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let path: String = f.skip(2).collect::<Vec<_>>().join(" ");
        if !perms.contains('x') || !path.starts_with('/') {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset)) = (
            u64::from_str_radix(a, 16),
            u64::from_str_radix(b, 16),
            u64::from_str_radix(off, 16),
        ) else {
            continue;
        };
        out.push(Mapping {
            start,
            end,
            offset,
            path,
        });
    }
    out
}

/// Reads a mapped file, refusing one larger than the bound.
fn read_capped(pid: u32, m: &Mapping) -> Option<Vec<u8>> {
    let cap = crate::limits::UNWIND_MODULE_SIZE.bound();
    for p in [
        format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end),
        format!("/proc/{pid}/root{}", m.path),
    ] {
        let Ok(meta) = std::fs::metadata(&p) else { continue };
        if meta.len() > cap {
            crate::limits::UNWIND_MODULE_SIZE.hit();
            return None;
        }
        if let Ok(d) = std::fs::read(&p) {
            return Some(d);
        }
    }
    None
}

/// The unwind module of one executable mapping, or None if the file is
/// unreadable or not an ELF object with CFI.
fn module(pid: u32, m: &Mapping) -> Option<Module<Vec<u8>>> {
    let bytes = read_capped(pid, m)?;
    let obj = object::File::parse(bytes.as_slice()).ok()?;
    // The load segment holding the mapped file offset gives the address
    // the file's 0 is at in the process. A mapping starts at its
    // segment's offset rounded down to a page, which can lie inside the
    // previous segment's file range: take the segment that starts last.
    let seg = obj
        .segments()
        .filter(|s| {
            let (o, sz) = s.file_range();
            m.offset >= o & !0xfff && m.offset < o.saturating_add(sz.max(1))
        })
        .max_by_key(|s| s.file_range().0)?;
    let (seg_off, _) = seg.file_range();
    let svma_at_start = seg.address().wrapping_sub(seg_off).wrapping_add(m.offset);
    let base_avma = m.start.wrapping_sub(svma_at_start);
    let sect = |name: &str| obj.section_by_name(name);
    let range = |name: &str| sect(name).map(|s| s.address()..s.address().saturating_add(s.size()));
    let data = |name: &str| {
        sect(name)
            .and_then(|s| s.uncompressed_data().ok())
            .map(|d| d.into_owned())
    };
    let info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: range(".text"),
        text: data(".text"),
        got_svma: range(".got"),
        eh_frame_svma: range(".eh_frame"),
        eh_frame: data(".eh_frame"),
        eh_frame_hdr_svma: range(".eh_frame_hdr"),
        eh_frame_hdr: data(".eh_frame_hdr"),
        debug_frame: data(".debug_frame"),
        ..Default::default()
    };
    if info.eh_frame.is_none() && info.debug_frame.is_none() {
        return None;
    }
    Some(Module::new(m.path.clone(), m.start..m.end, base_avma, info))
}

/// The child side: unwinds each copy with the CFI of the process's
/// binaries. An empty stack where nothing could be unwound.
pub fn unwind_all(pid: u32, copies: &[CopyReq]) -> Vec<Vec<u64>> {
    let mut unwinder: UnwinderX86_64<Vec<u8>> = UnwinderX86_64::new();
    let maps = exec_mappings(pid);
    let copies: Vec<(&CopyReq, Vec<u8>)> = copies.iter().map(|c| (c, unhex(&c.data))).collect();
    // Only the binaries a frame can be in: the one holding a sampled ip,
    // and those holding a word of a copied stack (return addresses are
    // such words). A process that maps hundreds of large libraries does
    // not get them all read.
    let mut wanted: HashSet<usize> = HashSet::new();
    for (c, data) in &copies {
        let words = data
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        for a in std::iter::once(c.ip).chain(words) {
            if let Some(i) = maps.iter().position(|m| (m.start..m.end).contains(&a)) {
                wanted.insert(i);
            }
        }
    }
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut n = 0usize;
    for (i, m) in maps.iter().enumerate() {
        if !wanted.contains(&i) || !seen.insert((m.start, m.end)) {
            continue;
        }
        if n >= crate::limits::UNWIND_MODULES_MAX {
            crate::limits::UNWIND_MODULES.hit();
            break;
        }
        if let Some(md) = module(pid, m) {
            unwinder.add_module(md);
            n += 1;
        }
    }
    let mut cache = CacheX86_64::<_>::new();
    copies
        .iter()
        .map(|(c, data)| {
            let base = c.base;
            let mut read = |addr: u64| -> Result<u64, ()> {
                let off = addr.checked_sub(base).ok_or(())? as usize;
                let b = data.get(off..off.checked_add(8).ok_or(())?).ok_or(())?;
                Ok(u64::from_le_bytes(b.try_into().map_err(|_| ())?))
            };
            let regs = UnwindRegsX86_64::new(c.ip, c.sp, c.bp);
            let mut it = unwinder.iter_frames(c.ip, regs, &mut cache, &mut read);
            let mut ips = Vec::new();
            while let Ok(Some(f)) = it.next() {
                ips.push(f.address());
                if ips.len() >= MAX_FRAMES {
                    break;
                }
            }
            ips
        })
        .collect()
}

/// Replaces frame-pointer stacks by CFI-unwound ones where the copies of
/// the same samples unwind deeper, and merges the counts per unique stack.
/// `fp`: (stack id, frame-pointer ips, sampled faults); `unwound[i]`: the
/// CFI stack of `copies[i]`. A stack id's count is split between the
/// distinct CFI stacks of its copies in proportion to their copies.
/// For each frame-pointer stack id: the stack its copies unwound to most
/// often where that goes at least as deep, else the frame-pointer stack.
/// (The Python frames of a sample are keyed by this id.)
pub fn best_by_id(
    fp: &[(u32, Vec<u64>, u64)],
    copies: &[RawCopy],
    unwound: &[Vec<u64>],
) -> HashMap<u32, Vec<u64>> {
    let mut out = HashMap::new();
    for (id, ips, _) in fp {
        let mut alts: HashMap<&Vec<u64>, u64> = HashMap::new();
        for (c, u) in copies.iter().zip(unwound) {
            if c.stack_id == *id && u.len() >= ips.len() && !u.is_empty() {
                *alts.entry(u).or_default() += 1;
            }
        }
        let best = alts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(s, _)| s.clone())
            .unwrap_or_else(|| ips.clone());
        out.insert(*id, best);
    }
    out
}

pub fn merge(fp: &[(u32, Vec<u64>, u64)], copies: &[RawCopy], unwound: &[Vec<u64>]) -> Vec<(Vec<u64>, u64)> {
    let mut out: HashMap<Vec<u64>, u64> = HashMap::new();
    for (id, ips, count) in fp {
        // Per distinct stack of this id's copies: how many copies.
        let mut alts: Vec<(Vec<u64>, u64)> = Vec::new();
        for (c, u) in copies.iter().zip(unwound) {
            if c.stack_id != *id {
                continue;
            }
            let best = if u.len() >= ips.len() && !u.is_empty() {
                u
            } else {
                ips
            };
            match alts.iter_mut().find(|(s, _)| s == best) {
                Some(a) => a.1 += 1,
                None => alts.push((best.clone(), 1)),
            }
        }
        if alts.is_empty() {
            *out.entry(ips.clone()).or_default() += count;
            continue;
        }
        let total: u64 = alts.iter().map(|a| a.1).sum();
        let mut given = 0;
        for (i, (s, n)) in alts.iter().enumerate() {
            let share = if i + 1 == alts.len() {
                count - given
            } else {
                count * n / total
            };
            given += share;
            if share > 0 {
                *out.entry(s.clone()).or_default() += share;
            }
        }
    }
    let mut v: Vec<(Vec<u64>, u64)> = out.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(id: u32) -> RawCopy {
        RawCopy {
            stack_id: id,
            ip: 1,
            sp: 0,
            bp: 0,
            base: 0,
            data: vec![],
        }
    }

    #[test]
    fn deeper_cfi_stacks_replace_frame_pointer_stacks_and_counts_merge() {
        let fp = vec![(7, vec![1, 99], 10), (8, vec![5, 6, 7], 4), (9, vec![1, 2], 3)];
        let copies = vec![copy(7), copy(7), copy(8), copy(9)];
        let unwound = vec![vec![1, 2, 3], vec![1, 2, 3], vec![5], vec![1, 2, 3]];
        let m = merge(&fp, &copies, &unwound);
        // id 7 and 9 unwind to the same deeper stack; id 8's CFI stack is
        // shorter, so its frame-pointer stack stays.
        assert_eq!(m, vec![(vec![1, 2, 3], 13), (vec![5, 6, 7], 4)]);
    }

    /// The end of the mapping holding `addr` in this process.
    fn mapping_end(addr: u64) -> u64 {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        for l in maps.lines() {
            let r = l.split_ascii_whitespace().next().unwrap();
            let (a, b) = r.split_once('-').unwrap();
            let (a, b) = (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            );
            if (a..b).contains(&addr) {
                return b;
            }
        }
        panic!("{addr:#x} is not mapped");
    }

    /// Copies this thread's stack as the kernel would and unwinds it with
    /// the test binary's own .eh_frame: the module loading and its base
    /// address (a PIE binary) must be right for more than one frame.
    #[test]
    #[inline(never)]
    fn unwinds_its_own_stack_with_cfi() {
        let (ip, sp, bp): (u64, u64, u64);
        // SAFETY: reads rip, rsp and rbp into registers; no memory access.
        unsafe {
            std::arch::asm!(
                "lea {ip}, [rip]",
                "mov {sp}, rsp",
                "mov {bp}, rbp",
                ip = out(reg) ip,
                sp = out(reg) sp,
                bp = out(reg) bp,
            );
        }
        let base = sp & !(leaktrace_common::STACK_COPY_CHUNK as u64 - 1);
        let len = (mapping_end(sp) - base).min(leaktrace_common::STACK_COPY_BYTES as u64) as usize;
        // SAFETY: [base, base + len) lies inside this thread's mapped stack
        // (clamped to the end of its mapping), and is only read.
        let data = unsafe { std::slice::from_raw_parts(base as *const u8, len) }.to_vec();
        let c = RawCopy {
            stack_id: 0,
            ip,
            sp,
            bp,
            base,
            data,
        };
        let u = unwind_all(std::process::id(), &[CopyReq::from(&c)]);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].first(), Some(&ip));
        assert!(u[0].len() >= 6, "only {} frames: {:x?}", u[0].len(), u[0]);
    }

    #[test]
    fn hex_round_trips() {
        let c = RawCopy {
            data: vec![0, 1, 0xab, 0xff],
            ..copy(1)
        };
        assert_eq!(unhex(&CopyReq::from(&c).data), c.data);
    }
}
