//! The boot sequence, from the loader's hand-over to the boot report.
//!
//! 1. On the loader's stack and page tables: serial, TSC calibration, logging; the BootInfo
//!    header is checked; the frame allocator, the heap and the shared pool's frames are set up;
//!    the platform is set up (TDX: checked against the TDX module and MRCONFIGID); the kernel's
//!    own page tables are built and loaded, and at once the GDT/TSS with IST stacks and the IDT.
//! 2. On the kernel stack (with its guard page): the shared pool, then the report — banner,
//!    memory map, SIMD level, PCI devices — and the deployment configuration.
//!
//! Under SEV-SNP, port I/O and CPUID raise #VC, which nothing can answer before the kernel's
//! IDT and GHCB exist: serial, TSC calibration, logging and CPU feature detection move from
//! step 1 to the start of step 2, right after the GHCB is registered (`platform::snp`); until
//! then a failure ends the guest through the GHCB MSR protocol without a message. The
//! deployment configuration is then checked against HOST_DATA of the enclave's own report.

mod fault_test;

use crate::arch::cpu_features::CpuFeatures;
use crate::arch::paging::kernel_space;
use crate::arch::paging::layout::{SHARED_WINDOW, Stack};
use crate::arch::paging::mapper::Audit;
use crate::arch::simd::SimdLevel;
use crate::arch::{gdt, idt, tsc};
use crate::drivers::pci::{self, ecam, names};
use crate::exit::{ExitCode, exit};
use crate::mm::address::{PhysAddr, PhysRange};
use crate::mm::frames::FrameAllocator;
use crate::mm::heap;
use crate::mm::shared_pool::SharedPool;
use crate::platform::Platform;
use crate::platform::native::Native;
use crate::platform::snp::Snp;
use crate::platform::tdx::TdxError;
use crate::platform::tdx::platform::Tdx;
use crate::report::{Hex, Size, kind_name};
use crate::{logger, serial};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use log::{error, info, warn};
use spin::{Mutex, Once};
use ward_attestation::config::{Config, MAX_CONFIG_LEN};
use ward_bootinfo::{BootInfo, MemoryKind, PlatformKind};

/// RAM kept out of the heap for page tables, stacks and the shared pool.
const FRAME_RESERVE: u64 = 16 << 20;
/// Size of the shared-memory pool in pages (4 MiB).
const SHARED_POOL_PAGES: u64 = 1024;

/// What the first stage hands to the second.
struct Handover {
    info: &'static BootInfo,
    config: Option<&'static [u8]>,
    /// `None` under SEV-SNP: CPUID raises #VC, so it waits for the GHCB (`kernel_main`).
    features: Option<CpuFeatures>,
    /// `None` under SEV-SNP: the console and the TSC calibration wait for the GHCB.
    calibration: Option<tsc::Calibration>,
    heap: PhysRange,
    pool: PhysRange,
    audit: Audit,
}

static HANDOVER: Once<Handover> = Once::new();
/// Frames left after boot, for later owners (more CPUs' stacks, more pool pages).
pub static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);
/// The platform the kernel runs on (chosen from `BootInfo::platform`).
pub static PLATFORM: Once<&'static dyn Platform> = Once::new();
/// The shared-memory pool.
pub static SHARED_POOL: Once<SharedPool> = Once::new();

/// Set while an SEV-SNP kernel has no GHCB yet: port I/O (the console, isa-debug-exit) would
/// raise a #VC nothing can answer, so a failure can only ask the hypervisor to end the guest.
static CONSOLE_DEFERRED: AtomicBool = AtomicBool::new(false);

fn fail(code: ExitCode, args: core::fmt::Arguments<'_>) -> ! {
    if CONSOLE_DEFERRED.load(Ordering::Relaxed) {
        crate::platform::snp::cpu::terminate(
            ward_attestation::guest::snp::ghcb_msr::TerminationReason::General,
        )
    }
    error!("{args}");
    exit(code)
}

fn start_console() -> tsc::Calibration {
    serial::init();
    let calibration = calibrate_tsc();
    logger::init();
    calibration
}

