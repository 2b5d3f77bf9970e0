//! A minimal reader of kernel BTF (`/sys/kernel/btf/vmlinux`), enough to find
//! struct member offsets and enum values at run time.
//!
//! Rust eBPF programs get no CO-RE relocations, so the loader looks the
//! offsets up here and hands them to the programs as globals. Only the parts
//! of the format needed for that are decoded; every other kind is skipped by
//! its documented size (Documentation/bpf/btf.rst).
use std::collections::HashMap;

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

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub type_id: u32,
    /// Offset in bits from the start of the enclosing struct.
    pub bit_offset: u32,
}

#[derive(Debug, Clone)]
pub enum Type {
    Struct {
        size: u32,
        members: Vec<Member>,
    },
    Union {
        size: u32,
        members: Vec<Member>,
    },
    Array {
        elem: u32,
        nelems: u32,
    },
    /// typedef/const/volatile/restrict/type_tag: points at another type.
    Alias(u32),
    Int {
        size: u32,
    },
    Ptr,
    Enum {
        values: Vec<(String, i64)>,
    },
    Other,
}

pub struct Btf {
    /// Index 0 is the implicit `void`.
    types: Vec<Type>,
    structs_by_name: HashMap<String, Vec<u32>>,
}

fn rd_u32(d: &[u8], off: usize) -> Result<u32, BtfError> {
    d.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Truncated(off))
}

