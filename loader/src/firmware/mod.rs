//! The firmware's main path: find the kernel in the image, read the memory map and the
//! configuration from fw_cfg, measure, place and map the kernel, fill the BootInfo, hand over.

mod boot;
mod cpu;
mod fw_cfg;
mod pool;
mod serial;
mod tdx;

use core::fmt;
use fw_cfg::{FwCfg, FwCfgError};
use log::{error, info, warn};
use pool::TablePool;
use ward_bootinfo::{BootInfo, MeasurementKind, MemoryKind, PlatformKind};
use ward_loader::elf::{ElfError, KernelElf};
use ward_loader::image_format::{PayloadDescriptor, PayloadError};
use ward_loader::layout::{self, IMAGE_END, METADATA_PAGE, PAGE_SIZE};
use ward_loader::measurement;
use ward_loader::memory::{self, E820_ENTRY_SIZE, MAX_E820_ENTRIES, MemoryError, MemoryMapBuilder};
use ward_loader::paging::{self, BootMapping, PagingError};

/// Everything that can stop the loader.
enum LoaderError {
    Payload(PayloadError),
    LoaderOutsideImage { image_start: u64, loader_start: u64 },
    Elf(ElfError),
    FwCfg(FwCfgError),
    NoE820,
    ConfigTooLarge(u32),
    Memory(MemoryError),
    NoRoomForKernel(u64),
    Paging(PagingError),
    Tdx(tdx::TdxError),
}

impl fmt::Display for LoaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Payload(e) => write!(f, "image: {e}"),
            Self::LoaderOutsideImage {
                image_start,
                loader_start,
            } => write!(
                f,
                "image claims to start at {image_start:#x}, above the loader's code at {loader_start:#x}"
            ),
            Self::Elf(e) => write!(f, "kernel ELF: {e}"),
            Self::FwCfg(e) => write!(f, "fw_cfg: {e}"),
            Self::NoE820 => write!(f, "fw_cfg has no etc/e820 memory map"),
            Self::ConfigTooLarge(size) => write!(
                f,
                "opt/ward/config is {size} bytes; the limit is {} bytes",
                layout::CONFIG_MAX_SIZE
            ),
            Self::Memory(e) => write!(f, "memory map: {e}"),
            Self::NoRoomForKernel(span) => {
                write!(
                    f,
                    "no usable RAM above 2 MiB holds the kernel's {span:#x} bytes"
                )
            }
            Self::Paging(e) => write!(f, "page tables: {e}"),
            Self::Tdx(e) => write!(f, "TDX: {e}"),
        }
    }
}

macro_rules! impl_from {
    ($($source:ty => $variant:ident),*) => {
        $(impl From<$source> for LoaderError {
            fn from(error: $source) -> Self {
                Self::$variant(error)
            }
        })*
    };
}
impl_from!(PayloadError => Payload, ElfError => Elf, FwCfgError => FwCfg,
           MemoryError => Memory, PagingError => Paging, tdx::TdxError => Tdx);

/// The Rust entry point, called by `boot.s` on the boot stack with SSE/AVX enabled.
extern "sysv64" fn loader_main() -> ! {
    // Inside a TD, port I/O raises #VE: the handler must be in place before the first one.
    let tdx = tdx::Tdx::detect();
    serial::init_logging();
    match run(tdx) {
        Ok(never) => match never {},
        Err(error) => {
            error!("{error}");
            fail()
        }
    }
}

/// Reports failure to QEMU's isa-debug-exit device (if present) and halts.
fn fail() -> ! {
    // SAFETY: writing the isa-debug-exit port ends the VM under test; elsewhere the port is unused.
    unsafe { cpu::outl(boot::EXIT_PORT, boot::EXIT_FAILURE) };
    cpu::halt_forever()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    error!("loader panic: {info}");
    fail()
}

