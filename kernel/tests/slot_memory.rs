//! The load-time memory check's figures (`service::memory`) against what the batcher really
//! allocates: a counting allocator measures the heap bytes `Batcher::new` takes and the most
//! held while every slot answers, for tiny generated models of two shapes. Every slot samples
//! with all its buffers at their largest (every token a candidate, penalties over a history that
//! fills the slot), so the estimate's sampler figures are measured too. The estimate must cover
//! the real figure and stay within a few hundred bytes per slot of it, so a change of the
//! batcher's buffers in `ward_inference` shows up here rather than as a failed allocation in the
//! enclave.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use ward_inference::batcher::BatcherMemory;
use ward_inference::batcher::{Batcher, BatcherConfig};
use ward_inference::gguf::Gguf;
use ward_inference::kernels::Kernels;
use ward_inference::model::Model;
use ward_inference::parallel::Serial;
use ward_inference::sampler::SamplerConfig;
use ward_tools::tiny_model::{TinyModelSpec, tiny_model_gguf};

/// Counts the live heap bytes of the allocating thread (the test harness runs other threads).
struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn record(delta: i64) {
    // `try_with`: allocations while a thread's locals are torn down are not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record(layout.size() as i64);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            record(layout.size() as i64);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        record(-(layout.size() as i64));
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) };
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            record(new_size as i64 - layout.size() as i64);
        }
        new
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn live() -> i64 {
    LIVE.with(Cell::get)
}

/// Restarts the peak at the current live figure.
fn reset_peak() {
    PEAK.with(|peak| peak.set(live()));
}

fn peak() -> i64 {
    PEAK.with(Cell::get)
}

/// Tokens every slot answers with.
const ANSWER: usize = 8;

/// Sampling that grows every sampler buffer to its largest: no filter (every token stays a
/// candidate with a probability) and penalties over the whole history.
fn widest_sampling(seed: u64) -> SamplerConfig {
    SamplerConfig {
        temperature: 0.8,
        repeat_penalty: 1.1,
        penalty_last_n: usize::MAX,
        seed,
        ..SamplerConfig::greedy()
    }
}

/// Builds a batcher of `slots` slots for `spec`, has every slot read a prompt that fills it with
/// its answer and answer, and compares the heap it took with the estimate.
fn check(spec: &TinyModelSpec, slots: usize, capacity: usize, prefill_chunk: usize) {
    let bytes = tiny_model_gguf(spec);
    let gguf = Gguf::parse(&bytes).unwrap();
    let model = Model::from_gguf(&gguf, Kernels::detect()).unwrap();
    let config = BatcherConfig {
        slots,
        capacity,
        prefill_chunk,
    };
    let estimate = BatcherMemory::of(model.config(), &config);
    // The last answer token is not fed back: prompt and answer fill `capacity + 1` positions.
    // (Made before the measure starts: it is the test's, not the batcher's.)
    let prompt: Vec<u32> = (0..capacity + 1 - ANSWER)
        .map(|i| 3 + (i % 200) as u32)
        .collect();
    let before = live();
    reset_peak();
    let mut batcher = Batcher::new(&model, config);
    let built = live() - before;
    for seed in 0..slots as u64 {
        batcher
            .start(&prompt, ANSWER, widest_sampling(seed))
            .expect("a free slot");
    }
    while batcher.busy() > 0 {
        let emitted = batcher.step(&model, &Serial).unwrap().to_vec();
        for token in emitted.iter().filter(|t| t.last) {
            batcher.release(token.slot).unwrap();
        }
    }
    let held = peak() - before;
    drop(batcher);

    let total = estimate.total() as i64;
    eprintln!(
        "{spec:?}, {slots} slots of {capacity}, chunk {prefill_chunk}: built {built} B, at most {held} B while answering, estimate {total} B"
    );
    assert!(built <= total, "built {built} > estimate {total}");
    assert!(held <= total, "held {held} > estimate {total}");
    // Close: every buffer is counted at its real size, but the penalties' window, which the
    // estimate counts at the most its doubling growth could reach (the measured slots reach it
    // but for the prompt's last few positions).
    let slack = slots as i64 * 512;
    assert!(
        total <= held + slack,
        "estimate {total} more than {slack} bytes above the {held} bytes really held"
    );
}

#[test]
fn the_estimate_covers_what_the_batcher_allocates() {
    check(&TinyModelSpec::default(), 1, 512, 512);
    check(&TinyModelSpec::default(), 4, 256, 64);
    let wider = TinyModelSpec {
        layers: 3,
        dim: 128,
        heads: 8,
        kv_heads: 2,
        ffn: 384,
        context: 1024,
        seed: 2,
    };
    check(&wider, 3, 1024, 512);
    check(&wider, 8, 300, 33);
}
