//! The enclave's [`Executor`]: the boot CPU publishes each job on a [`Board`] and works on it
//! too; every application processor runs [`serve`], helping with each job it sees.
//!
//! Idle APs spin on the board for [`SPIN_BEFORE_HALT_MICROS`] after their last job — so the
//! runs of one forward pass follow each other without a wake-up — then announce that they
//! sleep and `hlt` with interrupts enabled only for that instruction. The publisher wakes every
//! announced sleeper with a fixed IPI ([`WAKE_VECTOR`]). The announcement and the generation
//! are sequentially consistent on both sides, and `sti; hlt` holds a pending IPI until the
//! halt, so no wake-up is lost; even if one were, the publisher would finish the job alone.
//! Halting matters under TCG and on shared hosts: an idle vCPU costs the host nothing.

use super::percpu;
use crate::arch::apic::LocalApic;
use crate::arch::tsc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Once;
use ward_inference::parallel::board::Board;
use ward_inference::parallel::{Executor, TaskIndex, WorkerIndex, run_inline};

/// The wake-up IPI's vector.
pub const WAKE_VECTOR: u8 = 0xf0;
/// How long an idle AP spins before halting.
pub const SPIN_BEFORE_HALT_MICROS: u64 = 1_000;

/// One CPU of the pool (index = CPU index; 0 is the boot CPU).
#[repr(align(64))]
pub struct Worker {
    apic_id: u32,
    sleeping: AtomicBool,
}

impl Worker {
    /// A CPU with this APIC ID.
    pub fn new(apic_id: u32) -> Self {
        Self {
            apic_id,
            sleeping: AtomicBool::new(false),
        }
    }

    /// Its APIC ID.
    pub fn apic_id(&self) -> u32 {
        self.apic_id
    }
}

/// The pool over every started CPU.
pub struct CpuPool {
    board: Board,
    workers: Vec<Worker>,
    apic: Option<LocalApic>,
    /// The boot CPU is inside `run` (a nested call runs inline).
    publishing: AtomicBool,
}

static POOL: Once<CpuPool> = Once::new();

/// Installs the pool (once; the APs wait for it before serving).
pub fn install(workers: Vec<Worker>, apic: Option<LocalApic>) -> &'static CpuPool {
    POOL.call_once(|| CpuPool {
        board: Board::new(),
        workers,
        apic,
        publishing: AtomicBool::new(false),
    })
}

/// The kernel's executor over all started CPUs, once SMP start-up is done.
pub fn get() -> Option<&'static CpuPool> {
    POOL.get()
}

impl CpuPool {
    fn wake_sleepers(&self) {
        let Some(apic) = &self.apic else { return };
        for worker in self.workers.iter().skip(1) {
            if worker.sleeping.swap(false, Ordering::SeqCst) {
                // A failed IPI leaves that worker asleep: the job still completes without it.
                let _ = apic.send_fixed(worker.apic_id, WAKE_VECTOR);
            }
        }
    }

    /// The APIC IDs of the pool's CPUs, by CPU index.
    pub fn apic_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.workers.iter().map(|w| w.apic_id)
    }
}

impl Executor for CpuPool {
    fn workers(&self) -> usize {
        self.workers.len()
    }

    fn run(&self, tasks: usize, task: &(dyn Fn(TaskIndex, WorkerIndex) + Sync)) {
        match percpu::current() {
            None | Some(0) => {}
            // An application processor inside a task: nested, run inline as itself.
            Some(cpu) => return run_inline(tasks, WorkerIndex(cpu), task),
        }
        if tasks <= 1 || self.workers.len() <= 1 {
            return run_inline(tasks, WorkerIndex(0), task);
        }
        if self.publishing.swap(true, Ordering::Acquire) {
            // The boot CPU's own task called `run` again.
            return run_inline(tasks, WorkerIndex(0), task);
        }
        self.board
            .run(tasks, WorkerIndex(0), task, || self.wake_sleepers());
        self.publishing.store(false, Ordering::Release);
    }
}

/// Halts until an interrupt, with interrupts enabled for the halt only (`sti` delays them by one
/// instruction, so one that became pending before is taken in the halt and ends it).
fn halt_until_interrupt() {
    // SAFETY: the IDT of this CPU has gates for the wake-up and spurious vectors (the only
    // interrupts an AP can get: its LVT entries are masked since reset and the PIC is wired to
    // the boot CPU only); interrupts are off again before any other code runs.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}

/// The application processor `cpu`'s life once started: wait for the pool, then help with
/// every job, halting when idle.
pub fn serve(cpu: usize) -> ! {
    let pool = loop {
        if let Some(pool) = POOL.get() {
            break pool;
        }
        core::hint::spin_loop();
    };
    let Some(me) = pool.workers.get(cpu) else {
        park()
    };
    let hz = tsc::frequency();
    let spin_ticks = if hz == 0 {
        3_000_000
    } else {
        hz / 1_000_000 * SPIN_BEFORE_HALT_MICROS
    };
    let mut seen = pool.board.generation();
    let mut last = tsc::rdtsc();
    loop {
        if pool.board.help(&mut seen, WorkerIndex(cpu)) {
            last = tsc::rdtsc();
            continue;
        }
        if tsc::rdtsc().wrapping_sub(last) < spin_ticks {
            core::hint::spin_loop();
            continue;
        }
        me.sleeping.store(true, Ordering::SeqCst);
        if pool.board.generation() != seen {
            me.sleeping.store(false, Ordering::Relaxed);
            continue;
        }
        halt_until_interrupt();
        me.sleeping.store(false, Ordering::Relaxed);
        last = tsc::rdtsc();
    }
}

/// Stops this CPU for good (interrupts off).
pub fn park() -> ! {
    loop {
        // SAFETY: with interrupts off, HLT stops the CPU; only NMI/INIT could wake it, and the
        // loop halts again.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
