//! Sampling text from the model, to build the machine-written half of the calibration data.

use crate::model::{last_row, Llama};
use crate::InferenceError;

/// How to sample a continuation.
#[derive(Debug, Clone)]
pub struct Sampling {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f64,
    pub max_new_tokens: usize,
    /// Seed of the sampler, so a calibration run is reproducible.
    pub seed: u64,
}

/// xorshift64*: deterministic and good enough to draw from a categorical distribution.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn sample(logits: &[f32], temperature: f64, rng: &mut Rng) -> u32 {
    let argmax = logits
        .iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0;
    if temperature <= 0.0 {
        return argmax as u32;
    }
    let max = logits[argmax] as f64;
    let weights: Vec<f64> = logits
        .iter()
        .map(|&x| ((x as f64 - max) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut target = rng.uniform() * total;
    for (i, w) in weights.iter().enumerate() {
        target -= w;
        if target <= 0.0 {
            return i as u32;
        }
    }
    argmax as u32
}

/// Generates up to `max_new_tokens` after `prompt`, stopping early at `eos`.
pub(crate) fn generate(
    model: &Llama,
    eos: Option<u32>,
    prompt: &[u32],
    sampling: &Sampling,
) -> Result<Vec<u32>, InferenceError> {
    if prompt.is_empty() {
        return Err(InferenceError::EmptyText);
    }
    let mut rng = Rng::new(sampling.seed);
    let mut cache = model.new_cache();
    let mut generated = Vec::with_capacity(sampling.max_new_tokens);
    let mut input = prompt.to_vec();
    for _ in 0..sampling.max_new_tokens {
        if cache.len() + input.len() > model.config().context_length {
            break;
        }
        let logits = model.forward(&input, Some(&mut cache), input.len() - 1, 1)?;
        let next = sample(&last_row(&logits)?, sampling.temperature, &mut rng);
        if Some(next) == eos {
            break;
        }
        generated.push(next);
        input = vec![next];
    }
    Ok(generated)
}
