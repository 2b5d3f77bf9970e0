//! leaktrace's kernel programs.
//!
//! One module per hook family. Every program is a thin wrapper around a
//! `try_*` function that returns `Result`; errors become counters in
//! `COUNTERS`, never a silent loss.
#![no_std]
#![no_main]

mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// bpf_probe_read_kernel is GPL-only.
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
