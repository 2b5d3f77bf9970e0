//! The host as /proc, /sys and cgroupfs show it: process metadata (read on
//! worker threads), memory cgroups, who a cgroup path belongs to (unit,
//! container, pod), consoles, printk levels and PSI.
pub mod attribution;
pub mod cgroup;
pub mod facts;
pub mod meta;
pub mod procfs;
