//! Not a data source: the loader loads (never attaches) this program to
//! find out whether the kernel allows fentry, and reports it with `-v`.
use aya_ebpf::{macros::fentry, programs::FEntryContext};

#[fentry(function = "do_exit")]
pub fn fentry_capability(_ctx: FEntryContext) -> i32 {
    0
}
