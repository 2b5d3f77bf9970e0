//! A lean reader of kernel BTF (`/sys/kernel/btf/vmlinux`): struct member
//! offsets and enum values, looked up in the raw bytes through an index of
//! where each type starts. Nothing is decoded that is not asked for, so a
//! 5 MiB vmlinux BTF costs its bytes and a 4-byte offset per type.
//!
//! Rust eBPF programs get no CO-RE relocations, so the loader looks the
//! offsets up here and hands them to the programs as globals. It also
//! builds a skeleton of the BTF for aya, which only needs the ids of the
//! attach targets: the same ids, without the members (docs/performance.md
//! says why: a full parse costs 25 MB of peak RSS).
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("not BTF data (bad magic or header)")]
    BadHeader,
    #[error("BTF data truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown BTF kind {0}")]
    UnknownKind(u32),
    #[error("struct {0} not found in kernel BTF")]
    NoStruct(String),
    #[error("member {member} not found in struct {strukt}")]
    NoMember { strukt: String, member: String },
    #[error("enum value {0} not found in kernel BTF")]
    NoEnumValue(String),
}

pub const KIND_INT: u32 = 1;
pub const KIND_PTR: u32 = 2;
pub const KIND_ARRAY: u32 = 3;
pub const KIND_STRUCT: u32 = 4;
pub const KIND_UNION: u32 = 5;
pub const KIND_ENUM: u32 = 6;
pub const KIND_FWD: u32 = 7;
pub const KIND_TYPEDEF: u32 = 8;
pub const KIND_VOLATILE: u32 = 9;
pub const KIND_CONST: u32 = 10;
pub const KIND_RESTRICT: u32 = 11;
pub const KIND_FUNC: u32 = 12;
pub const KIND_FUNC_PROTO: u32 = 13;
pub const KIND_VAR: u32 = 14;
pub const KIND_DATASEC: u32 = 15;
pub const KIND_FLOAT: u32 = 16;
pub const KIND_DECL_TAG: u32 = 17;
pub const KIND_TYPE_TAG: u32 = 18;
pub const KIND_ENUM64: u32 = 19;

fn rd(d: &[u8], off: usize) -> Result<u32, BtfError> {
    d.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Truncated(off))
}

pub struct Btf {
    data: Vec<u8>,
    hdr_len: usize,
    types_at: usize,
    strings_at: usize,
    strings_len: usize,
    /// Byte offset (in `data`) of type id i; index 0 is the implicit void.
    offs: Vec<u32>,
}

/// A member of a struct or union.
pub struct Member<'a> {
    pub name: &'a [u8],
    pub type_id: u32,
    /// Offset in bits from the start of the enclosing struct.
    pub bit_offset: u32,
}

