//! Fast tests on a tiny random-weight GGUF written through candle's GGUF writer.

use std::path::PathBuf;

use inference::{testing, Detector, DetectorConfig, InferenceError, Label};

/// Writes a tiny model into a fresh temporary directory (kept alive by the returned guard).
fn tiny_model(seed: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("tiny.gguf");
    testing::write_tiny_model(&path, seed).expect("tiny model is written");
    (dir, path)
}

fn load_tiny(config: DetectorConfig) -> (tempfile::TempDir, Detector) {
    let (dir, path) = tiny_model(7);
    let detector = Detector::load(&path, config).expect("tiny model loads");
    (dir, detector)
}

const TEXT: &str =
    "the cat sat on the mat, and then the other cat sat on the other mat in the sun.";

#[test]
fn loads_and_scores_a_text() {
    let (_dir, detector) = load_tiny(DetectorConfig::default());
    assert_eq!(detector.model_info().name, "tiny");
    assert_eq!(detector.model_info().sha256_short.len(), 12);
    let score = detector.score(TEXT).expect("scores");
    assert!(score.criterion.is_finite());
    assert!((0.0..=1.0).contains(&score.score));
    assert!(score.mean_log_prob < 0.0);
    assert!(score.mean_entropy > 0.0);
    assert_eq!(score.tokens, detector.tokenize(TEXT).unwrap().len());
    assert!(!score.truncated);
    assert_eq!(score.label, detector.calibration().label(score.score));
}

#[test]
fn same_text_gives_the_same_numbers() {
    let (_dir, detector) = load_tiny(DetectorConfig::default());
    let a = detector.score(TEXT).unwrap();
    let b = detector.score(TEXT).unwrap();
    assert_eq!(a.criterion.to_bits(), b.criterion.to_bits());
    assert_eq!(a.mean_log_prob.to_bits(), b.mean_log_prob.to_bits());
    assert_eq!(a.mean_entropy.to_bits(), b.mean_entropy.to_bits());
    // The same seed writes the same file, hence the same weights and numbers.
    let (_dir2, again) = load_tiny(DetectorConfig::default());
    assert_eq!(
        again.model_info().sha256_short,
        detector.model_info().sha256_short
    );
    assert_eq!(
        again.score(TEXT).unwrap().criterion.to_bits(),
        a.criterion.to_bits()
    );
}

#[test]
fn concurrent_scoring_matches_sequential() {
    let (_dir, detector) = load_tiny(DetectorConfig::default());
    let expected = detector.score(TEXT).unwrap().criterion;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| detector.score(TEXT).unwrap().criterion))
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().to_bits(), expected.to_bits());
        }
    });
}

#[test]
fn long_text_is_truncated_to_max_tokens() {
    let config = DetectorConfig {
        min_tokens: 4,
        max_tokens: 20,
    };
    let (_dir, detector) = load_tiny(config);
    let long = TEXT.repeat(5);
    assert!(detector.tokenize(&long).unwrap().len() > 20);
    let score = detector.score(&long).unwrap();
    assert_eq!(score.tokens, 20);
    assert!(score.truncated);
    // Truncation keeps the first tokens: the score equals that of the prefix's ids.
    let ids = detector.tokenize(&long).unwrap();
    let prefix = detector.signals(&ids[..20]).unwrap();
    assert_eq!(prefix.criterion.to_bits(), score.criterion.to_bits());
    // A text of exactly max_tokens is not truncated.
    let exact = detector.detokenize(&ids[..20]).unwrap();
    assert_eq!(detector.tokenize(&exact).unwrap(), ids[..20].to_vec());
    assert!(!detector.score(&exact).unwrap().truncated);
}

#[test]
fn short_text_is_a_typed_error() {
    let (_dir, detector) = load_tiny(DetectorConfig {
        min_tokens: 16,
        max_tokens: 512,
    });
    match detector.score("the cat") {
        Err(InferenceError::TooShort { tokens, min }) => {
            assert_eq!(min, 16);
            assert_eq!(tokens, detector.tokenize("the cat").unwrap().len());
        }
        other => panic!("expected TooShort, got {other:?}"),
    }
}

#[test]
fn empty_and_blank_text_are_typed_errors() {
    let (_dir, detector) = load_tiny(DetectorConfig::default());
    assert!(matches!(detector.score(""), Err(InferenceError::EmptyText)));
    assert!(matches!(
        detector.score(" \n\t "),
        Err(InferenceError::EmptyText)
    ));
}

