//! The firmware image (docs/image-format.md): the loader and the kernel ELF packed into one
//! `-bios` file with the OVMF-style GUID table and SEV/TDX metadata at its end, the check that the
//! kernel really is hard-float SIMD code, and the build that produces it all.

pub mod build;
pub mod elf_segments;
pub mod metadata;
pub mod pack;
pub mod soft_float_probe;
pub mod vector_check;
