//! Asking leaktrace to stop, from any thread (`--duration` reached, stdout
//! closed). The shared flag is an `AtomicBool`; [`request`] also makes an
//! eventfd readable, which the sampling and OOM threads poll next to their
//! own descriptors, and wakes the main thread. So no thread wakes up on a
//! timer only to look at the flag: each wake-up costs about 0.1 ms on the
//! development VM, and at 10,000 processes the budget for everything but
//! the kernel's task walk is a few tenths of a percent of a core
//! (docs/performance.md).
//!
//! One run of the pipeline per process: once a stop was requested the
//! eventfd stays readable.
use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        OnceLock,
    },
};

static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();
static EVENT_FD: OnceLock<Option<OwnedFd>> = OnceLock::new();

/// The descriptor that becomes readable once a stop was requested; None
/// if no eventfd could be made (the waiters then rely on their timeouts).
pub fn fd() -> Option<RawFd> {
    EVENT_FD
        .get_or_init(|| {
            // SAFETY: eventfd returns a new descriptor or -1.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            // SAFETY: a descriptor we just made and nobody else owns.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .as_ref()
        .map(|f| f.as_raw_fd())
}

/// Sets the flag and wakes everything that waits for it.
pub fn request(stop: &AtomicBool) {
    stop.store(true, Ordering::Relaxed);
    if let Some(fd) = fd() {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a local to our own eventfd.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
    WAKE.notify_one();
}

/// Returns once the flag is set by [`request`].
pub async fn requested(stop: &AtomicBool) {
    // notify_one leaves a permit when nobody waits, so a request between
    // the check and the await is not lost.
    while !stop.load(Ordering::Relaxed) {
        WAKE.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_sets_the_flag_wakes_the_waiter_and_the_fd() {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            request(&s2);
        });
        // A request that did not wake the waiter fails here, not hangs.
        let woke = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), requested(&stop)).await
        });
        t.join().unwrap();
        assert!(woke.is_ok(), "the waiter was not woken by the request");
        assert!(stop.load(Ordering::Relaxed));
        let mut p = libc::pollfd {
            fd: fd().expect("an eventfd"),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 0) }, 1, "the eventfd is readable");
    }
}
