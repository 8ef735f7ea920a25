//! The firmware's main path: find the kernel in the image, read the memory map and the
//! configuration from fw_cfg, measure, place and map the kernel, fill the BootInfo, hand over.

mod boot;
mod cpu;
mod fw_cfg;
mod no_heap;
mod pool;
mod serial;
mod snp;
mod tdx;

use core::fmt;
use core::ops::Range;
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

/// e820 type of RAM.
const E820_RAM: u32 = 1;

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
    Snp(snp::SnpError),
    SnpRamAboveIdentityMap(u64),
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
            Self::Snp(e) => write!(f, "SEV-SNP: {e}"),
            Self::SnpRamAboveIdentityMap(top) => write!(
                f,
                "SEV-SNP: RAM reaches {top:#x}, above the {:#x} the loader maps and validates",
                paging::MAX_IDENTITY_TOP
            ),
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
           MemoryError => Memory, PagingError => Paging, tdx::TdxError => Tdx,
           snp::SnpError => Snp);

/// The kind of guest the loader runs in.
#[expect(
    clippy::large_enum_variant,
    reason = "one value for the whole boot, on the 128 KiB loader stack; the SNP variant holds the parsed CPUID page"
)]
enum Guest {
    Native,
    Tdx(tdx::Tdx),
    Snp(snp::Snp),
}

/// The Rust entry point, called by `boot.s` on the boot stack with SSE/AVX enabled, with
/// SEV_STATUS (0 on a plain VM or in a TD) and, under SNP, the C-bit position it checked.
extern "sysv64" fn loader_main(sev_status: u64, c_bit: u64) -> ! {
    let mut pool = TablePool::new();
    // Under SNP, port I/O and CPUID raise #VC (there is no handler): the GHCB must be ready
    // before the first print, and the TDX probe (a CPUID) must not run. Inside a TD, port I/O
    // raises #VE: the handler must be in place before the first one.
    let guest = match snp::Snp::start(sev_status, c_bit, &mut pool) {
        Ok(Some(snp)) => Guest::Snp(snp),
        Ok(None) => tdx::Tdx::detect().map_or(Guest::Native, Guest::Tdx),
        // Nothing can be printed yet: the reason code is all the host learns.
        Err(error) => snp::terminate(error.reason()),
    };
    serial::init_logging();
    match run(guest, pool) {
        Ok(never) => match never {},
        Err(error) => {
            error!("{error}");
            fail()
        }
    }
}

