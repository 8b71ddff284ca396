//! The detector: load a GGUF causal language model with candle on the CPU, tokenize with the
//! model's own tokenizer, and score a text with the Fast-DetectGPT analytic criterion.
//!
//! This crate knows nothing about HTTP. `Detector` is `Send + Sync`; `score` takes `&self` and may
//! be called from several threads at once (the service runs one job per blocking thread).
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

mod calibration;
mod criterion;
mod generation;
mod gguf;
mod linear;
mod model;
mod threads;
mod tokenizer;

pub mod testing;

pub use calibration::{Calibration, SMOLLM2_CALIBRATION};
pub use criterion::{signals_from_logits, Signals};
pub use generation::Sampling;
pub use linear::WeightFormat;
pub use threads::MAX_JOB_NICE;

use criterion::Criterion;
use gguf::GgufFile;
use model::{Llama, LlamaConfig};
use tokenizer::TextTokenizer;

/// Limits and thresholds of a detector. Defaults are the documented production values.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Texts with fewer tokens than this are unscorable (`InferenceError::TooShort`).
    pub min_tokens: usize,
    /// Only the first `max_tokens` tokens are scored; longer texts report `truncated`.
    pub max_tokens: usize,
}

impl Default for DetectorConfig {
    /// 16 tokens: below that the criterion of human prose and of generated text overlap too much
    /// to say anything (docs/detection.md). 512 tokens: a forward pass stays well under a second
    /// on one core, and the criterion has long settled by then (docs/benchmarks.md).
    fn default() -> Self {
        Self {
            min_tokens: 16,
            max_tokens: 512,
        }
    }
}

/// The criterion needs at least one scored position, hence two tokens.
const MIN_SCORABLE_TOKENS: usize = 2;

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
    /// Number of tokens in the scored sequence (after truncation); the first is context only,
    /// so `tokens - 1` positions enter the criterion.
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
    #[error("job priority refused: {0}")]
    Priority(String),
    #[error("inference failed: {0}")]
    Compute(String),
}

/// A loaded model plus tokenizer. Cheap to share behind an `Arc`.
pub struct Detector {
    model: Llama,
    tokenizer: TextTokenizer,
    info: ModelInfo,
    config: DetectorConfig,
    calibration: Calibration,
    job_threads: threads::PoolShape,
}