/// The image as mapped below 4 GiB, and the descriptor of the kernel inside it.
fn locate_image() -> Result<(&'static [u8], PayloadDescriptor), LoaderError> {
    // SAFETY: the metadata page is the image's last page, always mapped ROM, never written.
    let tail =
        unsafe { core::slice::from_raw_parts(METADATA_PAGE as *const u8, PAGE_SIZE as usize) };
    let descriptor = PayloadDescriptor::find(tail)?;
    let image_start = IMAGE_END - u64::from(descriptor.image_size);
    let loader_start = boot::loader_rom_start();
    if image_start > loader_start {
        return Err(LoaderError::LoaderOutsideImage {
            image_start,
            loader_start,
        });
    }
    // SAFETY: QEMU maps the whole -bios image read-only right below 4 GiB; the descriptor's size
    // was checked to be at most 16 MiB and to reach at least down to the loader's own code.
    let image = unsafe {
        core::slice::from_raw_parts(image_start as *const u8, descriptor.image_size as usize)
    };
    Ok((image, descriptor))
}

/// Copies `opt/ward/config`, when present, into the loader's configuration area.
fn read_config(fw_cfg: &mut FwCfg) -> Result<&'static [u8], LoaderError> {
    let Some(file) = fw_cfg.find("opt/ward/config")? else {
        return Ok(&[]);
    };
    if u64::from(file.size) > layout::CONFIG_MAX_SIZE {
        return Err(LoaderError::ConfigTooLarge(file.size));
    }
    // SAFETY: the configuration area is identity-mapped loader RAM reserved for this copy; this
    // is its only writer and the slice is the only reference to it.
    let area = unsafe {
        core::slice::from_raw_parts_mut(
            layout::CONFIG_ADDRESS as *mut u8,
            layout::CONFIG_MAX_SIZE as usize,
        )
    };
    Ok(fw_cfg.read(file, area)?)
}

fn hex(bytes: &[u8]) -> impl fmt::Display + '_ {
    struct Hex<'a>(&'a [u8]);
    impl fmt::Display for Hex<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
        }
    }
    Hex(bytes)
}

