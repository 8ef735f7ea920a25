//! 4-level paging: entry bits (`flags`), a table builder over any frame source (`mapper`), the
//! kernel's address-space plan (`layout`) and, on bare metal, building and switching to the
//! kernel's own tables (`kernel_space`).

pub mod flags;
#[cfg(target_os = "none")]
pub mod kernel_space;
pub mod layout;
pub mod mapper;