/// Whether the loader hands over an SEV-SNP guest (the header alone; `check_boot_info` checks
/// the rest).
fn announces_snp(pointer: *const BootInfo) -> bool {
    if pointer.is_null() || !pointer.is_aligned() {
        return false;
    }
    // SAFETY: the loader contract (as in `check_boot_info`): an identity-mapped BootInfo.
    let info = unsafe { &*pointer };
    info.validate_header() == Ok(PlatformKind::Snp)
}

/// Called from `_start` (entry.s).
pub extern "sysv64" fn kernel_entry(boot_info: *const BootInfo) -> ! {
    tsc::mark_start();
    // Under SEV-SNP, port I/O and CPUID raise #VC, answered only once the kernel's IDT and GHCB
    // exist: the console starts in `kernel_main` there.
    let snp = announces_snp(boot_info);
    CONSOLE_DEFERRED.store(snp, Ordering::Relaxed);
    let calibration = (!snp).then(start_console);
    let raw = check_boot_info(boot_info);

    let mut frames = FrameAllocator::from_memory_map(raw.memory_map.regions());
    let Some(heap_range) = frames.take_largest(FRAME_RESERVE) else {
        fail(
            ExitCode::SetupFailed,
            format_args!("no RAM range large enough for the heap"),
        )
    };
    // SAFETY: the range is usable RAM just removed from the frame allocator, identity-mapped
    // by the loader and by the tables built below.
    unsafe { heap::init(heap_range) };
    // Private copies: the kernel no longer depends on the loader's memory once it runs.
    let info: &'static BootInfo = Box::leak(Box::new(*raw));
    let config = copy_config(info);

    // SNP: on 2 MiB boundaries, so sharing rescinds whole 2 MiB pages where the loader
    // validated them as such.
    let pool = if snp {
        frames.allocate_aligned(SHARED_POOL_PAGES, 2 << 20)
    } else {
        frames.allocate(SHARED_POOL_PAGES)
    };
    let Some(pool) = pool else {
        fail(
            ExitCode::SetupFailed,
            format_args!("no RAM for the shared pool"),
        )
    };
    let features = (!snp).then(CpuFeatures::detect);
    let platform: &'static dyn Platform =
        *PLATFORM.call_once(|| choose_platform(info, config, features));
    if let Err(e) = platform.share(pool) {
        fail(
            ExitCode::SetupFailed,
            format_args!("sharing the pool failed: {e}"),
        );
    }
    let space = match kernel_space::build(
        info.memory_map.regions(),
        &mut frames,
        pool,
        platform.private_pte_mask(),
        platform.shared_pte_mask(),
    ) {
        Ok(space) => space,
        Err(e) => fail(
            ExitCode::SetupFailed,
            format_args!("building page tables failed: {e}"),
        ),
    };
    // SAFETY: `space` maps this code, the identity map (current stack, heap, BootInfo copy),
    // and the kernel stack switched to next.
    unsafe { kernel_space::activate(&space) };
    // At once: the loader's IDT points into memory the kernel's tables map non-executable, and
    // in a TD every port access (an error report included) raises a #VE.
    gdt::init();
    idt::init();
    let audit = kernel_space::audit(&space, platform.private_pte_mask());
    if let Some(page) = audit.writable_executable {
        fail(
            ExitCode::SetupFailed,
            format_args!("W^X violated: {page} is writable and executable"),
        );
    }
    *FRAMES.lock() = Some(frames);
    HANDOVER.call_once(|| Handover {
        info,
        config,
        features,
        calibration,
        heap: heap_range,
        pool,
        audit,
    });

    unsafe extern "sysv64" {
        fn ward_switch_stack(
            argument: u64,
            stack_top: u64,
            function: extern "sysv64" fn(u64) -> !,
        ) -> !;
    }
    // SAFETY: the kernel stack is mapped by the tables just loaded, unused so far, and
    // `kernel_main` never returns to this stack.
    unsafe { ward_switch_stack(0, Stack::Kernel.top().as_u64(), kernel_main) }
}

fn calibrate_tsc() -> tsc::Calibration {
    if let Some(hz) = tsc::cpuid15_frequency() {
        tsc::set_frequency(hz);
        return tsc::Calibration::Cpuid15;
    }
    // Without a frequency, timestamps read 0 but the boot goes on.
    if let Some(hz) = tsc::pit_frequency() {
        tsc::set_frequency(hz);
    }
    tsc::Calibration::Pit
}

