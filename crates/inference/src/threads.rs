//! How many threads one scoring job uses, and at what scheduling priority.
//!
//! candle's CPU kernels parallelize through the rayon pool they run in. The service runs several
//! jobs at once, one per blocking thread; measured on 2 cores, two threads per forward pass barely
//! beat one, while jobs side by side each keep single-thread speed (docs/benchmarks.md). So each
//! calling thread gets its own small rayon pool (one thread by default) and the forward pass runs
//! there, instead of every job competing for the one global pool.
//!
//! The pool's threads can run at a lower priority than the rest of the process (a nice value): a
//! scoring job is seconds of CPU, while the threads that answer `/healthz` and refusals need
//! microseconds, which on a saturated machine otherwise wait a scheduler slice behind the jobs.
//! The service leaves it off by default: measured, it shaved a millisecond or two off /healthz at
//! 10x load and halved goodput under a storm of refusals (docs/benchmarks.md).

use std::cell::RefCell;
use std::sync::Arc;

use rayon::ThreadPool;

/// Largest nice value Linux accepts: the lowest priority of `SCHED_OTHER`.
pub const MAX_JOB_NICE: u8 = 19;

/// Sets the calling thread's nice value (0 leaves it alone). Raising it needs no privilege.
fn set_current_thread_nice(nice: u8) -> Result<(), String> {
    if nice == 0 {
        return Ok(());
    }
    if nice > MAX_JOB_NICE {
        return Err(format!("nice {nice} is above {MAX_JOB_NICE}"));
    }
    // On Linux a PRIO_PROCESS priority with no pid applies to the calling thread only.
    rustix::process::setpriority_process(None, i32::from(nice))
        .map_err(|e| format!("cannot set nice {nice} on a job thread: {e}"))
}

/// Checks that this process may run jobs at `nice`, on a throwaway thread, so a refusal shows at
/// start-up and not as jobs silently left at the inherited priority.
pub(crate) fn check_job_nice(nice: u8) -> Result<(), String> {
    std::thread::spawn(move || set_current_thread_nice(nice))
        .join()
        .map_err(|_| "the priority check thread panicked".to_string())?
}

/// What a pool is made for: its size and its threads' priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolShape {
    pub threads: usize,
    /// Nice value of the pool's threads (0: the creating thread's).
    pub nice: u8,
}

thread_local! {
    /// This thread's pools, by shape (normally exactly one).
    static POOLS: RefCell<Vec<(PoolShape, Arc<ThreadPool>)>> = const { RefCell::new(Vec::new()) };
}

fn pool(shape: PoolShape) -> Option<Arc<ThreadPool>> {
    POOLS.with(|pools| {
        let mut pools = pools.borrow_mut();
        if let Some((_, pool)) = pools.iter().find(|(s, _)| *s == shape) {
            return Some(pool.clone());
        }
        let nice = shape.nice;
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(shape.threads)
                // `check_job_nice` proved at configuration that the nice value can be set; a
                // thread that still fails runs at its inherited priority, which costs only the
                // latency of other requests.
                .start_handler(move |_| {
                    let _ = set_current_thread_nice(nice);
                })
                .build()
                .ok()?,
        );
        pools.push((shape, pool.clone()));
        Some(pool)
    })
}

/// Runs `f` on this thread's pool of `shape`.
pub(crate) fn run_with<R: Send>(shape: PoolShape, f: impl FnOnce() -> R + Send) -> R {
    let shape = PoolShape {
        threads: shape.threads.max(1),
        ..shape
    };
    match pool(shape) {
        Some(pool) => pool.install(f),
        // A pool that cannot be built (no threads left) degrades to the global pool.
        None => f(),
    }
}
