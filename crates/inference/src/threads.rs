//! How many threads one scoring job uses.
//!
//! candle's CPU kernels parallelize through the rayon pool they run in. The service runs several
//! jobs at once, one per blocking thread; measured on 2 cores, two threads per forward pass barely
//! beat one, while jobs side by side each keep single-thread speed (docs/benchmarks.md). So each
//! calling thread gets its own small rayon pool (one thread by default) and the forward pass runs
//! there, instead of every job competing for the one global pool.

use std::cell::RefCell;
use std::sync::Arc;

use rayon::ThreadPool;

thread_local! {
    /// This thread's pools, by size (normally exactly one).
    static POOLS: RefCell<Vec<(usize, Arc<ThreadPool>)>> = const { RefCell::new(Vec::new()) };
}

fn pool(threads: usize) -> Option<Arc<ThreadPool>> {
    POOLS.with(|pools| {
        let mut pools = pools.borrow_mut();
        if let Some((_, pool)) = pools.iter().find(|(n, _)| *n == threads) {
            return Some(pool.clone());
        }
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .ok()?,
        );
        pools.push((threads, pool.clone()));
        Some(pool)
    })
}

/// Runs `f` on this thread's pool of `threads` threads.
pub(crate) fn run_with_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    match pool(threads.max(1)) {
        Some(pool) => pool.install(f),
        // A pool that cannot be built (no threads left) degrades to the global pool.
        None => f(),
    }
}
