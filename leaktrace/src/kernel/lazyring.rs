//! A BPF ring buffer that is mapped into leaktrace only while it is used.
//!
//! A ring buffer's data pages are mapped twice into the reader (that is how
//! BPF ring buffers wrap), and the kernel maps every page at mmap time: a
//! 4 MiB ring is 8 MiB of leaktrace's RSS from the moment it is mapped,
//! whether anything is ever written into it or not. The stack-copy ring
//! (4 MiB) and the CPython frames ring (2 MiB) are written only for
//! suspects, so they are mapped while there are suspects and unmapped
//! (after a last drain) when there have been none for `IDLE_TICKS`. The
//! ring's memory itself is the kernel's either way (docs/performance.md).
use std::os::fd::{AsFd, OwnedFd};

use aya::maps::{Map, MapData, RingBuf};

/// Calls to `idle()` without a user before the ring is unmapped.
const IDLE_TICKS: u32 = 10;

pub struct LazyRing {
    /// Our own reference to the map, to map it again later.
    fd: OwnedFd,
    ring: Option<RingBuf<MapData>>,
    idle: u32,
    name: &'static str,
}

impl LazyRing {
    /// Takes the map (not mapped yet). None if it is not a ring buffer.
    pub fn new(map: Map, name: &'static str) -> Option<Self> {
        let Map::RingBuf(data) = map else { return None };
        let fd = data.fd().as_fd().try_clone_to_owned().ok()?;
        Some(Self {
            fd,
            ring: None,
            idle: 0,
            name,
        })
    }

    /// The ring, mapped now if it was not.
    pub fn open(&mut self) -> Option<&mut RingBuf<MapData>> {
        self.idle = 0;
        if self.ring.is_none() {
            match self.fd.try_clone() {
                Ok(dup) => match MapData::from_fd(dup).and_then(|d| RingBuf::try_from(Map::RingBuf(d))) {
                    Ok(r) => self.ring = Some(r),
                    Err(e) => log::debug!("cannot map the {} ring: {e}", self.name),
                },
                Err(e) => log::debug!("cannot map the {} ring: {e}", self.name),
            }
        }
        self.ring.as_mut()
    }

    /// The ring if it is mapped (nothing is mapped for this).
    pub fn mapped(&mut self) -> Option<&mut RingBuf<MapData>> {
        self.ring.as_mut()
    }

    /// Nothing uses the ring this time: after IDLE_TICKS such calls in a
    /// row it is unmapped. The caller drains it first.
    pub fn idle(&mut self) {
        if self.ring.is_some() {
            self.idle += 1;
            if self.idle >= IDLE_TICKS {
                self.ring = None;
                self.idle = 0;
            }
        }
    }
}
