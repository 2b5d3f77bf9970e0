//! Exit codes (also in `leaktrace --help` and docs/security.md): a leaf
//! module, so that commands read them without importing main.rs.
pub const OK: u8 = 0;
/// Something failed at run time (the kernel refused a program, a
/// directory cannot be written, ...).
pub const RUNTIME: u8 = 1;
/// `doctor` found a risk.
pub const WARNINGS: u8 = 2;
/// A bad command line (sysexits EX_USAGE).
pub const USAGE: u8 = 64;
/// Not root, and no CAP_BPF + CAP_PERFMON (sysexits EX_NOPERM):
/// restarting will not help; the unit file says so
/// (RestartPreventExitStatus=77).
pub const NO_PERMISSION: u8 = 77;

/// The error for missing privileges, told apart from other errors by its
/// exit code.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoPermission(pub String);
