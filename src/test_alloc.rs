//! The unit tests' global allocator: the system allocator, plus a count of
//! the bytes each thread has live and the most it had live since it last
//! asked. The parsers' property tests (`*/props.rs`) use it to check "no
//! unbounded allocation": the peak a parse reaches, measured on the parsing
//! thread, must stay within a bound derived from the input's length, so a
//! claimed length or count in the input can never make the daemon reserve
//! memory it was not sent. Counted per thread so tests running in parallel
//! do not see each other's allocations. Compiled into the test build only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

fn grew(bytes: usize) {
    // `try_with`: allocations during thread teardown are simply not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping
// touches only const-initialised thread-locals without destructors, which
// never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // Counted as the new block arriving before the old one leaves,
            // which is what a moving realloc costs at its peak.
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the most bytes this thread had
/// allocated at once during the call, beyond what it held before.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, peak.saturating_sub(before))
}

#[cfg(test)]
mod tests {
    use super::peak_during;

    #[test]
    fn counts_what_the_thread_allocates() {
        let (v, peak) = peak_during(|| vec![0u8; 100_000]);
        assert!(peak >= 100_000, "{peak}");
        drop(v);
        let ((), peak) = peak_during(|| {
            for _ in 0..10 {
                drop(std::hint::black_box(vec![0u8; 10_000]));
            }
        });
        assert!((10_000..20_000).contains(&peak), "one block at a time: {peak}");
    }
}
