//! Starting the application processors and their first Rust code (see the module
//! documentation of [`super`]).

use super::{fw_cfg, madt, percpu, pool, stacks, trampoline};
use crate::arch::apic::{ApicMode, LocalApic, SPURIOUS_VECTOR};
use crate::arch::cpu_features::CpuFeatures;
use crate::arch::paging::layout::{MAX_CPUS, Stack};
use crate::arch::{gdt, idt, tsc};
use crate::mm::address::VirtAddr;
use crate::platform::{ApStartError, ApStartup, Platform};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use log::{info, warn};
use ward_bootinfo::{MemoryRegion, PlatformKind};

/// How long the boot CPU waits for an AP to check in.
pub const AP_START_TIMEOUT_MICROS: u64 = 2_000_000;

/// The xAPIC EOI register's address, read by the wake-up handler (`entry.s`).
static XAPIC_EOI_REGISTER: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    include_str!("entry.s"),
    ap_main = sym ap_main,
    eoi = sym XAPIC_EOI_REGISTER,
);

unsafe extern "C" {
    fn ward_ap_long_mode();
    fn ward_ap_wake_x2apic();
    fn ward_ap_wake_xapic();
    fn ward_ap_spurious();
}

/// The AP has not checked in yet.
const WAITING: u32 = 0;
/// The AP checked in and serves the pool.
const RUNNING: u32 = 1;
/// The boot CPU gave up waiting: the AP halts if it arrives.
const ABANDONED: u32 = 2;
/// The AP refused to run: its SIMD state or APIC differs from the boot CPU's.
const REFUSED: u32 = 3;

/// What an AP is told at start (its argument), and how it answers.
pub struct ApBoot {
    cpu: usize,
    xcr0: u64,
    apic_mode: ApicMode,
    state: AtomicU32,
    /// The XCR0 the AP found, when it refused.
    found_xcr0: AtomicU64,
}

/// Why SMP start-up stopped early (the CPUs started so far still serve).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmpError {
    /// The platform could not start the AP.
    Start(ApStartError),
    /// Its stacks could not be mapped.
    Stacks(crate::arch::paging::mapper::MapError),
    /// It did not check in within [`AP_START_TIMEOUT_MICROS`].
    Timeout,
    /// It checked in with a different XCR0 than the boot CPU's.
    SimdMismatch {
        /// The boot CPU's XCR0.
        expected: u64,
        /// The AP's.
        found: u64,
    },
}

impl fmt::Display for SmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Start(error) => write!(f, "{error}"),
            Self::Stacks(error) => write!(f, "mapping its stacks failed: {error}"),
            Self::Timeout => write!(
                f,
                "it did not check in within {} ms",
                AP_START_TIMEOUT_MICROS / 1000
            ),
            Self::SimdMismatch { expected, found } => {
                write!(f, "its XCR0 is {found:#x}, the boot CPU's {expected:#x}")
            }
        }
    }
}

/// What start-up achieved.
#[derive(Clone, Copy, Debug)]
pub struct SmpSummary {
    /// CPUs running (the boot CPU included).
    pub cpus: usize,
    /// CPUs the MADT lists (0 when it could not be read).
    pub listed: usize,
    /// The APIC mode.
    pub apic: Option<ApicMode>,
}

/// Busy-waits `micros` on the TSC (assuming at most 4 GHz before calibration).
pub fn delay_micros(micros: u64) {
    let hz = match tsc::frequency() {
        0 => 4_000_000_000,
        hz => hz,
    };
    let ticks = micros.saturating_mul(hz / 1_000_000);
    let start = tsc::rdtsc();
    while tsc::rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// Why the CPU list could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyError {
    /// No fw_cfg device.
    NoFwCfg,
    /// fw_cfg has no `etc/acpi/tables`.
    NoAcpiTables,
    /// The tables hold no valid MADT.
    Madt(madt::MadtError),
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoFwCfg => f.write_str("no fw_cfg device"),
            Self::NoAcpiTables => f.write_str("no etc/acpi/tables in fw_cfg"),
            Self::Madt(error) => write!(f, "ACPI tables: {error}"),
        }
    }
}

