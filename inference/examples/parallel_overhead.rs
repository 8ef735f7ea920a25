//! Measures the host executor: the cost of one `run` (the per-layer synchronisation point)
//! against spawning scoped threads, and a memory-bound matrix-vector product split into 1, 4 or
//! 16 row blocks per worker.
//!
//! `cargo run --release -p ward-inference --features std --example parallel_overhead`

use std::hint::black_box;
use std::time::Instant;
use ward_inference::parallel::{Executor, RowBlocks, Serial, ThreadPool};

fn per_run_micros(executor: &dyn Executor, tasks: usize, runs: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..runs {
        executor.run(tasks, &|task, _| {
            black_box(task);
        });
    }
    start.elapsed().as_secs_f64() * 1e6 / runs as f64
}

fn scoped_spawn_micros(threads: usize, runs: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..runs {
        std::thread::scope(|scope| {
            for t in 0..threads {
                scope.spawn(move || black_box(t));
            }
        });
    }
    start.elapsed().as_secs_f64() * 1e6 / runs as f64
}

/// y = W x with W `rows × cols` f32: one pass over W per call.
fn matvec(executor: &dyn Executor, w: &[f32], x: &[f32], y: &mut [f32], blocks: RowBlocks) {
    let cols = x.len();
    let out = y.as_mut_ptr() as usize;
    executor.run_rows(blocks, &|rows, _| {
        for row in rows {
            let sum: f32 = w[row * cols..(row + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum();
            // SAFETY: each row index belongs to exactly one block, so writes never overlap, and
            // `y` outlives the run.
            unsafe { *(out as *mut f32).add(row) = sum };
        }
    });
}

fn main() {
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let pool = ThreadPool::new(workers).expect("threads");
    println!("workers: {workers}");
    for tasks in [workers, 4 * workers, 64] {
        let _ = per_run_micros(&pool, tasks, 2_000);
        println!(
            "empty run, {tasks:>3} tasks: {:8.2} µs per run (pool, warm)",
            per_run_micros(&pool, tasks, 20_000)
        );
    }
    println!(
        "scoped spawn of {workers} threads: {:8.2} µs per run",
        scoped_spawn_micros(workers, 2_000)
    );

    let (rows, cols) = (16_384, 1_024); // 64 MiB of f32: out of cache
    let w: Vec<f32> = (0..rows * cols).map(|i| (i % 13) as f32 * 0.25).collect();
    let x: Vec<f32> = (0..cols).map(|i| (i % 7) as f32 - 3.0).collect();
    let mut y = vec![0.0f32; rows];
    let mut reference = vec![0.0f32; rows];
    matvec(&Serial, &w, &x, &mut reference, RowBlocks::new(rows, 16, 1));
    let bytes = (rows * cols * 4) as f64;
    let timed = |executor: &dyn Executor, blocks: RowBlocks, y: &mut [f32]| {
        matvec(executor, &w, &x, y, blocks);
        let runs = 20;
        let start = Instant::now();
        for _ in 0..runs {
            matvec(executor, &w, &x, y, blocks);
        }
        bytes * runs as f64 / start.elapsed().as_secs_f64() / 1e9
    };
    println!(
        "matvec 64 MiB f32, serial:                {:6.2} GB/s",
        timed(&Serial, RowBlocks::new(rows, 16, 1), &mut y)
    );
    for per_worker in [1, 4, 16] {
        let blocks = RowBlocks::new(rows, 16, per_worker * workers);
        let rate = timed(&pool, blocks, &mut y);
        assert_eq!(y, reference);
        println!("matvec 64 MiB f32, pool, {per_worker:>2} blocks/worker: {rate:6.2} GB/s");
    }
}
