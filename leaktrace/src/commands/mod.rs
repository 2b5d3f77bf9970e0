//! The subcommands: setup and dispatch only.
pub mod doctor;
pub mod report;
pub mod watch;