fn check_boot_info(pointer: *const BootInfo) -> &'static BootInfo {
    if pointer.is_null() || !pointer.is_aligned() {
        fail(
            ExitCode::BadBootInfo,
            format_args!("refusing boot: boot info pointer {pointer:p} is null or misaligned"),
        );
    }
    // SAFETY: the loader contract: rdi points to an identity-mapped BootInfo that stays valid
    // until the kernel copies it (right after the heap exists).
    let info = unsafe { &*pointer };
    match info.validate_header() {
        // Every platform is supported; each checks its own values when it is set up.
        Ok(_) => info,
        Err(e) => fail(ExitCode::BadBootInfo, format_args!("refusing boot: {e}")),
    }
}

/// The platform the loader handed over, set up and checked (for TDX: that this is a TD, its
/// shared bit, and the configuration bound to MRCONFIGID).
fn choose_platform(
    info: &BootInfo,
    config: Option<&[u8]>,
    features: Option<CpuFeatures>,
) -> &'static dyn Platform {
    if PlatformKind::from_raw(info.platform) == Some(PlatformKind::Snp) {
        // The CPUID and secrets pages are read now, while the loader's tables map them.
        return match Snp::init(info) {
            Ok(snp) => snp,
            Err(e) => fail(
                ExitCode::BadBootInfo,
                format_args!("refusing boot: SEV-SNP: {e}"),
            ),
        };
    }
    let features = features.unwrap_or_else(CpuFeatures::detect);
    match PlatformKind::from_raw(info.platform) {
        Some(PlatformKind::Tdx) => match Tdx::new(&info.platform_info, config, features) {
            Ok(tdx) => Box::leak(Box::new(tdx)),
            Err(e @ (TdxError::ConfigMismatch | TdxError::OwnReportMalformed)) => fail(
                ExitCode::BadConfig,
                format_args!("refusing the deployment configuration: {e}"),
            ),
            Err(e) => fail(ExitCode::BadBootInfo, format_args!("refusing boot: {e}")),
        },
        _ => Box::leak(Box::new(Native::new(features))),
    }
}

fn copy_config(info: &BootInfo) -> Option<&'static [u8]> {
    let blob = info.config;
    if blob.address == 0 || blob.length == 0 {
        return None;
    }
    // One byte more than the parser accepts is enough for it to refuse an oversized file.
    let length = (blob.length as usize).min(MAX_CONFIG_LEN + 1);
    let mut copy = Vec::with_capacity(length);
    // SAFETY: the loader placed `blob.length` bytes at this identity-mapped address in its own
    // memory, which stays mapped until the kernel's tables are loaded; `length` ≤ that.
    unsafe {
        core::ptr::copy_nonoverlapping(blob.address as *const u8, copy.as_mut_ptr(), length);
        copy.set_len(length);
    }
    Some(Box::leak(copy.into_boxed_slice()))
}

