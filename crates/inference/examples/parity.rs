//! Compares a weight representation against the PyTorch golden values: largest criterion
//! difference over the fixture's texts. For trying another matmul path before switching to it.
//!
//!   cargo run --release -p inference --example parity -- [f32|stored]

use std::path::PathBuf;

use inference::{Detector, DetectorConfig, WeightFormat};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let format = match std::env::args().nth(1).as_deref() {
        None | Some("f32") => WeightFormat::F32,
        Some("stored") => WeightFormat::Stored,
        Some(other) => return Err(format!("unknown weight format {other}").into()),
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let detector = Detector::load_with_format(&model, DetectorConfig::default(), format)?;
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("tests/fixtures/golden.json"),
    )?)?;
    let max_tokens = fixture["max_tokens"].as_u64().unwrap_or(512) as usize;
    let mut worst: f64 = 0.0;
    for entry in fixture["texts"].as_array().ok_or("texts")? {
        let mut ids = detector.tokenize(entry["text"].as_str().ok_or("text")?)?;
        ids.truncate(max_tokens);
        let criterion = detector.signals(&ids)?.criterion;
        let delta = criterion - entry["criterion"].as_f64().ok_or("criterion")?;
        worst = worst.max(delta.abs());
        println!(
            "{:30} {criterion:9.4} {delta:+.4}",
            entry["name"].as_str().unwrap_or("?")
        );
    }
    println!("{format:?}: largest criterion difference {worst:.4}");
    Ok(())
}
