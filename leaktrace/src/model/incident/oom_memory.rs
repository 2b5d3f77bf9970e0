//! What memory was made of at an OOM, from the kernel's own report: the
//! "Memory cgroup stats for <memcg>:" block (memory.stat, bytes) of a
//! memcg OOM, or the "Mem-Info:" block (pages) and "Unreclaimable slab
//! info:" table of a host OOM (mm/show_mem.c, mm/slab_common.c).
//!
//! The kernel prints these whether or not leaktrace followed the memcg,
//! and they say what killing a process cannot free: shmem (tmpfs, shared
//! memory) and unreclaimable slab. Key lists differ across versions and
//! configs, so both blocks are read as generic "key value" pairs, kept
//! bounded, and turned into named fields here.
use serde::{Deserialize, Serialize};

/// At most this many keys are kept from one block...
const MAX_KEYS: usize = 160;
/// ...and this many slab caches from the unreclaimable slab table.
const MAX_CACHES: usize = 256;
/// The incident names the largest this many caches.
const TOP_CACHES: usize = 5;

/// The report's memory blocks as printed, for `OomMemory::from_report`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryBlocks {
    /// memory.stat of the OOM memcg ("anon 123", bytes; v1 "rss", "cache").
    pub memcg_stat: Vec<(String, u64)>,
    /// Mem-Info ("active_anon:326", pages).
    pub mem_info: Vec<(String, u64)>,
    /// Unreclaimable slab info: (cache, used kB, total kB).
    pub slab: Vec<(String, u64, u64)>,
    /// Keys or rows past the bounds.
    pub dropped: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Section {
    #[default]
    None,
    MemcgStat,
    MemInfo,
    SlabHeader,
    Slab,
}

/// Reads the memory blocks line by line, alongside the rest of the parse.
#[derive(Debug, Default)]
pub struct BlockReader {
    section: Section,
    pub blocks: MemoryBlocks,
}

impl BlockReader {
    /// Takes `l` (prefix already stripped) if it belongs to a memory block.
    pub fn feed(&mut self, l: &str) -> bool {
        let t = l.trim();
        if let Some(rest) = t.strip_prefix("Memory cgroup stats for ") {
            // The header is printed without its newline, so the first
            // stat can follow on the same line: "...for /a:cache 1887".
            // (The path itself may hold ':'.)
            if rest.ends_with(':') {
                self.section = Section::MemcgStat;
                return true;
            }
            if let Some((_, first)) = rest.rsplit_once(':') {
                self.section = Section::MemcgStat;
                self.stat_line(first);
                return true;
            }
        }
        if t == "Mem-Info:" {
            self.section = Section::MemInfo;
            return true;
        }
        if t == "Unreclaimable slab info:" {
            self.section = Section::SlabHeader;
            return true;
        }
        match self.section {
            Section::None => false,
            Section::MemcgStat => self.stat_line(t),
            Section::MemInfo => self.mem_info_line(t),
            Section::SlabHeader => {
                self.section = if t.starts_with("Name") { Section::Slab } else { Section::None };
                self.section == Section::Slab
            }
            Section::Slab => self.slab_line(t),
        }
    }

    /// "anon 123": one key, one number. Anything else ends the block.
    fn stat_line(&mut self, t: &str) -> bool {
        let mut it = t.split_whitespace();
        let pair = match (it.next(), it.next(), it.next()) {
            (Some(k), Some(v), None) if is_key(k) => v.parse::<u64>().ok().map(|v| (k, v)),
            _ => None,
        };
        let Some((k, v)) = pair else {
            self.section = Section::None;
            return false;
        };
        push_bounded(&mut self.blocks.memcg_stat, (k.to_string(), v), MAX_KEYS, &mut self.blocks.dropped);
        true
    }

