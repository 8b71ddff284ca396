//! Helpers for tests in this and other crates: a tiny random-weight GGUF written through
//! candle's GGUF writer, loadable by `Detector::load`.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::InferenceError;

/// Shape of the tiny model: small enough that loading and scoring take milliseconds, and with
/// every feature of the real one (grouped-query attention, tied LM head, quantized tensors).
const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FFN: usize = 128;
const BLOCKS: usize = 2;
const CONTEXT: usize = 2048;

/// Control tokens at the ids the real model uses (unk 0, bos 1, eos 2).
pub const TINY_SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const MERGES: [(&str, &str); 8] = [
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("Ġ", "a"),
    ("e", "r"),
    ("o", "n"),
    ("Ġ", "s"),
];

/// GPT-2's byte-to-character map: printable bytes map to themselves, the rest to U+0100 onward.
fn byte_level_alphabet() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("byte is a char")
            } else {
                let c = char::from_u32(next).expect("valid code point");
                next += 1;
                c
            }
        })
        .collect()
}

/// splitmix64: a tiny deterministic generator, so the same seed always writes the same file.
struct SplitMix(u64);

impl SplitMix {
    fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn failed(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::InvalidModel(format!("writing the tiny model failed: {e}"))
}

/// The tiny model's vocabulary: control tokens, the 256 byte characters, then one token per merge.
pub fn tiny_vocabulary() -> Vec<String> {
    let mut tokens: Vec<String> = TINY_SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    tokens.extend(byte_level_alphabet().into_iter().map(String::from));
    tokens.extend(MERGES.iter().map(|(a, b)| format!("{a}{b}")));
    tokens
}

/// Writes a tiny llama-architecture GGUF (random weights from `seed`, the real tokenizer
/// metadata shape, a small vocabulary) to `path`.
pub fn write_tiny_model(path: &Path, seed: u64) -> Result<(), InferenceError> {
    let tokens = tiny_vocabulary();
    let vocab = tokens.len();
    let token_types: Vec<Value> = (0..vocab)
        .map(|i| Value::I32(if i < TINY_SPECIAL_TOKENS.len() { 3 } else { 1 }))
        .collect();

    let mut rng = SplitMix(seed);
    let mut random =
        |shape: (usize, usize), scale: f32, dtype: GgmlDType| -> Result<QTensor, InferenceError> {
            let data: Vec<f32> = (0..shape.0 * shape.1)
                .map(|_| rng.next_f32() * scale)
                .collect();
            let tensor = Tensor::from_vec(data, shape, &Device::Cpu).map_err(failed)?;
            QTensor::quantize(&tensor, dtype).map_err(failed)
        };
    let norm = |n: usize| -> Result<QTensor, InferenceError> {
        let tensor = Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).map_err(failed)?;
        QTensor::quantize(&tensor, GgmlDType::F32).map_err(failed)
    };

    let head_dim = HIDDEN / HEADS;
    let kv = KV_HEADS * head_dim;
    // Same storage types as the real file: Q8_0 embedding (tied LM head), Q4_1 blocks, F32 norms.
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            random((vocab, HIDDEN), 1.0, GgmlDType::Q8_0)?,
        ),
        ("output_norm.weight".into(), norm(HIDDEN)?),
    ];
    let scale = 1.0 / (HIDDEN as f32).sqrt();
    for i in 0..BLOCKS {
        let block = [
            ("attn_q", (HIDDEN, HIDDEN)),
            ("attn_k", (kv, HIDDEN)),
            ("attn_v", (kv, HIDDEN)),
            ("attn_output", (HIDDEN, HIDDEN)),
            ("ffn_gate", (FFN, HIDDEN)),
            ("ffn_up", (FFN, HIDDEN)),
            ("ffn_down", (HIDDEN, FFN)),
        ];
        for (name, shape) in block {
            tensors.push((
                format!("blk.{i}.{name}.weight"),
                random(shape, scale, GgmlDType::Q4_1)?,
            ));
        }
        tensors.push((format!("blk.{i}.attn_norm.weight"), norm(HIDDEN)?));
        tensors.push((format!("blk.{i}.ffn_norm.weight"), norm(HIDDEN)?));
    }

    let string = |s: &str| Value::String(s.to_string());
    let count = |n: usize| Value::U32(n as u32);
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", string("llama")),
        ("general.name", string("tiny-random-llama")),
        ("llama.block_count", count(BLOCKS)),
        ("llama.context_length", count(CONTEXT)),
        ("llama.embedding_length", count(HIDDEN)),
        ("llama.feed_forward_length", count(FFN)),
        ("llama.attention.head_count", count(HEADS)),
        ("llama.attention.head_count_kv", count(KV_HEADS)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(100_000.0)),
        ("llama.rope.dimension_count", count(head_dim)),
        ("llama.vocab_size", count(vocab)),
        ("tokenizer.ggml.model", string("gpt2")),
        ("tokenizer.ggml.pre", string("smollm")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|t| string(t)).collect()),
        ),
        ("tokenizer.ggml.token_type", Value::Array(token_types)),
        (
            "tokenizer.ggml.merges",
            Value::Array(
                MERGES
                    .iter()
                    .map(|(a, b)| string(&format!("{a} {b}")))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.unknown_token_id", count(0)),
        ("tokenizer.ggml.bos_token_id", count(1)),
        ("tokenizer.ggml.eos_token_id", count(2)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ];

    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut writer = BufWriter::new(File::create(path).map_err(failed)?);
    gguf_file::write(&mut writer, &metadata_refs, &tensor_refs).map_err(failed)?;
    std::io::Write::flush(&mut writer).map_err(failed)?;
    Ok(())
}
