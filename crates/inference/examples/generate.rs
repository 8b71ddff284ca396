//! Samples a continuation of a prompt with the real model and prints prompt + continuation.
//!
//!   cargo run --release -p inference --example generate -- "PROMPT" TEMPERATURE SEED [MAX_NEW]

use std::path::Path;

use inference::{Detector, DetectorConfig, Sampling};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: generate PROMPT TEMPERATURE SEED [MAX_NEW_TOKENS]".into());
    }
    let detector = Detector::load(
        Path::new("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        DetectorConfig::default(),
    )?;
    let sampling = Sampling {
        temperature: args[2].parse()?,
        seed: args[3].parse()?,
        max_new_tokens: args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(160),
    };
    let prompt = detector.tokenize(&args[1])?;
    let generated = detector.generate(&prompt, &sampling)?;
    print!("{}{}", args[1], detector.detokenize(&generated)?);
    Ok(())
}