    /// "slab_reclaimable:41207 slab_unreclaimable:88560": key:pages pairs.
    /// The per-node lines ("Node 0 active_anon:1304kB ...") end the block.
    fn mem_info_line(&mut self, t: &str) -> bool {
        let pairs: Vec<(&str, u64)> = t
            .split_whitespace()
            .filter_map(|w| {
                let (k, v) = w.split_once(':')?;
                Some((k, v.parse().ok()?)).filter(|_| is_key(k))
            })
            .collect();
        if pairs.is_empty() || t.starts_with("Node ") {
            self.section = Section::None;
            return false;
        }
        for (k, v) in pairs {
            push_bounded(&mut self.blocks.mem_info, (k.to_string(), v), MAX_KEYS, &mut self.blocks.dropped);
        }
        true
    }

    /// "dentry   123456KB   130000KB": a cache, used and total.
    fn slab_line(&mut self, t: &str) -> bool {
        let w: Vec<&str> = t.split_whitespace().collect();
        let kb = |s: &str| s.strip_suffix("KB").and_then(|n| n.parse::<u64>().ok());
        let row = match w.as_slice() {
            [name, used, total] => kb(used).zip(kb(total)).map(|(u, tot)| (name.to_string(), u, tot)),
            _ => None,
        };
        let Some(row) = row else {
            self.section = Section::None;
            return false;
        };
        push_bounded(&mut self.blocks.slab, row, MAX_CACHES, &mut self.blocks.dropped);
        true
    }
}

fn is_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= 48 && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn push_bounded<T>(v: &mut Vec<T>, x: T, cap: usize, dropped: &mut usize) {
    if v.len() < cap {
        v.push(x);
    } else {
        *dropped += 1;
    }
}

/// Where the numbers are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemoryScope {
    /// The OOM memcg's memory.stat.
    Memcg,
    /// The whole host (Mem-Info).
    Host,
}

/// A slab cache from the kernel's unreclaimable slab table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SlabCache {
    pub name: String,
    pub used_bytes: u64,
    pub total_bytes: u64,
}

/// What memory was made of at the OOM, as the kernel reported it, bytes.
/// A field the kernel did not print is null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OomMemory {
    pub scope: MemoryScope,
    /// Anonymous memory (process heaps and stacks), shmem excluded.
    pub anon_bytes: Option<u64>,
    /// Page cache, shmem excluded.
    pub file_bytes: Option<u64>,
    /// tmpfs, /dev/shm, SysV and POSIX shared memory: a kill frees it
    /// only when no file or mapping holds it any more.
    pub shmem_bytes: Option<u64>,
    pub slab_reclaimable_bytes: Option<u64>,
    pub slab_unreclaimable_bytes: Option<u64>,
    pub pagetables_bytes: Option<u64>,
    pub kernel_stack_bytes: Option<u64>,
    /// Host only: free pages.
    pub free_bytes: Option<u64>,
    /// The sum of the parts above (free excluded).
    pub total_bytes: u64,
    /// The largest unreclaimable slab caches (host OOMs whose slab
    /// outgrew user memory; the kernel prints the table only then).
    pub top_slab_caches: Vec<SlabCache>,
    /// Keys or rows past the parser's bounds.
    pub dropped: usize,
}

impl OomMemory {
    /// The memcg block when there is one, else the host's; `page` is the
    /// page size for Mem-Info's page counts.
    pub fn from_blocks(b: &MemoryBlocks, page: u64) -> Option<Self> {
        let mut m = if !b.memcg_stat.is_empty() {
            from_memcg_stat(&b.memcg_stat)
        } else if !b.mem_info.is_empty() {
            from_mem_info(&b.mem_info, page)
        } else {
            return None;
        };
        let mut caches: Vec<SlabCache> = b
            .slab
            .iter()
            .map(|(n, u, t)| SlabCache {
                name: n.clone(),
                used_bytes: u.saturating_mul(1024),
                total_bytes: t.saturating_mul(1024),
            })
            .collect();
        caches.sort_by(|a, b| b.total_bytes.cmp(&a.total_bytes).then(a.name.cmp(&b.name)));
        caches.truncate(TOP_CACHES);
        m.top_slab_caches = caches;
        m.dropped = b.dropped;
        m.total_bytes = [
            m.anon_bytes,
            m.file_bytes,
            m.shmem_bytes,
            m.slab_reclaimable_bytes,
            m.slab_unreclaimable_bytes,
            m.pagetables_bytes,
            m.kernel_stack_bytes,
        ]
        .iter()
        .flatten()
        .fold(0u64, |a, v| a.saturating_add(*v));
        Some(m)
    }

