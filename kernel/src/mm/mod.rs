//! Memory management: typed addresses, the frame allocator, the heap and the shared pool.

pub mod address;
pub mod frames;
#[cfg(target_os = "none")]
pub mod heap;
pub mod large_pages;
pub mod shared_pool;