/// The enabled APIC IDs from the MADT in fw_cfg `etc/acpi/tables`.
fn listed_apic_ids() -> Result<Vec<u32>, TopologyError> {
    let mut device = fw_cfg::FwCfg::probe().ok_or(TopologyError::NoFwCfg)?;
    let file = device
        .find("etc/acpi/tables")
        .ok_or(TopologyError::NoAcpiTables)?;
    device.open(file);
    let madt =
        madt::find_table(&mut device, file.size as usize, b"APIC").map_err(TopologyError::Madt)?;
    madt::enabled_apic_ids(&madt).map_err(TopologyError::Madt)
}

/// Starts every AP the MADT lists (at most [`MAX_CPUS`] CPUs in all), installs the pool and
/// returns what happened. Runs on the boot CPU after its own GDT and IDT, before anything
/// uses the pool.
pub fn start(regions: &[MemoryRegion], platform: &dyn Platform) -> SmpSummary {
    percpu::set_current(0);
    let apic = match LocalApic::detect() {
        Ok(apic) => apic,
        Err(error) => {
            warn!("SMP: local APIC unusable ({error}): running on one CPU");
            pool::install(alloc::vec![pool::Worker::new(0)], None);
            return SmpSummary {
                cpus: 1,
                listed: 0,
                apic: None,
            };
        }
    };
    if let ApicMode::XApic(base) = apic.mode() {
        XAPIC_EOI_REGISTER.store(base + 0xb0, Ordering::Relaxed);
    }
    let bsp_id = apic.id();
    let mut workers = alloc::vec![pool::Worker::new(bsp_id)];
    let listed = match listed_apic_ids() {
        Ok(ids) => ids,
        Err(why) => {
            warn!("SMP: {why}: running on one CPU");
            Vec::new()
        }
    };
    let others: Vec<u32> = listed.iter().copied().filter(|&id| id != bsp_id).collect();
    if !others.is_empty() {
        start_others(regions, platform, apic, &others, &mut workers);
    }
    let cpus = workers.len();
    pool::install(workers, Some(apic));
    SmpSummary {
        cpus,
        listed: listed.len(),
        apic: Some(apic.mode()),
    }
}

fn start_others(
    regions: &[MemoryRegion],
    platform: &dyn Platform,
    apic: LocalApic,
    others: &[u32],
    workers: &mut Vec<pool::Worker>,
) {
    // Only the native start-up path enters through the real-mode trampoline; confidential
    // platforms start APs in long mode and must not have low memory written behind their back.
    let trampoline = if platform.kind() == PlatformKind::Native {
        match trampoline::Trampoline::install(regions, platform.private_pte_mask()) {
            Ok(trampoline) => Some(trampoline),
            Err(error) => {
                warn!("SMP: {error}: running on one CPU");
                return;
            }
        }
    } else {
        None
    };
    let xcr0 = CpuFeatures::detect().xcr0;
    for &apic_id in others.iter().take(MAX_CPUS - 1) {
        let cpu = workers.len();
        match start_one(cpu, apic_id, apic, xcr0, platform, trampoline.as_ref()) {
            Ok(()) => workers.push(pool::Worker::new(apic_id)),
            Err(error) => {
                warn!(
                    "SMP: CPU {cpu} (APIC ID {apic_id}) not started: {error}; continuing with {} CPUs",
                    workers.len()
                );
                return;
            }
        }
    }
    let ids: Vec<u32> = workers.iter().map(pool::Worker::apic_id).collect();
    let mode = match apic.mode() {
        ApicMode::X2Apic => "x2APIC",
        ApicMode::XApic(_) => "xAPIC",
    };
    info!(
        "SMP: {} CPUs started, APIC IDs {ids:?} ({mode}, {} listed in the MADT)",
        workers.len(),
        others.len() + 1
    );
}

/// The trampoline-alive probe where there is no trampoline.
fn never_alive() -> bool {
    false
}