    /// The part that dominates, when it is one a kill may not free: shmem
    /// or unreclaimable slab at 40% or more. (name, share 0..1, bytes).
    pub fn unfreeable_part(&self) -> Option<(&'static str, f64, u64)> {
        if self.total_bytes == 0 {
            return None;
        }
        [
            ("shmem (tmpfs or shared memory)", self.shmem_bytes),
            ("unreclaimable slab (kernel objects)", self.slab_unreclaimable_bytes),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.map(|v| (n, v as f64 / self.total_bytes as f64, v)))
        .filter(|p| p.1 >= 0.4)
        .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

fn get(kv: &[(String, u64)], key: &str) -> Option<u64> {
    kv.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn empty(scope: MemoryScope) -> OomMemory {
    OomMemory {
        scope,
        anon_bytes: None,
        file_bytes: None,
        shmem_bytes: None,
        slab_reclaimable_bytes: None,
        slab_unreclaimable_bytes: None,
        pagetables_bytes: None,
        kernel_stack_bytes: None,
        free_bytes: None,
        total_bytes: 0,
        top_slab_caches: Vec::new(),
        dropped: 0,
    }
}

/// memory.stat: v2 names (anon, file, shmem, slab_*, pagetables,
/// kernel_stack) or v1's (rss, cache, shmem; cache includes shmem, and v1
/// prints no slab: its "kmem: usage" line is not read here).
fn from_memcg_stat(kv: &[(String, u64)]) -> OomMemory {
    let mut m = empty(MemoryScope::Memcg);
    m.shmem_bytes = get(kv, "shmem");
    let shmem = m.shmem_bytes.unwrap_or(0);
    if get(kv, "anon").is_some() {
        m.anon_bytes = get(kv, "anon");
        // v2's file includes shmem.
        m.file_bytes = get(kv, "file").map(|f| f.saturating_sub(shmem));
        m.slab_reclaimable_bytes = get(kv, "slab_reclaimable");
        m.slab_unreclaimable_bytes = get(kv, "slab_unreclaimable");
        m.pagetables_bytes = get(kv, "pagetables");
        m.kernel_stack_bytes = get(kv, "kernel_stack");
    } else {
        // v1: the OOM memcg's own counters and, as total_*, with its
        // children's; the OOM concerns the whole subtree.
        let v1 = |k: &str| get(kv, &format!("total_{k}")).or_else(|| get(kv, k));
        m.shmem_bytes = v1("shmem");
        let shmem = m.shmem_bytes.unwrap_or(0);
        m.anon_bytes = v1("rss");
        m.file_bytes = v1("cache").map(|c| c.saturating_sub(shmem));
    }
    m
}

/// Mem-Info, in pages: anon and file are active + inactive; the kernel
/// counts shmem in inactive/active anon (it is swap-backed), so it is taken
/// out of anon here.
fn from_mem_info(kv: &[(String, u64)], page: u64) -> OomMemory {
    let b = |k: &str| get(kv, k).map(|p| p.saturating_mul(page));
    let sum = |a: &str, c: &str| match (b(a), b(c)) {
        (None, None) => None,
        (x, y) => Some(x.unwrap_or(0).saturating_add(y.unwrap_or(0))),
    };
    let mut m = empty(MemoryScope::Host);
    m.shmem_bytes = b("shmem");
    m.anon_bytes = sum("active_anon", "inactive_anon").map(|a| a.saturating_sub(m.shmem_bytes.unwrap_or(0)));
    m.file_bytes = sum("active_file", "inactive_file");
    m.slab_reclaimable_bytes = b("slab_reclaimable");
    m.slab_unreclaimable_bytes = b("slab_unreclaimable");
    m.pagetables_bytes = b("pagetables");
    m.free_bytes = b("free");
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> MemoryBlocks {
        let mut r = BlockReader::default();
        for l in text.lines() {
            r.feed(super::super::kernel_text::strip(l));
        }
        r.blocks
    }

    #[test]
    fn memcg_v2_block_is_named_and_shmem_dominates() {
        let b = read(
            "Memory cgroup stats for /app:\nanon 10485760\nfile 220200960\nkernel 4194304\n\
             kernel_stack 65536\npagetables 131072\nshmem 209715200\nslab_reclaimable 1048576\n\
             slab_unreclaimable 2097152\nTasks state (memory values in pages):",
        );
        let m = OomMemory::from_blocks(&b, 4096).unwrap();
        assert_eq!(m.scope, MemoryScope::Memcg);
        assert_eq!(m.anon_bytes, Some(10 << 20));
        assert_eq!(m.file_bytes, Some(10 << 20), "file without shmem");
        assert_eq!(m.shmem_bytes, Some(200 << 20));
        let (name, share, bytes) = m.unfreeable_part().unwrap();
        assert!(name.starts_with("shmem"));
        assert_eq!(bytes, 200 << 20);
        assert!(share > 0.8 && share < 0.9, "{share}");
    }

    #[test]
    fn a_first_stat_on_the_header_line_is_read() {
        // As 6.18's console tracepoint delivered it.
        let b = read("Memory cgroup stats for /a:b:cache 188743680\nrss 79036416\nshmem 188743680\ntotal_cache 188743680\ntotal_rss 79036416\ntotal_shmem 188743680");
        assert_eq!(b.memcg_stat[0], ("cache".to_string(), 188743680));
        let m = OomMemory::from_blocks(&b, 4096).unwrap();
        assert_eq!((m.shmem_bytes, m.file_bytes, m.anon_bytes), (Some(188743680), Some(0), Some(79036416)));
        assert!(m.unfreeable_part().unwrap().0.starts_with("shmem"));
    }

    #[test]
    fn memcg_v1_block_from_the_captured_report() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/oom/oom-6.18-memcg-v1-captured.txt"
        ))
        .unwrap();
        let m = OomMemory::from_blocks(&read(&text), 4096).unwrap();
        assert_eq!((m.scope, m.anon_bytes, m.file_bytes, m.shmem_bytes), (MemoryScope::Memcg, Some(66912256), Some(0), Some(0)));
        assert!(m.unfreeable_part().is_none());
    }

