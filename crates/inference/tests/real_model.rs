//! Parity with the PyTorch reference (tools/reference/reference.py) on the real model.
//!
//! Fixtures are regenerated with `/work/venv-ref/bin/python tools/reference/reference.py golden`
//! (and `tokens`); CI only reads them. The model comes from scripts/fetch-model.

use std::path::PathBuf;

use inference::{Detector, DetectorConfig};
use serde_json::Value;

/// The criterion may differ from the float32 PyTorch reference by at most this much.
const CRITERION_TOLERANCE: f64 = 0.02;
/// Mean log-probability and entropy are averages of per-token terms: tighter than the criterion.
const MEAN_TOLERANCE: f64 = 0.005;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn real_detector() -> Detector {
    let path = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "the real model is missing at {}: run scripts/fetch-model",
        path.display()
    );
    Detector::load(&path, DetectorConfig::default()).expect("the real model loads")
}

fn fixture(name: &str) -> Value {
    let path = root().join("crates/inference/tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

#[test]
fn tokenizer_ids_match_the_reference_tokenizer() {
    let detector = real_detector();
    let fixture = fixture("tokenizer_ids.json");
    let strings = fixture["strings"].as_array().expect("strings");
    assert!(strings.len() >= 15);
    for entry in strings {
        let text = entry["text"].as_str().unwrap();
        let expected: Vec<u32> = entry["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let ids = detector.tokenize(text).unwrap();
        assert_eq!(
            ids, expected,
            "token ids differ for {} ({text:?})",
            entry["name"]
        );
        assert_eq!(
            detector.detokenize(&ids).unwrap(),
            text,
            "round trip of {}",
            entry["name"]
        );
    }
}

#[test]
fn control_token_text_never_becomes_a_control_token() {
    let detector = real_detector();
    // unk/`<|endoftext|>` 0, `<|im_start|>` 1, `<|im_end|>` 2 and the other control tokens (< 17).
    let ids = detector
        .tokenize("a <|endoftext|> b <|im_start|>user\nhi<|im_end|> c")
        .unwrap();
    assert!(
        ids.iter().all(|&id| id >= 17),
        "control token injected: {ids:?}"
    );
}

#[test]
fn golden_values_match_the_pytorch_reference() {
    let detector = real_detector();
    let fixture = fixture("golden.json");
    assert_eq!(
        fixture["model_sha256_short"].as_str().unwrap(),
        detector.model_info().sha256_short,
        "the fixture was made with other weights"
    );
    let max_tokens = fixture["max_tokens"].as_u64().unwrap() as usize;
    let texts = fixture["texts"].as_array().expect("texts");
    assert!(texts.len() >= 20);
    let mut worst = 0f64;
    for entry in texts {
        let name = entry["name"].as_str().unwrap();
        let text = entry["text"].as_str().unwrap();
        let ids = detector.tokenize(text).unwrap();
        assert_eq!(
            ids.len() as u64,
            entry["tokens_untruncated"].as_u64().unwrap(),
            "{name}: token count"
        );
        let scored = &ids[..ids.len().min(max_tokens)];
        assert_eq!(
            scored.len() as u64,
            entry["tokens"].as_u64().unwrap(),
            "{name}: scored tokens"
        );
        let signals = detector.signals(scored).unwrap();
        let delta = (signals.criterion - entry["criterion"].as_f64().unwrap()).abs();
        worst = worst.max(delta);
        assert!(
            delta <= CRITERION_TOLERANCE,
            "{name}: criterion {} vs {}",
            signals.criterion,
            entry["criterion"]
        );
        for (field, got) in [
            ("mean_log_prob", signals.mean_log_prob),
            ("mean_entropy", signals.mean_entropy),
        ] {
            let want = entry[field].as_f64().unwrap();
            assert!(
                (got - want).abs() <= MEAN_TOLERANCE,
                "{name}: {field} {got} vs {want}"
            );
        }
        // The public entry point gives the same numbers and reports truncation (checked on two
        // texts only: every forward pass costs CI time).
        if ["gettysburg_address", "apache_license_long"].contains(&name) {
            let score = detector.score(text).unwrap();
            assert_eq!(score.tokens, scored.len(), "{name}");
            assert_eq!(
                score.truncated,
                entry["truncated"].as_bool().unwrap(),
                "{name}"
            );
            assert_eq!(
                score.criterion.to_bits(),
                signals.criterion.to_bits(),
                "{name}"
            );
        }
    }
    eprintln!("largest criterion difference from the reference: {worst:.6}");
}
