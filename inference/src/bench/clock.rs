//! The time source of a benchmark.

/// A monotonic clock in nanoseconds. Only differences between two readings are used, so the
/// origin is free (boot, process start).
pub trait Clock {
    fn now_ns(&self) -> u64;
}

/// Any `Fn() -> u64` returning nanoseconds is a clock (a plain `fn` in the kernel, a closure
/// over `std::time::Instant` on the host).
impl<F: Fn() -> u64> Clock for F {
    fn now_ns(&self) -> u64 {
        self()
    }
}