impl Btf {
    pub fn from_sys_fs() -> anyhow::Result<Self> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux")?;
        Ok(Self::parse(data)?)
    }

    pub fn parse(data: Vec<u8>) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != 0xeb9f {
            return Err(BtfError::BadHeader);
        }
        let hdr_len = rd(&data, 4)? as usize;
        let type_off = rd(&data, 8)? as usize;
        let type_len = rd(&data, 12)? as usize;
        let str_off = rd(&data, 16)? as usize;
        let str_len = rd(&data, 20)? as usize;
        let types_at = hdr_len + type_off;
        let strings_at = hdr_len + str_off;
        if types_at + type_len > data.len() || strings_at + str_len > data.len() {
            return Err(BtfError::Truncated(data.len()));
        }
        let mut offs = vec![0u32];
        let mut at = types_at;
        let end = types_at + type_len;
        while at < end {
            offs.push(at as u32);
            let info = rd(&data, at + 4)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            at += 12
                + match kind {
                    KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                    KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                    | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                    KIND_ARRAY => 12,
                    KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                    KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                    k => return Err(BtfError::UnknownKind(k)),
                };
        }
        Ok(Self {
            data,
            hdr_len,
            types_at,
            strings_at,
            strings_len: str_len,
            offs,
        })
    }

    fn at(&self, id: u32) -> Option<usize> {
        self.offs
            .get(id as usize)
            .copied()
            .filter(|o| *o != 0)
            .map(|o| o as usize)
    }

    fn word(&self, off: usize) -> u32 {
        rd(&self.data, off).unwrap_or(0)
    }

    pub fn kind(&self, id: u32) -> u32 {
        self.at(id).map_or(0, |o| (self.word(o + 4) >> 24) & 0x1f)
    }

    fn vlen(&self, id: u32) -> usize {
        self.at(id).map_or(0, |o| (self.word(o + 4) & 0xffff) as usize)
    }

    fn str_at(&self, off: u32) -> &[u8] {
        let s = self
            .data
            .get(self.strings_at + off as usize..self.strings_at + self.strings_len)
            .unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    }

    pub fn name(&self, id: u32) -> &[u8] {
        self.at(id).map_or(&[][..], |o| self.str_at(self.word(o)))
    }

    /// size (struct, union, int, enum) or referenced type (ptr, typedef...).
    fn size_or_type(&self, id: u32) -> u32 {
        self.at(id).map_or(0, |o| self.word(o + 8))
    }

    /// Follows typedef/const/volatile/restrict/type_tag chains.
    pub fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.kind(id) {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = self.size_or_type(id)
                }
                _ => break,
            }
        }
        id
    }

    /// (element type, number of elements) of an array type.
    pub fn array(&self, id: u32) -> Option<(u32, u32)> {
        let o = self.at(id).filter(|_| self.kind(id) == KIND_ARRAY)?;
        Some((self.word(o + 12), self.word(o + 20)))
    }

    pub fn size_of(&self, id: u32) -> Option<u32> {
        let id = self.resolve(id);
        match self.kind(id) {
            KIND_STRUCT | KIND_UNION | KIND_INT | KIND_ENUM | KIND_ENUM64 | KIND_FLOAT => {
                Some(self.size_or_type(id))
            }
            KIND_PTR => Some(8),
            KIND_ARRAY => {
                let (elem, n) = self.array(id)?;
                Some(self.size_of(elem)? * n)
            }
            _ => None,
        }
    }

    pub fn members(&self, id: u32) -> impl Iterator<Item = Member<'_>> {
        let id = self.resolve(id);
        let kind = self.kind(id);
        let (o, n) = match (kind, self.at(id)) {
            (KIND_STRUCT | KIND_UNION, Some(o)) => (o, self.vlen(id)),
            _ => (0, 0),
        };
        let bitfields = self.at(id).is_some_and(|o| self.word(o + 4) >> 31 == 1);
        (0..n).map(move |i| {
            let m = o + 12 + 12 * i;
            let off = self.word(m + 8);
            Member {
                name: self.str_at(self.word(m)),
                type_id: self.word(m + 4),
                bit_offset: if bitfields { off & 0x00ff_ffff } else { off },
            }
        })
    }

    /// The number of arguments a raw tracepoint's BTF prototype has
    /// (`btf_trace_<event>`: typedef -> pointer -> func_proto), the leading
    /// `void *` included.
    pub fn tracepoint_args(&self, event: &str) -> Option<usize> {
        let name = format!("btf_trace_{event}");
        let id = (1..self.offs.len() as u32)
            .find(|&id| self.kind(id) == KIND_TYPEDEF && self.name(id) == name.as_bytes())?;
        let ptr = self.resolve(id);
        if self.kind(ptr) != KIND_PTR {
            return None;
        }
        let proto = self.resolve(self.size_or_type(ptr));
        (self.kind(proto) == KIND_FUNC_PROTO).then(|| self.vlen(proto))
    }

    /// The struct with this name that has members (a complete definition).
    pub fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        (1..self.offs.len() as u32)
            .find(|&id| self.kind(id) == KIND_STRUCT && self.vlen(id) > 0 && self.name(id) == name.as_bytes())
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))
    }

    /// Byte offset and type of `member` in struct `strukt`, looking through
    /// anonymous structs and unions (mm_struct keeps all its fields in one).
    pub fn member(&self, strukt: &str, member: &str) -> Result<(u32, u32), BtfError> {
        let id = self.struct_id(strukt)?;
        self.find_member(id, member.as_bytes(), 0, 0)
            .map(|(bits, ty)| (bits / 8, ty))
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.into(),
                member: member.into(),
            })
    }

    fn find_member(&self, id: u32, member: &[u8], base_bits: u32, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        if let Some(m) = self.members(id).find(|m| m.name == member) {
            return Some((base_bits + m.bit_offset, m.type_id));
        }
        let anon: Vec<(u32, u32)> = self
            .members(id)
            .filter(|m| m.name.is_empty())
            .map(|m| (m.type_id, m.bit_offset))
            .collect();
        anon.into_iter()
            .find_map(|(ty, off)| self.find_member(ty, member, base_bits + off, depth + 1))
    }

    pub fn enum_value(&self, name: &str) -> Result<i64, BtfError> {
        for id in 1..self.offs.len() as u32 {
            if self.kind(id) != KIND_ENUM {
                continue;
            }
            let Some(o) = self.at(id) else { continue };
            for i in 0..self.vlen(id) {
                let e = o + 12 + 8 * i;
                if self.str_at(self.word(e)) == name.as_bytes() {
                    return Ok(self.word(e + 4) as i32 as i64);
                }
            }
        }
        Err(BtfError::NoEnumValue(name.into()))
    }

    /// The same BTF with every type id in place but only these (name, kind)
    /// types named, and nothing else described: each other type becomes an
    /// anonymous forward declaration. Enough for aya to find attach
    /// targets by name, at a fraction of the memory of a full parse.
    pub fn skeleton(&self, keep: &[(&str, u32)]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut types = Vec::with_capacity(12 * self.offs.len());
        for id in 1..self.offs.len() as u32 {
            let (kind, name) = (self.kind(id), self.name(id));
            let (name_off, info) = match keep.iter().find(|(n, k)| *k == kind && n.as_bytes() == name) {
                Some(_) => {
                    let off = strings.len() as u32;
                    strings.extend_from_slice(name);
                    strings.push(0);
                    (off, kind << 24)
                }
                None => (0, KIND_FWD << 24),
            };
            types.extend_from_slice(&name_off.to_le_bytes());
            types.extend_from_slice(&info.to_le_bytes());
            types.extend_from_slice(&0u32.to_le_bytes());
        }
        let hdr = self.hdr_len.max(24);
        let mut out = Vec::with_capacity(hdr + types.len() + strings.len());
        out.extend_from_slice(&self.data[..8.min(self.data.len())]);
        out.truncate(4);
        out.extend_from_slice(&(hdr as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // type_off
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes()); // str_off
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.resize(hdr, 0);
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        let _ = self.types_at;
        out
    }
}

