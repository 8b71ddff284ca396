//! The detector: load a GGUF causal language model with candle on the CPU, tokenize with the
//! model's own tokenizer, and score a text with the Fast-DetectGPT analytic criterion.
//!
//! This crate knows nothing about HTTP. `Detector` is `Send + Sync`; `score` takes `&self` and may
//! be called from several threads at once (the service runs one job per blocking thread).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// Limits and thresholds of a detector. Defaults are the documented production values.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Texts with fewer tokens than this are unscorable (`InferenceError::TooShort`).
    pub min_tokens: usize,
    /// Only the first `max_tokens` tokens are scored; longer texts report `truncated`.
    pub max_tokens: usize,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self { min_tokens: 16, max_tokens: 512 }
    }
}

/// Verdict derived from the calibrated score and two documented thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Ai,
    Human,
    Uncertain,
}

/// Name and short hash of the loaded weights, for the `model` field of a response.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// First 12 hex digits of the SHA-256 of the weights file.
    pub sha256_short: String,
}

/// The result of scoring one text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Score {
    /// Probability (0..1) that the text is machine-generated.
    pub score: f64,
    pub label: Label,
    /// Number of tokens scored (after truncation).
    pub tokens: usize,
    pub truncated: bool,
    /// Fast-DetectGPT analytic criterion; higher means more machine-like.
    pub criterion: f64,
    pub mean_log_prob: f64,
    pub mean_entropy: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("model file not found at {path}; run scripts/fetch-model to download it")]
    ModelMissing { path: PathBuf },
    #[error("model file is not a usable GGUF model: {0}")]
    InvalidModel(String),
    #[error("text is empty")]
    EmptyText,
    #[error("text has {tokens} tokens; at least {min} are needed to score it")]
    TooShort { tokens: usize, min: usize },
    #[error("tokenizer failed: {0}")]
    Tokenizer(String),
    #[error("inference failed: {0}")]
    Compute(String),
}

/// A loaded model plus tokenizer. Cheap to share behind an `Arc`.
pub struct Detector {
    _private: (),
}

impl Detector {
    pub fn load(path: &Path, config: DetectorConfig) -> Result<Self, InferenceError> {
        let _ = (path, config);
        Err(InferenceError::InvalidModel("not implemented yet".into()))
    }

    pub fn model_info(&self) -> &ModelInfo {
        unimplemented!("interface stub")
    }

    pub fn config(&self) -> &DetectorConfig {
        unimplemented!("interface stub")
    }

    pub fn score(&self, text: &str) -> Result<Score, InferenceError> {
        let _ = text;
        Err(InferenceError::Compute("not implemented yet".into()))
    }
}

/// Helpers for tests in this and other crates: a tiny random-weight GGUF written through
/// candle's GGUF writer, loadable by `Detector::load`.
pub mod testing {
    use super::*;

    /// Writes a tiny llama-architecture GGUF (random weights from `seed`, the real tokenizer
    /// metadata shape, a small vocabulary) to `path`.
    pub fn write_tiny_model(path: &Path, seed: u64) -> Result<(), InferenceError> {
        let _ = (path, seed);
        Err(InferenceError::InvalidModel("not implemented yet".into()))
    }
}
