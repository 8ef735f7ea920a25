//! The SMP self-test (configuration key `test_smp`): a sum over a large array split across
//! the pool, compared with the same sum computed serially, recording which CPUs (by the APIC
//! ID CPUID reports, independent of the pool's own bookkeeping) ran tasks. Repeated until every
//! CPU took part or [`MAX_ROUNDS`] rounds passed. The data lives in a [`LargeBuffer`].

use super::pool::CpuPool;
use crate::arch::tsc;
use crate::mm::large_pages::{LargeBuffer, LargeBufferError};
use alloc::vec::Vec;
use core::arch::x86_64::__cpuid_count;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use ward_inference::parallel::{Executor, RowBlocks};

/// Elements summed (16 MiB of `u32`).
pub const ELEMENTS: usize = 4 << 20;
/// Most parallel rounds tried before giving up on a CPU that never takes part.
pub const MAX_ROUNDS: usize = 20;

/// What the self-test saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The serial sum.
    pub serial: u64,
    /// The parallel sum (of the last round).
    pub parallel: u64,
    /// APIC IDs of the CPUs that ran at least one task, sorted.
    pub cpus: Vec<u32>,
    /// Rounds run.
    pub rounds: usize,
    /// Time of the serial sum, in microseconds.
    pub serial_micros: u64,
    /// Time of the last parallel round, in microseconds.
    pub parallel_micros: u64,
    /// Physical address of the data (a 2 MiB-page mapped buffer).
    pub buffer_address: u64,
    /// Cost of one synchronisation point: the mean time of an empty run with one task per
    /// CPU, back to back (helpers spinning), in nanoseconds.
    pub empty_run_nanos: u64,
}

impl Outcome {
    /// Whether the sums agree and every one of `expected_cpus` took part.
    pub fn passed(&self, expected_cpus: usize) -> bool {
        self.serial == self.parallel && self.cpus.len() == expected_cpus
    }
}

/// This CPU's APIC ID as CPUID reports it (x2APIC leaf 0xB when present, else leaf 1).
fn cpuid_apic_id() -> u32 {
    if __cpuid_count(0, 0).eax >= 0xb && __cpuid_count(0xb, 0).ebx != 0 {
        __cpuid_count(0xb, 0).edx
    } else {
        __cpuid_count(1, 0).ebx >> 24
    }
}

fn mix(value: u32) -> u64 {
    let v = u64::from(value);
    v.wrapping_mul(v) ^ (v >> 3)
}

/// Runs this many empty jobs to time one synchronisation point.
const EMPTY_RUNS: u64 = 1000;

fn empty_run_nanos(pool: &CpuPool) -> u64 {
    let tasks = pool.workers();
    pool.run(tasks, &|_, _| {});
    let start = tsc::rdtsc();
    for _ in 0..EMPTY_RUNS {
        pool.run(tasks, &|task, _| {
            core::hint::black_box(task);
        });
    }
    micros(tsc::rdtsc().wrapping_sub(start)) * 1000 / EMPTY_RUNS
}

fn micros(ticks: u64) -> u64 {
    match tsc::frequency() {
        0 => 0,
        hz => (ticks as u128 * 1_000_000 / hz as u128) as u64,
    }
}

fn sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks_exact(4)
        .map(|c| mix(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .fold(0u64, u64::wrapping_add)
}

/// Runs the self-test on `pool`, over a buffer in 2 MiB pages ([`LargeBuffer`], which also
/// exercises that allocator).
pub fn run(pool: &CpuPool, private_mask: u64) -> Result<Outcome, LargeBufferError> {
    let mut data = LargeBuffer::allocate(ELEMENTS * 4, private_mask)?;
    let mut state = 0x9e37_79b9u32;
    for chunk in data.chunks_exact_mut(4) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    let data_address = data.physical_start();
    let data = &*data;
    let start = tsc::rdtsc();
    let serial = sum(data);
    let serial_micros = micros(tsc::rdtsc().wrapping_sub(start));

    let blocks = RowBlocks::for_workers(ELEMENTS, 4096, pool);
    let partial: Vec<AtomicU64> = (0..blocks.count()).map(|_| AtomicU64::new(0)).collect();
    let ran_on: Vec<AtomicU32> = (0..blocks.count()).map(|_| AtomicU32::new(0)).collect();
    let mut cpus: Vec<u32> = Vec::new();
    let mut outcome = Outcome {
        serial,
        parallel: 0,
        cpus: Vec::new(),
        rounds: 0,
        serial_micros,
        parallel_micros: 0,
        buffer_address: 0,
        empty_run_nanos: 0,
    };
    for round in 1..=MAX_ROUNDS {
        let start = tsc::rdtsc();
        pool.run(blocks.count(), &|task, _worker| {
            let rows = blocks.block(task);
            partial[task.0].store(sum(&data[rows.start * 4..rows.end * 4]), Ordering::Relaxed);
            ran_on[task.0].store(cpuid_apic_id(), Ordering::Relaxed);
        });
        outcome.parallel_micros = micros(tsc::rdtsc().wrapping_sub(start));
        outcome.parallel = partial
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add);
        outcome.rounds = round;
        for id in ran_on.iter().map(|r| r.load(Ordering::Relaxed)) {
            if !cpus.contains(&id) {
                cpus.push(id);
            }
        }
        if outcome.parallel != serial || cpus.len() >= pool.workers() {
            break;
        }
    }
    cpus.sort_unstable();
    outcome.cpus = cpus;
    outcome.empty_run_nanos = empty_run_nanos(pool);
    outcome.buffer_address = data_address;
    Ok(outcome)
}