fn start_one(
    cpu: usize,
    apic_id: u32,
    apic: LocalApic,
    xcr0: u64,
    platform: &dyn Platform,
    trampoline: Option<&trampoline::Trampoline>,
) -> Result<(), SmpError> {
    stacks::map_for_cpu(cpu, platform.private_pte_mask()).map_err(SmpError::Stacks)?;
    let boot: &'static ApBoot = Box::leak(Box::new(ApBoot {
        cpu,
        xcr0,
        apic_mode: apic.mode(),
        state: AtomicU32::new(WAITING),
        found_xcr0: AtomicU64::new(0),
    }));
    let argument = core::ptr::from_ref(boot) as u64;
    let stack_top = Stack::Kernel.top_on(cpu);
    if let Some(trampoline) = trampoline {
        trampoline.prepare(stack_top, argument);
    }
    let startup = ApStartup {
        apic,
        trampoline_vector: trampoline.map_or(0, trampoline::Trampoline::vector),
        trampoline_alive: if trampoline.is_some() {
            trampoline::alive
        } else {
            never_alive
        },
        long_mode_entry: VirtAddr::new(ward_ap_long_mode as *const () as u64),
        stack_top,
        argument,
    };
    platform
        .start_application_processor(apic_id, &startup)
        .map_err(SmpError::Start)?;
    let hz = tsc::frequency().max(1_000_000);
    let deadline = AP_START_TIMEOUT_MICROS * (hz / 1_000_000);
    let start = tsc::rdtsc();
    loop {
        match boot.state.load(Ordering::Acquire) {
            RUNNING => return Ok(()),
            REFUSED => {
                return Err(SmpError::SimdMismatch {
                    expected: xcr0,
                    found: boot.found_xcr0.load(Ordering::Relaxed),
                });
            }
            _ => {}
        }
        if tsc::rdtsc().wrapping_sub(start) > deadline
            && boot
                .state
                .compare_exchange(WAITING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Err(SmpError::Timeout);
        }
        core::hint::spin_loop();
    }
}

/// An AP's first Rust code, on its own kernel stack with the kernel's tables (`entry.s`).
extern "sysv64" fn ap_main(argument: u64) -> ! {
    // SAFETY: the boot CPU passed a pointer to a leaked `ApBoot` as the argument.
    let boot = unsafe { &*(argument as *const ApBoot) };
    gdt::init_for_cpu(boot.cpu);
    let wake = match boot.apic_mode {
        ApicMode::X2Apic => ward_ap_wake_x2apic as *const () as u64,
        ApicMode::XApic(_) => ward_ap_wake_xapic as *const () as u64,
    };
    idt::init_with(&[
        (pool::WAKE_VECTOR, wake),
        (SPURIOUS_VECTOR, ward_ap_spurious as *const () as u64),
    ]);
    percpu::set_current(boot.cpu);
    let found = CpuFeatures::detect().xcr0;
    let apic = LocalApic::enter(boot.apic_mode);
    let verdict = match (&apic, found == boot.xcr0) {
        (Ok(apic), true) => {
            apic.enable();
            RUNNING
        }
        _ => {
            boot.found_xcr0.store(found, Ordering::Relaxed);
            REFUSED
        }
    };
    if boot
        .state
        .compare_exchange(WAITING, verdict, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
        || verdict != RUNNING
    {
        pool::park()
    }
    pool::serve(boot.cpu)
}

/// The native start-up sequence (Intel SDM vol. 3 §9.4.4.1, MP specification B.4): INIT,
/// 10 ms, start-up IPI, and a second start-up IPI if the trampoline has not signalled within
/// 1 ms (a second one is ignored by a CPU already running).
pub fn start_with_sipi(apic_id: u32, startup: &ApStartup) -> Result<(), ApStartError> {
    let apic = startup.apic;
    apic.send_init(apic_id).map_err(ApStartError::Apic)?;
    delay_micros(10_000);
    apic.send_startup(apic_id, startup.trampoline_vector)
        .map_err(ApStartError::Apic)?;
    for _ in 0..10 {
        if (startup.trampoline_alive)() {
            return Ok(());
        }
        delay_micros(100);
    }
    apic.send_startup(apic_id, startup.trampoline_vector)
        .map_err(ApStartError::Apic)
}