/// SHA-256 of a file, streamed so the whole file is never held twice in memory.
fn sha256_hex(path: &Path) -> Result<String, InferenceError> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => InferenceError::ModelMissing {
            path: path.to_path_buf(),
        },
        _ => InferenceError::InvalidModel(format!("cannot read {}: {e}", path.display())),
    })?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| {
            InferenceError::InvalidModel(format!("cannot read {}: {e}", path.display()))
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

impl Detector {
    /// Loads the GGUF at `path`: weights dequantized to f32, tokenizer from the file's metadata.
    ///
    /// `min_tokens` below 2 is raised to 2 (one scored position is the least the criterion
    /// needs); `max_tokens` is capped at the model's context length and raised to `min_tokens`.
    pub fn load(path: &Path, config: DetectorConfig) -> Result<Self, InferenceError> {
        Self::load_with_format(path, config, WeightFormat::F32)
    }

    /// `load` with a choice of weight representation (for benchmarks; production uses f32).
    pub fn load_with_format(
        path: &Path,
        config: DetectorConfig,
        format: WeightFormat,
    ) -> Result<Self, InferenceError> {
        if !path.exists() {
            return Err(InferenceError::ModelMissing {
                path: path.to_path_buf(),
            });
        }
        let sha256 = sha256_hex(path)?;
        let mut gguf = GgufFile::open(path)?;
        let llama_config = LlamaConfig::from_gguf(&gguf)?;
        let tokenizer = TextTokenizer::from_gguf(&gguf)?;
        let model = Llama::load(&mut gguf, llama_config, format)?;
        if tokenizer.vocab_size() > model.vocab_size() {
            return Err(InferenceError::InvalidModel(format!(
                "tokenizer has {} tokens but the embedding only {}",
                tokenizer.vocab_size(),
                model.vocab_size()
            )));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_string())
            .unwrap_or_else(|| "model".to_string());
        let min_tokens = config.min_tokens.max(MIN_SCORABLE_TOKENS);
        let max_tokens = config
            .max_tokens
            .min(model.config().context_length)
            .max(min_tokens);
        Ok(Self {
            model,
            tokenizer,
            info: ModelInfo {
                name,
                sha256_short: sha256[..12].to_string(),
            },
            config: DetectorConfig {
                min_tokens,
                max_tokens,
            },
            calibration: Calibration::default(),
            job_threads: threads::PoolShape {
                threads: 1,
                nice: 0,
            },
        })
    }

    /// Replaces the calibration (for calibrating and for tests); the default is the documented one.
    pub fn with_calibration(mut self, calibration: Calibration) -> Self {
        self.calibration = calibration;
        self
    }

    /// Threads one `score` call uses (default 1: the service runs jobs side by side instead).
    pub fn with_threads_per_job(mut self, threads: usize) -> Self {
        self.job_threads.threads = threads.max(1);
        self
    }

    pub fn threads_per_job(&self) -> usize {
        self.job_threads.threads
    }

    /// Runs later `score` calls on threads of this nice value (0 to `MAX_JOB_NICE`; 0 keeps the
    /// caller's priority); fails when the operating system refuses it (checked now, on a
    /// throwaway thread).
    pub fn with_job_nice(mut self, nice: u8) -> Result<Self, InferenceError> {
        threads::check_job_nice(nice).map_err(InferenceError::Priority)?;
        self.job_threads.nice = nice;
        Ok(self)
    }

    pub fn job_nice(&self) -> u8 {
        self.job_threads.nice
    }

    pub fn model_info(&self) -> &ModelInfo {
        &self.info
    }

    /// The limits in force (after the adjustments described at `load`).
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Number of tokens of the model's vocabulary (rows of its logits).
    pub fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }

    /// Token ids of `text` as the detector scores them: no BOS, control-token text kept as plain
    /// text, no truncation.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, InferenceError> {
        self.tokenizer.encode(text)
    }

    /// Text of token ids (the inverse of `tokenize` for byte-level BPE).
    pub fn detokenize(&self, ids: &[u32]) -> Result<String, InferenceError> {
        self.tokenizer.decode(ids)
    }

    /// The criterion and signals of a token sequence, without limits (at least 2 tokens).
    pub fn signals(&self, ids: &[u32]) -> Result<Signals, InferenceError> {
        if ids.len() < MIN_SCORABLE_TOKENS {
            return Err(InferenceError::TooShort {
                tokens: ids.len(),
                min: MIN_SCORABLE_TOKENS,
            });
        }
        if let Some(&bad) = ids
            .iter()
            .find(|&&id| id as usize >= self.model.vocab_size())
        {
            return Err(InferenceError::Compute(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        threads::run_with(self.job_threads, || {
            let hidden = self.model.final_hidden(ids, 0, ids.len() - 1)?;
            let vocab = self.model.vocab_size();
            let width = self.model.logits_chunk_width();
            let mut criterion = Criterion::new(ids, vocab);
            for first in (0..vocab).step_by(width) {
                let count = width.min(vocab - first);
                criterion.add_chunk(first, &self.model.logits_chunk(&hidden, first, count)?);
            }
            Ok(criterion.finish())
        })
    }

    /// Scores `text`: tokenize, apply the limits, one forward pass, criterion, calibration.
    pub fn score(&self, text: &str) -> Result<Score, InferenceError> {
        if text.trim().is_empty() {
            return Err(InferenceError::EmptyText);
        }
        let mut ids = self.tokenize(text)?;
        if ids.len() < self.config.min_tokens {
            return Err(InferenceError::TooShort {
                tokens: ids.len(),
                min: self.config.min_tokens,
            });
        }
        let truncated = ids.len() > self.config.max_tokens;
        ids.truncate(self.config.max_tokens);
        let signals = self.signals(&ids)?;
        let score = self.calibration.probability(signals.criterion);
        Ok(Score {
            score,
            label: self.calibration.label(score),
            tokens: ids.len(),
            truncated,
            criterion: signals.criterion,
            mean_log_prob: signals.mean_log_prob,
            mean_entropy: signals.mean_entropy,
        })
    }

    /// Samples a continuation of `prompt` (calibration data): returns the generated ids only.
    pub fn generate(
        &self,
        prompt: &[u32],
        sampling: &Sampling,
    ) -> Result<Vec<u32>, InferenceError> {
        threads::run_with(self.job_threads, || {
            generation::generate(&self.model, self.tokenizer.eos_id(), prompt, sampling)
        })
    }
}
