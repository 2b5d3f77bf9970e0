//! The subcommands: setup and dispatch only.
pub mod doctor;
pub mod offline;
pub mod report;
pub mod watch;