fn cstr(strings: &[u8], off: u32) -> String {
    let s = strings.get(off as usize..).unwrap_or_default();
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

impl Btf {
    pub fn from_sys_fs() -> anyhow::Result<Self> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux")?;
        Ok(Self::parse(&data)?)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != 0xeb9f {
            return Err(BtfError::BadHeader);
        }
        let hdr_len = rd_u32(data, 4)? as usize;
        let type_off = rd_u32(data, 8)? as usize;
        let type_len = rd_u32(data, 12)? as usize;
        let str_off = rd_u32(data, 16)? as usize;
        let str_len = rd_u32(data, 20)? as usize;
        let types_sec = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Truncated(hdr_len + type_off))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Truncated(hdr_len + str_off))?;

        let mut types = vec![Type::Other];
        let mut structs_by_name: HashMap<String, Vec<u32>> = HashMap::new();
        let mut p = 0usize;
        while p < types_sec.len() {
            let name_off = rd_u32(types_sec, p)?;
            let info = rd_u32(types_sec, p + 4)?;
            let size_or_type = rd_u32(types_sec, p + 8)?;
            p += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let t = match kind {
                KIND_INT => {
                    p += 4;
                    Type::Int { size: size_or_type }
                }
                KIND_PTR => Type::Ptr,
                KIND_ARRAY => {
                    let elem = rd_u32(types_sec, p)?;
                    let nelems = rd_u32(types_sec, p + 8)?;
                    p += 12;
                    Type::Array { elem, nelems }
                }
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let m_name = rd_u32(types_sec, p)?;
                        let m_type = rd_u32(types_sec, p + 4)?;
                        let m_off = rd_u32(types_sec, p + 8)?;
                        p += 12;
                        members.push(Member {
                            name: cstr(strings, m_name),
                            type_id: m_type,
                            bit_offset: if kind_flag { m_off & 0x00ff_ffff } else { m_off },
                        });
                    }
                    let name = cstr(strings, name_off);
                    if kind == KIND_STRUCT {
                        if !name.is_empty() {
                            structs_by_name.entry(name).or_default().push(types.len() as u32);
                        }
                        Type::Struct {
                            size: size_or_type,
                            members,
                        }
                    } else {
                        Type::Union {
                            size: size_or_type,
                            members,
                        }
                    }
                }
                KIND_ENUM => {
                    let mut values = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let n = rd_u32(types_sec, p)?;
                        let v = rd_u32(types_sec, p + 4)? as i32 as i64;
                        p += 8;
                        values.push((cstr(strings, n), v));
                    }
                    Type::Enum { values }
                }
                KIND_ENUM64 => {
                    let mut values = Vec::with_capacity(vlen);
                    for _ in 0..vlen {
                        let n = rd_u32(types_sec, p)?;
                        let lo = rd_u32(types_sec, p + 4)? as u64;
                        let hi = rd_u32(types_sec, p + 8)? as u64;
                        p += 12;
                        values.push((cstr(strings, n), ((hi << 32) | lo) as i64));
                    }
                    Type::Enum { values }
                }
                KIND_FWD | KIND_FUNC | KIND_FLOAT => Type::Other,
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias(size_or_type)
                }
                KIND_FUNC_PROTO => {
                    p += 8 * vlen;
                    Type::Other
                }
                KIND_VAR => {
                    p += 4;
                    Type::Other
                }
                KIND_DATASEC => {
                    p += 12 * vlen;
                    Type::Other
                }
                KIND_DECL_TAG => {
                    p += 4;
                    Type::Other
                }
                k => return Err(BtfError::UnknownKind(k)),
            };
            types.push(t);
        }
        Ok(Self {
            types,
            structs_by_name,
        })
    }

    pub fn ty(&self, id: u32) -> &Type {
        self.types.get(id as usize).unwrap_or(&Type::Other)
    }

    /// Follows typedef/const/volatile chains.
    pub fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.ty(id) {
                Type::Alias(next) => id = *next,
                _ => break,
            }
        }
        id
    }

    pub fn size_of(&self, id: u32) -> Option<u32> {
        match self.ty(self.resolve(id)) {
            Type::Struct { size, .. } | Type::Union { size, .. } | Type::Int { size } => Some(*size),
            Type::Ptr => Some(8),
            Type::Enum { .. } => Some(4),
            Type::Array { elem, nelems } => Some(self.size_of(*elem)? * nelems),
            _ => None,
        }
    }

    /// The struct with this name that has members (a complete definition).
    pub fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        self.structs_by_name
            .get(name)
            .and_then(|ids| {
                ids.iter()
                    .copied()
                    .find(|&id| matches!(self.ty(id), Type::Struct { members, .. } if !members.is_empty()))
            })
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))
    }

    /// Byte offset and type of `member` in struct `strukt`, looking through
    /// anonymous structs and unions (mm_struct keeps all its fields in one).
    pub fn member(&self, strukt: &str, member: &str) -> Result<(u32, u32), BtfError> {
        let id = self.struct_id(strukt)?;
        self.find_member(id, member, 0, 0)
            .map(|(bits, ty)| (bits / 8, ty))
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.into(),
                member: member.into(),
            })
    }

    fn find_member(&self, id: u32, member: &str, base_bits: u32, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        let members = match self.ty(self.resolve(id)) {
            Type::Struct { members, .. } | Type::Union { members, .. } => members,
            _ => return None,
        };
        for m in members {
            if m.name == member {
                return Some((base_bits + m.bit_offset, m.type_id));
            }
        }
        for m in members.iter().filter(|m| m.name.is_empty()) {
            if let Some(found) = self.find_member(m.type_id, member, base_bits + m.bit_offset, depth + 1) {
                return Some(found);
            }
        }
        None
    }

    pub fn enum_value(&self, name: &str) -> Result<i64, BtfError> {
        self.types
            .iter()
            .find_map(|t| match t {
                Type::Enum { values } => values.iter().find(|(n, _)| n == name).map(|(_, v)| *v),
                _ => None,
            })
            .ok_or_else(|| BtfError::NoEnumValue(name.into()))
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
        let (stride, count_off) = match btf.ty(btf.resolve(rss_ty)) {
            Type::Array { elem, .. } => {
                // percpu_counter[]
                let elem = btf.resolve(*elem);
                let stride = btf.size_of(elem).unwrap_or(0) as u64;
                let (count_off, _) = btf.member("percpu_counter", "count")?;
                (stride, count_off as u64)
            }
            Type::Struct { .. } => {
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
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.member("outer", "a").unwrap().0, 0);
        assert_eq!(btf.member("outer", "b").unwrap().0, 4);
        assert_eq!(btf.member("outer", "inner").unwrap().0, 8);
        assert!(btf.member("outer", "nope").is_err());
        assert_eq!(btf.enum_value("E_ONE").unwrap(), 1);
        assert_eq!(btf.size_of(3), Some(12));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, clearly not").is_err());
        let mut b = blob();
        b.truncate(40);
        assert!(Btf::parse(&b).is_err());
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
    }
}
