//! CPython processes from the outside: which interpreter a process runs
//! (version, where `_PyRuntime` is), the struct layout of that version,
//! and code objects read back from its memory to a function, file and line.
//!
//! Everything here reads a traced process's binary or memory, which anyone
//! may have written: it runs in the sandboxed child (`leaktrace
//! __pyinfo`, see `evidence::pyframes`), every read is bounded, and every
//! string is capped.
pub mod code;
pub mod debug_offsets;
pub mod detect;
pub mod layout;
pub mod linetable;
pub mod mem;
