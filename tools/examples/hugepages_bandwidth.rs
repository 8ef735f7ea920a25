//! Read bandwidth over a weight-sized buffer with 4 KiB pages and with transparent huge pages
//! (`ward_tools::hugepages`), on 1 and 2 threads: the memory-bound loop of a decode step.
//!
//! `cargo run --release -p ward-tools --example hugepages_bandwidth [MiB]` (default 256).

use std::time::Instant;
use ward_inference::parallel::{Executor, RowBlocks, ThreadPool};
use ward_tools::hugepages::{HugeBuffer, PageAdvice};

fn sum_words(bytes: &[u8]) -> u64 {
    // Eight independent accumulators so the loop is bound by loads, not by an add chain.
    let mut acc = [0u64; 8];
    for chunk in bytes.chunks_exact(64) {
        for (a, word) in acc.iter_mut().zip(chunk.chunks_exact(8)) {
            *a = a.wrapping_add(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
        }
    }
    acc.iter().fold(0, |s, a| s.wrapping_add(*a))
}

fn gb_per_s(buffer: &HugeBuffer, pool: &dyn Executor) -> f64 {
    let blocks = RowBlocks::new(buffer.len() / 64, 1024, pool.workers() * 4);
    let pass = || {
        let sums: Vec<std::sync::atomic::AtomicU64> =
            (0..blocks.count()).map(|_| Default::default()).collect();
        pool.run(blocks.count(), &|task, _| {
            let rows = blocks.block(task);
            let sum = sum_words(&buffer[rows.start * 64..rows.end * 64]);
            sums[task.0].store(sum, std::sync::atomic::Ordering::Relaxed);
        });
        std::hint::black_box(sums);
    };
    pass();
    let passes = 10;
    let start = Instant::now();
    for _ in 0..passes {
        pass();
    }
    (buffer.len() * passes) as f64 / start.elapsed().as_secs_f64() / 1e9
}

fn main() -> std::io::Result<()> {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let len = mib << 20;
    let mut small = HugeBuffer::with_advice(len, PageAdvice::Small)?;
    let mut huge = HugeBuffer::with_advice(len, PageAdvice::Huge)?;
    for (i, byte) in small.iter_mut().enumerate() {
        *byte = i as u8;
    }
    huge.copy_from_slice(&small);
    println!(
        "{mib} MiB buffers: huge-page backed {} MiB (THP advice) vs {} MiB (no-THP advice)",
        huge.huge_bytes().unwrap_or(0) >> 20,
        small.huge_bytes().unwrap_or(0) >> 20
    );
    for threads in [1, 2] {
        let pool = ThreadPool::new(threads)?;
        let s = gb_per_s(&small, &pool);
        let h = gb_per_s(&huge, &pool);
        println!(
            "{threads} thread(s): 4 KiB pages {s:6.2} GB/s, 2 MiB pages {h:6.2} GB/s ({:.2}x)",
            h / s
        );
    }
    Ok(())
}
