//! The loader's SNP path skips, when it PVALIDATEs RAM, exactly the ranges the image's ASEV
//! metadata had the launch validate: it reads them back from its own image
//! (`ward_loader::prevalidated`). This builds a real image (the real loader, a tiny kernel) and
//! checks the loader's reading of its last page against what the packer wrote.

use ward_loader::elf::test_elf::{Segment, build};
use ward_loader::layout::{KERNEL_VIRTUAL_BASE, LOADER_AREA_END, LOADER_AREA_START, PAGE_SIZE};
use ward_loader::prevalidated;
use ward_tools::image::build::{BuildOptions, KernelSource, build_image, find_workspace};
use ward_tools::image::metadata;

#[test]
fn the_loader_reads_back_the_pre_validated_ranges_the_packer_wrote() {
    let workspace = find_workspace(&std::env::current_dir().unwrap()).unwrap();
    let out_dir = workspace
        .join("target")
        .join("ward")
        .join("snp-prevalidated-test");
    std::fs::create_dir_all(&out_dir).unwrap();
    let kernel_path = out_dir.join("tiny-kernel.elf");
    // cli; vxorps ymm0, ymm0, ymm0 (`ward build` requires vector code); hlt. Never run.
    let code = [0xFA, 0xC5, 0xFC, 0x57, 0xC0, 0xF4];
    let kernel = build(
        KERNEL_VIRTUAL_BASE,
        &[Segment::load(5, KERNEL_VIRTUAL_BASE, &code, 0)],
    );
    std::fs::write(&kernel_path, kernel).unwrap();
    let built = build_image(&BuildOptions {
        workspace,
        out_dir,
        kernel: KernelSource::Prebuilt(kernel_path),
    })
    .expect("building the loader and packing the image");
    let image = std::fs::read(&built.image_path).unwrap();
    let tail = &image[image.len() - PAGE_SIZE as usize..];

    let read_back = prevalidated::from_image_tail(tail).expect("the image's ASEV metadata");
    let written: Vec<_> = metadata::sev_sections()
        .iter()
        .map(|s| u64::from(s.base)..u64::from(s.base) + u64::from(s.size))
        .collect();
    assert_eq!(read_back.ranges(), &written[..]);
    // Together they are the loader's whole working area, each page once: nothing the loader
    // uses before validating RAM is left unvalidated, and nothing is validated twice.
    let mut pages: Vec<u64> = read_back
        .ranges()
        .iter()
        .flat_map(|r| (r.start..r.end).step_by(PAGE_SIZE as usize))
        .collect();
    pages.sort_unstable();
    let area: Vec<u64> = (LOADER_AREA_START..LOADER_AREA_END)
        .step_by(PAGE_SIZE as usize)
        .collect();
    assert_eq!(pages, area);
}