extern "sysv64" fn kernel_main(_argument: u64) -> ! {
    let Some(handover) = HANDOVER.get() else {
        exit(ExitCode::SetupFailed)
    };
    let info = handover.info;
    let pool_pages = handover.pool.pages() as usize;
    // SAFETY: the pool's frames are mapped read-write at SHARED_WINDOW by the kernel's tables,
    // excluded from every other mapping and owned by the pool alone from here on.
    let pool = SHARED_POOL.call_once(|| unsafe {
        SharedPool::new(
            NonNull::new_unchecked(SHARED_WINDOW as *mut u8),
            handover.pool.start,
            pool_pages,
        )
    });
    let calibration = match handover.calibration {
        Some(calibration) => calibration,
        None => start_snp_console(pool),
    };
    let features = handover.features.unwrap_or_else(CpuFeatures::detect);
    let platform = PLATFORM.get().map_or("unknown", |p| p.name());
    let cpus = PLATFORM.get().map_or(1, |p| {
        crate::arch::smp::start(info.memory_map.regions(), *p).cpus
    });

    let usable: u64 = info
        .memory_map
        .regions()
        .iter()
        .filter(|r| MemoryKind::from_raw(r.kind) == Some(MemoryKind::Usable))
        .map(|r| r.length)
        .sum();
    info!(
        "Ward kernel {} booted: platform={platform} cpus={cpus} memory={}",
        crate::VERSION,
        Size(usable)
    );
    info!(
        "TSC {}.{:03} MHz (calibrated with {})",
        tsc::frequency() / 1_000_000,
        tsc::frequency() / 1_000 % 1_000,
        calibration.describe()
    );
    report_memory(handover, pool);
    report_simd(&features);
    let functions = report_pci();
    let config = check_config(handover.config, info);
    if let (Some(_), Some(bytes), Some(snp)) = (config, handover.config, Snp::get()) {
        check_snp_binding(snp, bytes);
    }
    if let Some(fault) = config.and_then(|c| c.test_fault) {
        fault_test::trigger(fault);
    }
    if config.is_some_and(|c| c.test_smp) {
        smp_self_test(cpus);
    }
    let mut devices = crate::drivers::virtio::probe(&functions);
    if config.is_some_and(|c| c.test_devices) {
        match crate::drivers::virtio::selfcheck::run(&mut devices) {
            Ok(()) => info!("device self-check passed"),
            Err(why) => fail(
                ExitCode::SetupFailed,
                format_args!("device self-check failed: {why}"),
            ),
        }
    }
    if let (Some(config), Some(bytes), Some(platform)) = (config, handover.config, PLATFORM.get())
        && !config.test_devices
        && !config.test_boot_only
    {
        let boot = crate::service::kernel::Boot {
            info,
            config_bytes: bytes,
            config,
        };
        crate::service::kernel::run(devices, boot, *platform)
    }
    info!("boot complete: not serving, exiting");
    exit(ExitCode::Success)
}

/// SEV-SNP, step 3 of `platform::snp`: the GHCB (the IDT already routes #VC to its handler),
/// then the console that needed it.
fn start_snp_console(pool: &'static SharedPool) -> tsc::Calibration {
    let Some(snp) = Snp::get() else {
        fail(
            ExitCode::SetupFailed,
            format_args!("no SEV-SNP platform for the deferred console"),
        )
    };
    if let Err(e) = snp.enable_ghcb(pool) {
        // No console yet: `fail` can only ask the hypervisor to end the guest.
        fail(
            ExitCode::SetupFailed,
            format_args!("GHCB set-up failed: {e}"),
        );
    }
    let calibration = start_console();
    CONSOLE_DEFERRED.store(false, Ordering::Relaxed);
    info!(
        "SEV-SNP: C-bit {}, GHCB registered, #VC handler active (CPUID from the validated CPUID page, {} entries)",
        snp.private_pte_mask().trailing_zeros(),
        crate::platform::snp::cpuid_table().map_or(0, |t| t.entries().len())
    );
    calibration
}

/// DESIGN §4: the deployment configuration's SHA-256 must be HOST_DATA of our own report.
fn check_snp_binding(snp: &Snp, config: &[u8]) {
    match snp.check_config_binding(config) {
        Ok(()) => info!("config: SHA-256 equals HOST_DATA of this enclave's SEV-SNP report"),
        Err(e @ crate::platform::snp::ConfigBindingError::Binding(_)) => fail(
            ExitCode::BadConfig,
            format_args!("refusing the deployment configuration: {e}"),
        ),
        Err(e) => fail(ExitCode::SetupFailed, format_args!("{e}")),
    }
}