    #[test]
    fn host_mem_info_and_slab_table() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/oom/oom-5.15-global.txt"
        ))
        .unwrap();
        let mut b = read(&text);
        assert!(b.memcg_stat.is_empty());
        let m = OomMemory::from_blocks(&b, 4096).unwrap();
        assert_eq!(m.scope, MemoryScope::Host);
        assert_eq!(m.anon_bytes, Some((326 + 16233831 - 1520) * 4096));
        assert_eq!(m.slab_unreclaimable_bytes, Some(88560 * 4096));
        assert_eq!(m.free_bytes, Some(81482 * 4096));
        // A slab-bound host: the table names the caches, largest first.
        let mut r = BlockReader::default();
        for l in ["Unreclaimable slab info:", "Name                      Used          Total", "kmalloc-64   100KB  200KB", "shmem_inode_cache  830000KB  831000KB", "dentry  5000KB 6000KB", "Tasks state (memory values in pages):"] {
            r.feed(l);
        }
        b.slab = r.blocks.slab;
        let m = OomMemory::from_blocks(&b, 4096).unwrap();
        let names: Vec<&str> = m.top_slab_caches.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["shmem_inode_cache", "dentry", "kmalloc-64"]);
        assert_eq!(m.top_slab_caches[0].total_bytes, 831000 * 1024);
    }

    #[test]
    fn hostile_and_endless_blocks_are_bounded() {
        let mut r = BlockReader::default();
        r.feed("Memory cgroup stats for /x:");
        for i in 0..1000 {
            r.feed(&format!("key{i} {i}"));
        }
        assert_eq!(r.blocks.memcg_stat.len(), MAX_KEYS);
        assert_eq!(r.blocks.dropped, 1000 - MAX_KEYS);
        assert!(!r.feed("<script> 1"), "not a key: the block ends");
        assert!(!r.feed("anon 5"), "and stays ended");
    }
}