#[test]
fn limits_are_adjusted_to_what_can_be_scored() {
    let (_dir, detector) = load_tiny(DetectorConfig {
        min_tokens: 0,
        max_tokens: 1_000_000,
    });
    assert_eq!(detector.config().min_tokens, 2);
    assert_eq!(
        detector.config().max_tokens,
        2048,
        "capped at the context length"
    );
    assert!(matches!(
        detector.score("x"),
        Err(InferenceError::TooShort { tokens: 1, min: 2 })
    ));
    assert!(detector.score("xy").is_ok());
}

#[test]
fn special_token_text_is_plain_text() {
    let (_dir, detector) = load_tiny(DetectorConfig::default());
    let ids = detector
        .tokenize("before <|endoftext|> after <|im_start|><|im_end|>")
        .unwrap();
    for special in 0..testing::TINY_SPECIAL_TOKENS.len() as u32 {
        assert!(
            !ids.contains(&special),
            "control token {special} injected by user text: {ids:?}"
        );
    }
    assert_eq!(
        detector.detokenize(&ids).unwrap(),
        "before <|endoftext|> after <|im_start|><|im_end|>",
        "the markers survive as their characters"
    );
}

#[test]
fn any_unicode_round_trips_through_the_byte_level_tokenizer() {
    let (_dir, detector) = load_tiny(DetectorConfig::default());
    let text = "Café naïve — 東京 👍🏽 👨‍👩‍👧 🇫🇷 123 4567\r\n\ttabs   spaces\u{0}\u{a0}\u{200b}";
    let ids = detector.tokenize(text).unwrap();
    assert_eq!(detector.detokenize(&ids).unwrap(), text);
    // Digits are split one by one (the `smollm` pre-tokenizer).
    let digits = detector.tokenize("12345").unwrap();
    assert_eq!(digits.len(), 5);
}

#[test]
fn missing_model_names_the_fetch_script() {
    let err = Detector::load(
        std::path::Path::new("/nonexistent/model.gguf"),
        DetectorConfig::default(),
    )
    .err()
    .expect("missing file is an error");
    assert!(matches!(err, InferenceError::ModelMissing { .. }));
    assert!(err.to_string().contains("scripts/fetch-model"), "{err}");
}

#[test]
fn a_file_that_is_not_gguf_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.gguf");
    std::fs::write(&path, b"definitely not a model").unwrap();
    let err = Detector::load(&path, DetectorConfig::default())
        .err()
        .expect("junk is an error");
    assert!(matches!(err, InferenceError::InvalidModel(_)), "{err:?}");
}

#[test]
fn generation_is_reproducible_from_its_seed() {
    let (_dir, detector) = load_tiny(DetectorConfig::default());
    let prompt = detector.tokenize("the cat").unwrap();
    let sampling = inference::Sampling {
        temperature: 0.8,
        max_new_tokens: 12,
        seed: 3,
    };
    let a = detector.generate(&prompt, &sampling).unwrap();
    let b = detector.generate(&prompt, &sampling).unwrap();
    assert_eq!(a, b);
    assert!(!a.is_empty());
    // The cached incremental forward agrees with a full pass: greedy decoding one token at a time
    // from the growing prompt (no cache across calls) picks the same tokens.
    let greedy = inference::Sampling {
        temperature: 0.0,
        max_new_tokens: 6,
        seed: 0,
    };
    let cached = detector.generate(&prompt, &greedy).unwrap();
    let mut seq = prompt.clone();
    for &next in &cached {
        let one = inference::Sampling {
            max_new_tokens: 1,
            ..greedy.clone()
        };
        assert_eq!(detector.generate(&seq, &one).unwrap(), vec![next]);
        seq.push(next);
    }
}

#[test]
fn labels_serialize_lowercase() {
    assert_eq!(serde_json::to_string(&Label::Ai).unwrap(), "\"ai\"");
    assert_eq!(
        serde_json::to_string(&Label::Uncertain).unwrap(),
        "\"uncertain\""
    );
}

#[test]
fn weights_kept_quantized_score_close_to_f32() {
    let (_dir, path) = tiny_model(7);
    let f32_detector = Detector::load(&path, DetectorConfig::default()).unwrap();
    let stored = Detector::load_with_format(
        &path,
        DetectorConfig::default(),
        inference::WeightFormat::Stored,
    )
    .unwrap();
    let a = f32_detector.score(TEXT).unwrap();
    let b = stored.score(TEXT).unwrap();
    assert_eq!(a.tokens, b.tokens);
    // The quantized path also rounds activations to 8 bits: close, not equal.
    // (Random weights give extreme criteria, so compare relatively.)
    let relative = (a.criterion - b.criterion).abs() / a.criterion.abs().max(1.0);
    assert!(relative < 0.05, "{} vs {}", a.criterion, b.criterion);
    assert!((a.mean_log_prob - b.mean_log_prob).abs() / a.mean_log_prob.abs().max(1.0) < 0.05);
}