/// Reports failure to QEMU's isa-debug-exit device (if present) and halts; under SNP asks the
/// hypervisor to terminate the guest.
fn fail() -> ! {
    if snp::port_route() != snp::PortRoute::Direct {
        snp::terminate(ward_attestation::guest::snp::ghcb_msr::TerminationReason::General);
    }
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

fn run(guest: Guest, pool: TablePool) -> Result<core::convert::Infallible, LoaderError> {
    info!("Ward loader {} (stage0)", env!("CARGO_PKG_VERSION"));
    let (platform, encryption_mask) = match &guest {
        Guest::Tdx(td) => {
            let shared = td.shared_mask()?;
            info!("platform TDX (never tested on hardware), shared bit {shared:#x}");
            (PlatformKind::Tdx, shared)
        }
        Guest::Snp(snp) => {
            let mask = snp.encryption_mask();
            info!(
                "platform SEV-SNP (never tested on hardware), C-bit mask {mask:#x}, GHCB at {:#x}",
                snp::GHCB_PAGE
            );
            (PlatformKind::Snp, mask)
        }
        Guest::Native => (PlatformKind::Native, 0),
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

    // A confidential guest's private memory is out of the device's reach: no DMA.
    let mut fw_cfg = FwCfg::probe(matches!(guest, Guest::Native))?;
    let e820_file = fw_cfg.find("etc/e820")?.ok_or(LoaderError::NoE820)?;
    let mut e820_buffer = [0u8; E820_ENTRY_SIZE * MAX_E820_ENTRIES];
    let e820 = fw_cfg.read(e820_file, &mut e820_buffer)?;
    let mut builder = MemoryMapBuilder::from_e820(memory::parse_e820(e820)?)?;
    if let Guest::Tdx(td) = &guest {
        let accepted = td.accept_ram(memory::parse_e820(e820)?)?;
        info!(
            "TDX: accepted {:#x} bytes of RAM ({} x 2 MiB, {} x 4 KiB)",
            accepted.bytes(),
            accepted.large,
            accepted.small
        );
    }
    if let Guest::Snp(_) = &guest {
        // The GHCB page stays shared: the kernel must never use it as private RAM.
        let ghcb = snp::GHCB_RANGE;
        builder.mark_used(ghcb.start, ghcb.end, MemoryKind::Reserved)?;
        builder.mark_used(layout::LOADER_AREA_START, ghcb.start, MemoryKind::Loader)?;
        builder.mark_used(ghcb.end, layout::LOADER_AREA_END, MemoryKind::Loader)?;
    } else {
        builder.mark_used(
            layout::LOADER_AREA_START,
            layout::LOADER_AREA_END,
            MemoryKind::Loader,
        )?;
    }
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
    // PVALIDATE needs a mapping, and usable RAM that was never validated would kill the kernel.
    if top_of_ram > paging::MAX_IDENTITY_TOP && matches!(guest, Guest::Snp(_)) {
        return Err(LoaderError::SnpRamAboveIdentityMap(top_of_ram));
    }
    if top_of_ram > paging::MAX_IDENTITY_TOP {
        warn!(
            "RAM above {:#x} is not identity-mapped",
            paging::MAX_IDENTITY_TOP
        );
    }
    // Private memory: RAM (validated below under SNP) and the image. Everything else (MMIO, the
    // legacy hole) and the GHCB page are mapped without the C-bit.
    let mut private: [Range<u64>; MAX_E820_ENTRIES + 1] = core::array::from_fn(|_| 0..0);
    let mut private_count = 0;
    let ram = memory::parse_e820(e820)?.filter(|e| e.kind == E820_RAM);
    for (slot, entry) in private.iter_mut().zip(ram.take(MAX_E820_ENTRIES)) {
        *slot = entry.address..entry.address.saturating_add(entry.length);
        private_count += 1;
    }
    private[private_count] = IMAGE_END - image.len() as u64..IMAGE_END;
    private_count += 1;
    let huge_pages = match &guest {
        Guest::Snp(snp) => snp.has_huge_pages(),
        _ => cpu::has_huge_pages(),
    };
    let mapping = BootMapping {
        identity_top: top_of_ram.min(paging::MAX_IDENTITY_TOP),
        loader_code: boot::loader_rom_start()..IMAGE_END,
        huge_pages,
        kernel: &kernel,
        kernel_physical,
        encryption_mask,
        private: &private[..private_count],
        shared: core::slice::from_ref(&snp::GHCB_RANGE),
    };
    let tables = paging::build_boot_tables(pool, &mapping)?;
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

    if let Guest::Snp(snp) = &guest {
        // SAFETY: the metadata page is the image's last page, always mapped ROM, never written.
        let tail =
            unsafe { core::slice::from_raw_parts(METADATA_PAGE as *const u8, PAGE_SIZE as usize) };
        let validated = snp.validate_ram(memory::parse_e820(e820)?, tail)?;
        info!(
            "SEV-SNP: validated {:#x} bytes of RAM ({} x 2 MiB, {} x 4 KiB)",
            validated.bytes(),
            validated.large,
            validated.small
        );
    }

    // SAFETY: `[kernel_physical, +span)` is usable RAM just marked KernelImage, identity-mapped
    // writable, and referenced by nothing else.
    let destination =
        unsafe { core::slice::from_raw_parts_mut(kernel_physical as *mut u8, span as usize) };
    kernel.load_into(destination)?;

    let mut boot_info = BootInfo::new(platform);
    boot_info.platform_info.encryption_mask = encryption_mask;
    if let Guest::Snp(_) = &guest {
        boot_info.platform_info.secrets_page = layout::SNP_SECRETS_PAGE;
        boot_info.platform_info.cpuid_page = layout::SNP_CPUID_PAGE;
    }
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
