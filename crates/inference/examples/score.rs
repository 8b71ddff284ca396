//! Scores the text on standard input with the real model and prints the result as JSON.
//!
//!   echo "some text" | cargo run --release -p inference --example score [-- MODEL_PATH]

use std::io::Read;
use std::path::PathBuf;

use inference::{Detector, DetectorConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let started = std::time::Instant::now();
    let detector = Detector::load(&path, DetectorConfig::default())?;
    let loaded = started.elapsed();
    let started = std::time::Instant::now();
    let score = detector.score(&text)?;
    eprintln!(
        "load {:.2} s, score {:.3} s",
        loaded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({"model": detector.model_info(), "result": score})
        )?
    );
    Ok(())
}