fn run(tdx: Option<tdx::Tdx>) -> Result<core::convert::Infallible, LoaderError> {
    info!("Ward loader {} (stage0)", env!("CARGO_PKG_VERSION"));
    let (platform, encryption_mask) = match &tdx {
        Some(td) => {
            let shared = td.shared_mask()?;
            info!("platform TDX (never tested on hardware), shared bit {shared:#x}");
            (PlatformKind::Tdx, shared)
        }
        None => (PlatformKind::Native, 0),
    };
    let (image, descriptor) = locate_image()?;
    let kernel_bytes = &image[descriptor.kernel_range()];
    let kernel = KernelElf::parse(kernel_bytes)?;
    info!(
        "image {:#x} bytes at {:#x}; kernel ELF {} bytes, {} segments, entry {:#x}",
        image.len(),
        IMAGE_END - image.len() as u64,
        kernel_bytes.len(),
        kernel.segments().len(),
        kernel.entry()
    );

    let mut fw_cfg = FwCfg::probe(tdx.is_none())?;
    let e820_file = fw_cfg.find("etc/e820")?.ok_or(LoaderError::NoE820)?;
    let mut e820_buffer = [0u8; E820_ENTRY_SIZE * MAX_E820_ENTRIES];
    let e820 = fw_cfg.read(e820_file, &mut e820_buffer)?;
    let mut builder = MemoryMapBuilder::from_e820(memory::parse_e820(e820)?)?;
    if let Some(td) = &tdx {
        let accepted = td.accept_ram(memory::parse_e820(e820)?)?;
        info!(
            "TDX: accepted {:#x} bytes of RAM ({} x 2 MiB, {} x 4 KiB)",
            accepted.bytes(),
            accepted.large,
            accepted.small
        );
    }
    builder.mark_used(
        layout::LOADER_AREA_START,
        layout::LOADER_AREA_END,
        MemoryKind::Loader,
    )?;
    let config = read_config(&mut fw_cfg)?;

    let span = kernel.span();
    let kernel_physical = memory::find_usable(
        &builder.build()?,
        span,
        layout::KERNEL_PHYSICAL_ALIGN,
        layout::KERNEL_PHYSICAL_MIN,
    )
    .ok_or(LoaderError::NoRoomForKernel(span))?;
    builder.mark_used(
        kernel_physical,
        kernel_physical + span,
        MemoryKind::KernelImage,
    )?;
    let memory_map = builder.build()?;
    for region in memory_map.regions() {
        info!(
            "memory {:#014x}..{:#014x} {:?}",
            region.start,
            region.start + region.length,
            MemoryKind::from_raw(region.kind).unwrap_or(MemoryKind::Reserved)
        );
    }

    let config_blob = measurement::config_blob(layout::CONFIG_ADDRESS, config);
    let measurements = measurement::measurement_log(image, kernel_bytes, &config_blob);
    for (kind, label) in [
        (MeasurementKind::FirmwareImage, "image"),
        (MeasurementKind::KernelElf, "kernel"),
        (MeasurementKind::DeploymentConfig, "config"),
    ] {
        if let Some(entry) = measurements.find(kind) {
            info!("sha384 {label:<6} {}", hex(&entry.sha384));
        }
    }
    info!(
        "config {} bytes, sha256 {}",
        config.len(),
        hex(&config_blob.sha256)
    );

    let top_of_ram = memory::top_of_ram(&memory_map).max(IMAGE_END);
    if top_of_ram > paging::MAX_IDENTITY_TOP {
        warn!(
            "RAM above {:#x} is not identity-mapped",
            paging::MAX_IDENTITY_TOP
        );
    }
    let mapping = BootMapping {
        identity_top: top_of_ram.min(paging::MAX_IDENTITY_TOP),
        loader_code: boot::loader_rom_start()..IMAGE_END,
        huge_pages: cpu::has_huge_pages(),
        kernel: &kernel,
        kernel_physical,
        encryption_mask: 0,
        private: &[],
        shared: &[],
    };
    let tables = paging::build_boot_tables(TablePool::new(), &mapping)?;
    info!(
        "kernel at {:#x}..{:#x} (virtual {:#x}); {} page tables; AVX-512 state {}",
        kernel_physical,
        kernel_physical + span,
        kernel.virtual_start(),
        tables.memory().used(),
        if cpu::avx512_state_enabled() {
            "on"
        } else {
            "off"
        }
    );
    // SAFETY: the new tables identity-map all RAM (stack, data, pool) and keep the loader's code
    // executable at the same addresses, so execution continues unchanged.
    unsafe { cpu::write_cr3(tables.root()) };

    // SAFETY: `[kernel_physical, +span)` is usable RAM just marked KernelImage, identity-mapped
    // writable, and referenced by nothing else.
    let destination =
        unsafe { core::slice::from_raw_parts_mut(kernel_physical as *mut u8, span as usize) };
    kernel.load_into(destination)?;

    let mut boot_info = BootInfo::new(platform);
    boot_info.platform_info.encryption_mask = encryption_mask;
    boot_info.kernel.physical_start = kernel_physical;
    boot_info.kernel.physical_end = kernel_physical + span;
    boot_info.kernel.entry = kernel.entry();
    boot_info.config = config_blob;
    boot_info.measurements = measurements;
    boot_info.memory_map = memory_map;
    let boot_info_address = layout::BOOT_INFO_ADDRESS;
    // SAFETY: the BootInfo area is identity-mapped loader RAM, sized and aligned for BootInfo
    // (layout tests), and written only here.
    unsafe { core::ptr::write(boot_info_address as *mut BootInfo, boot_info) };

    info!("handing over to the kernel at {:#x}", kernel.entry());
    // SAFETY: the kernel is loaded and mapped by the active tables, the BootInfo is filled, and
    // the stack top is the loader stack's, identity-mapped RW; nothing of the loader is needed
    // after this point.
    unsafe { boot::hand_over(kernel.entry(), boot_info_address, layout::STACK_TOP) }
}