/// Where the RSS counters live, for the tp_btf rss_stat program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssLayout {
    pub mm_owner_off: u64,
    pub task_tgid_off: u64,
    pub mm_rss_off: u64,
    /// Distance between two counters.
    pub stride: u64,
    /// Offset of the 64-bit count inside one counter.
    pub count_off: u64,
}

impl RssLayout {
    /// Kernels ≥ 6.2 keep `struct percpu_counter rss_stat[NR_MM_COUNTERS]`
    /// (its `count` is the folded value, within one batch per CPU of the
    /// exact sum, the same value /proc/<pid>/status shows). Older kernels
    /// keep `struct mm_rss_stat { atomic_long_t count[NR_MM_COUNTERS]; }`.
    pub fn from_btf(btf: &Btf) -> Result<Self, BtfError> {
        let (mm_owner_off, _) = btf.member("mm_struct", "owner")?;
        let (task_tgid_off, _) = btf.member("task_struct", "tgid")?;
        let (mm_rss_off, rss_ty) = btf.member("mm_struct", "rss_stat")?;
        let rss_ty = btf.resolve(rss_ty);
        let (stride, count_off) = match btf.kind(rss_ty) {
            KIND_ARRAY => {
                // percpu_counter[]
                let (elem, _) = btf.array(rss_ty).unwrap_or_default();
                let stride = btf.size_of(btf.resolve(elem)).unwrap_or(0) as u64;
                let (count_off, _) = btf.member("percpu_counter", "count")?;
                (stride, count_off as u64)
            }
            KIND_STRUCT => {
                // mm_rss_stat { atomic_long_t count[]; }
                let (count_off, _) = btf.member("mm_rss_stat", "count")?;
                (8, count_off as u64)
            }
            _ => {
                return Err(BtfError::NoMember {
                    strukt: "mm_struct".into(),
                    member: "rss_stat (unknown type)".into(),
                })
            }
        };
        if stride == 0 {
            return Err(BtfError::NoMember {
                strukt: "percpu_counter".into(),
                member: "size".into(),
            });
        }
        Ok(Self {
            mm_owner_off: mm_owner_off as u64,
            task_tgid_off: task_tgid_off as u64,
            mm_rss_off: mm_rss_off as u64,
            stride,
            count_off,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 6.2 and later (this host is 6.18): rss_stat's prototype is
    /// (void *, mm, member); the kernel's BTF says so.
    #[test]
    fn running_kernel_rss_stat_prototype() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("skipping: /sys/kernel/btf/vmlinux not readable");
            return;
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = release.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
        let want = if (major, minor) >= (6, 2) { 3 } else { 4 };
        assert_eq!(btf.tracepoint_args("rss_stat"), Some(want), "kernel {release}");
        assert_eq!(btf.tracepoint_args("no_such_event_here"), None);
    }

    /// Builds a tiny BTF blob by hand: int, a struct with an anonymous union.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0inner\0E_ONE\0".to_vec();
        let s = |name: &str| -> u32 {
            let pos = strings
                .windows(name.len() + 1)
                .position(|w| &w[..name.len()] == name.as_bytes() && w[name.len()] == 0);
            pos.unwrap() as u32
        };
        let mut t = Vec::new();
        let push = |t: &mut Vec<u8>, v: u32| t.extend_from_slice(&v.to_le_bytes());
        // 1: int (4 bytes)
        push(&mut t, s("int"));
        push(&mut t, KIND_INT << 24);
        push(&mut t, 4);
        push(&mut t, 32);
        // 2: union { int inner; } (anonymous)
        push(&mut t, 0);
        push(&mut t, (KIND_UNION << 24) | 1);
        push(&mut t, 4);
        push(&mut t, s("inner"));
        push(&mut t, 1);
        push(&mut t, 0);
        // 3: struct outer { int a; int b; union {int inner;}; }
        push(&mut t, s("outer"));
        push(&mut t, (KIND_STRUCT << 24) | 3);
        push(&mut t, 12);
        for (n, ty, off) in [(s("a"), 1, 0), (s("b"), 1, 32), (0, 2, 64)] {
            push(&mut t, n);
            push(&mut t, ty);
            push(&mut t, off);
        }
        // 4: enum { E_ONE = 1 }
        push(&mut t, 0);
        push(&mut t, (KIND_ENUM << 24) | 1);
        push(&mut t, 4);
        push(&mut t, s("E_ONE"));
        push(&mut t, 1);
        let mut d = Vec::new();
        d.extend_from_slice(&0xeb9fu16.to_le_bytes());
        d.push(1);
        d.push(0);
        for v in [24u32, 0, t.len() as u32, t.len() as u32, strings.len() as u32] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(&t);
        d.extend_from_slice(&strings);
        d
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = Btf::parse(blob()).unwrap();
        assert_eq!(btf.member("outer", "a").unwrap().0, 0);
        assert_eq!(btf.member("outer", "b").unwrap().0, 4);
        assert_eq!(btf.member("outer", "inner").unwrap().0, 8);
        assert!(btf.member("outer", "nope").is_err());
        assert_eq!(btf.enum_value("E_ONE").unwrap(), 1);
        assert_eq!(btf.size_of(3), Some(12));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, clearly not".to_vec()).is_err());
        let mut b = blob();
        b.truncate(40);
        assert!(Btf::parse(b).is_err());
    }

    /// The running kernel's BTF (present on every machine leaktrace supports).
    #[test]
    fn running_kernel_rss_layout() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("skipping: /sys/kernel/btf/vmlinux not readable");
            return;
        };
        let l = RssLayout::from_btf(&btf).expect("rss layout from kernel BTF");
        assert!(l.stride >= 8 && l.stride <= 128, "{l:?}");
        assert_eq!(btf.enum_value("MM_ANONPAGES").unwrap(), 1);
        // The skeleton keeps every id and names only what was asked.
        let sk = btf.skeleton(&[("bpf_iter_task", KIND_FUNC), ("btf_trace_rss_stat", KIND_TYPEDEF)]);
        assert!(
            sk.len() < btf.data.len() / 2,
            "{} vs {}",
            sk.len(),
            btf.data.len()
        );
        let want = (1..btf.offs.len() as u32)
            .find(|&id| btf.kind(id) == KIND_FUNC && btf.name(id) == b"bpf_iter_task")
            .unwrap();
        let skb = Btf::parse(sk.clone()).unwrap();
        assert_eq!(skb.offs.len(), btf.offs.len());
        assert_eq!(
            (skb.kind(want), skb.name(want)),
            (KIND_FUNC, &b"bpf_iter_task"[..])
        );
        assert_eq!(skb.name(want + 1), b"");
        aya::Btf::parse(&sk, aya::Endianness::default()).expect("aya parses the skeleton");
    }
}
