//! Prints the token ids (and pieces) of the text on standard input, as the detector sees them.
//!
//!   echo "some text" | cargo run --release -p inference --example tokenize [-- MODEL_PATH]

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
    let detector = Detector::load(&path, DetectorConfig::default())?;
    let ids = detector.tokenize(&text)?;
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| detector.detokenize(&[id]))
        .collect::<Result<_, _>>()?;
    println!(
        "{}",
        serde_json::json!({"count": ids.len(), "ids": ids, "pieces": pieces})
    );
    Ok(())
}
