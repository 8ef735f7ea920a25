//! Library half of the `ward` tool: the parts that the CLI and the end-to-end tests share
//! (image packing, the QEMU launcher, the client). The CLI front ends live in `main.rs`/`cmd/`.

pub mod client;
pub mod hugepages;
pub mod image;
pub mod qemu;
pub mod tiny_model;
