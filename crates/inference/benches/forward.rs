//! Forward pass plus criterion at several lengths on the real model: median time, tokens per
//! second and peak RSS. Same token sequences and output columns as
//! `tools/reference/reference.py bench`, so the two tables compare line by line.
//!
//!   cargo bench -p inference --bench forward -- [--threads N] [--jobs J] [--runs R] [--sizes 32,128,...]
//!       [--weights f32|stored]
//!
//! `--threads` is the number of threads one scoring job uses (the service runs one per job).
//! With `--jobs J`, J jobs run side by side: `median_s` is per job, `tokens_per_s` is the total.

use std::path::PathBuf;
use std::time::Instant;

use inference::{Detector, DetectorConfig, WeightFormat};

/// The benchmark's token sequence, identical to the reference's `bench_ids`.
fn bench_ids(n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + 13) % 49000 + 100) as u32)
        .collect()
}

/// Peak resident set size of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Time of the criterion alone (its share of `median_s`), on synthetic logits of the same shape.
fn criterion_seconds(ids: &[u32], vocab: usize) -> f64 {
    let logits: Vec<f32> = (0..(ids.len() - 1) * vocab)
        .map(|i| ((i * 2654435761) % 1000) as f32 * 0.01)
        .collect();
    let t = Instant::now();
    std::hint::black_box(inference::signals_from_logits(&logits, vocab, ids));
    t.elapsed().as_secs_f64()
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = arg(&args, "--threads").unwrap_or(1);
    let runs: usize = arg(&args, "--runs").unwrap_or(5);
    // Jobs scoring side by side, each on its own thread (the service's layout); times are per job.
    let jobs: usize = arg(&args, "--jobs").unwrap_or(1);
    let sizes: Vec<usize> = arg::<String>(&args, "--sizes")
        .map(|s| s.split(',').map(|n| n.parse().expect("size")).collect())
        .unwrap_or_else(|| vec![32, 128, 256, 512]);
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");

    let format = match arg::<String>(&args, "--weights").as_deref() {
        None | Some("f32") => WeightFormat::F32,
        Some("stored") => WeightFormat::Stored,
        Some(other) => panic!("--weights is f32 or stored, not {other}"),
    };
    let started = Instant::now();
    let detector = Detector::load_with_format(&model, DetectorConfig::default(), format)
        .expect("the real model loads (run scripts/fetch-model)")
        .with_threads_per_job(threads);
    println!(
        "implementation candle ({format:?} weights)  threads {threads}  jobs {jobs}  load {:.2} s  rss after load {:.0} MiB",
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    println!(
        "{:>6} {:>9} {:>12} {:>12} {:>11}",
        "tokens", "median_s", "tokens_per_s", "peak_rss_mib", "criterion_s"
    );
    for n in sizes {
        let ids = bench_ids(n);
        detector.signals(&ids).expect("warm-up");
        let mut times: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..jobs)
                .map(|_| {
                    s.spawn(|| {
                        (0..runs)
                            .map(|_| {
                                let t = Instant::now();
                                std::hint::black_box(detector.signals(&ids).expect("forward"));
                                t.elapsed().as_secs_f64()
                            })
                            .collect::<Vec<f64>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("job"))
                .collect()
        });
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{n:>6} {median:>9.4} {:>12.1} {:>12.0} {:>11.4}",
            (n * jobs) as f64 / median,
            peak_rss_mib(),
            criterion_seconds(&ids, detector.vocab_size())
        );
    }
}