fn smp_self_test(cpus: usize) {
    use ward_inference::parallel::Executor;
    let Some(pool) = crate::arch::smp::pool::get() else {
        fail(
            ExitCode::SetupFailed,
            format_args!("SMP self-test: no CPU pool"),
        )
    };
    let mask = PLATFORM.get().map_or(0, |p| p.private_pte_mask());
    let outcome = match crate::arch::smp::selftest::run(pool, mask) {
        Ok(outcome) => outcome,
        Err(e) => fail(ExitCode::SetupFailed, format_args!("SMP self-test: {e}")),
    };
    info!(
        "SMP self-test: {} elements in 2 MiB pages at {:#x}, serial sum {:#x} in {} us, parallel sum {:#x} in {} us on {} CPUs (APIC IDs {:?}) after {} round(s)",
        crate::arch::smp::selftest::ELEMENTS,
        outcome.buffer_address,
        outcome.serial,
        outcome.serial_micros,
        outcome.parallel,
        outcome.parallel_micros,
        outcome.cpus.len(),
        outcome.cpus,
        outcome.rounds
    );
    if !outcome.passed(cpus) {
        fail(
            ExitCode::SetupFailed,
            format_args!("SMP self-test failed: sums differ or not all {cpus} CPUs took part"),
        );
    }
    info!(
        "SMP self-test passed; one synchronisation point (empty run, {} tasks) costs {} ns",
        pool.workers(),
        outcome.empty_run_nanos
    );
}

fn report_memory(handover: &Handover, pool: &SharedPool) {
    let regions = handover.info.memory_map.regions();
    info!("memory map: {} regions", regions.len());
    for region in regions {
        let range = PhysRange::from_start_len(PhysAddr::new(region.start), region.length)
            .unwrap_or_default();
        info!(
            "  {range} {:>10} {}",
            Size(region.length),
            kind_name(region.kind)
        );
    }
    let (used, free) = heap::usage();
    info!(
        "heap: {} at {} ({} used, {} free)",
        Size(handover.heap.len()),
        handover.heap,
        Size(used as u64),
        Size(free as u64)
    );
    info!(
        "shared pool: {} pages at {} (mapped at {:#x})",
        pool.capacity(),
        handover.pool,
        SHARED_WINDOW
    );
    let audit = &handover.audit;
    info!(
        "paging: W^X checked over all mappings: RX {}, R {}, RW+NX {}, none writable and executable; page 0 unmapped; guard pages under {} stacks",
        Size(audit.read_execute),
        Size(audit.read_only),
        Size(audit.read_write),
        Stack::ALL.len()
    );
}

fn report_simd(features: &CpuFeatures) {
    let yes = |b: bool| if b { "yes" } else { "no" };
    info!(
        "SIMD level: {} (avx2 {}, fma {}, avx512f/bw/vl {}, avx512-vnni {}, xcr0 {:#x})",
        SimdLevel::select(features),
        yes(features.avx2),
        yes(features.fma),
        yes(features.avx512f && features.avx512bw && features.avx512vl),
        yes(features.avx512vnni),
        features.xcr0
    );
}

fn report_pci() -> Vec<pci::PciFunction> {
    let state = match ecam::enable_q35() {
        Ok(state) => state,
        Err(e) => {
            warn!("PCI: no ECAM ({e}); no devices enumerated");
            return Vec::new();
        }
    };
    let functions = pci::enumerate::enumerate(&ecam::Ecam::q35());
    info!(
        "PCI: {} functions via ECAM at {:#x} ({})",
        functions.len(),
        ecam::Q35_ECAM_BASE,
        match state {
            ecam::EcamState::AlreadyEnabled => "enabled by firmware",
            ecam::EcamState::EnabledByKernel => "enabled by the kernel",
        }
    );
    for function in &functions {
        let modern = if names::is_modern_virtio(function) {
            " (modern)"
        } else {
            ""
        };
        info!(
            "  PCI {} {:04x}:{:04x} class {:02x}.{:02x} {}{modern}",
            function.bdf,
            function.vendor_id,
            function.device_id,
            function.class,
            function.subclass,
            names::describe(function)
        );
    }
    functions
}

fn check_config(bytes: Option<&[u8]>, info: &BootInfo) -> Option<Config> {
    let Some(bytes) = bytes else {
        warn!("no deployment configuration (fw_cfg opt/ward/config): serving stays disabled");
        return None;
    };
    match Config::parse(bytes) {
        Ok(config) => {
            info!(
                "config: min_model_version={} slots={} queue={} cadence_ms={} sha256={}",
                config.min_model_version,
                config.slots,
                config.queue,
                config.cadence_ms,
                Hex(&info.config.sha256)
            );
            Some(config)
        }
        Err(e) => fail(
            ExitCode::BadConfig,
            format_args!("refusing the deployment configuration: {e}"),
        ),
    }
}
