//! Llama-architecture causal LM with an all-position forward, written from candle's public ops.
//!
//! candle-transformers' `quantized_llama` returns only the last position's logits; the criterion
//! needs every position, so the forward is written here. The optional key/value cache is used only
//! by text generation (calibration data); scoring runs one pass over the whole text.

use candle_core::{DType, Device, Tensor};

use crate::gguf::GgufFile;
use crate::linear::{Dense, WeightFormat};
use crate::InferenceError;

/// Hyper-parameters read from the GGUF metadata (`llama.*`).
#[derive(Debug, Clone)]
pub(crate) struct LlamaConfig {
    pub block_count: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f32,
    /// Read from the file: SmolLM2 uses 100000, not the common 10000.
    pub rope_base: f32,
    pub context_length: usize,
}

impl LlamaConfig {
    pub(crate) fn from_gguf(gguf: &GgufFile) -> Result<Self, InferenceError> {
        let arch = gguf.string("general.architecture")?;
        if arch != "llama" {
            return Err(InferenceError::InvalidModel(format!(
                "unsupported architecture {arch:?} (llama only)"
            )));
        }
        let hidden = gguf.usize("llama.embedding_length")?;
        let heads = gguf.usize("llama.attention.head_count")?;
        let kv_heads = if gguf.has("llama.attention.head_count_kv") {
            gguf.usize("llama.attention.head_count_kv")?
        } else {
            heads
        };
        if heads == 0 || kv_heads == 0 || hidden % heads != 0 || heads % kv_heads != 0 {
            return Err(InferenceError::InvalidModel(format!(
                "inconsistent attention shape: hidden {hidden}, heads {heads}, kv heads {kv_heads}"
            )));
        }
        let head_dim = hidden / heads;
        if head_dim % 2 != 0 {
            return Err(InferenceError::InvalidModel(format!(
                "odd head dimension {head_dim}"
            )));
        }
        let rope_base = if gguf.has("llama.rope.freq_base") {
            gguf.f32("llama.rope.freq_base")?
        } else {
            10_000.0
        };
        Ok(Self {
            block_count: gguf.usize("llama.block_count")?,
            hidden,
            heads,
            kv_heads,
            head_dim,
            rms_eps: gguf.f32("llama.attention.layer_norm_rms_epsilon")?,
            rope_base,
            context_length: gguf.usize("llama.context_length")?,
        })
    }
}

/// Vocabulary entries whose logits are computed at once when scoring: the criterion reads each
/// chunk while it is still in cache, and the full `(tokens, vocabulary)` logits (96 MiB at 512
/// tokens) never exist. Measured in docs/benchmarks.md.
const LM_HEAD_CHUNK: usize = 2048;

struct Block {
    attn_norm: Tensor,
    q: Dense,
    k: Dense,
    v: Dense,
    o: Dense,
    ffn_norm: Tensor,
    gate: Dense,
    up: Dense,
    down: Dense,
}

/// Keys and values of the positions seen so far, per block (generation only).
pub(crate) struct KvCache {
    entries: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

pub(crate) struct Llama {
    config: LlamaConfig,
    /// `(vocab, hidden)`; also the LM head, which is tied to it when `output.weight` is absent.
    embedding: Tensor,
    blocks: Vec<Block>,
    output_norm: Tensor,
    lm_head: Dense,
}

fn compute(e: candle_core::Error) -> InferenceError {
    InferenceError::Compute(e.to_string())
}

impl Llama {
    pub(crate) fn load(
        gguf: &mut GgufFile,
        config: LlamaConfig,
        format: WeightFormat,
    ) -> Result<Self, InferenceError> {
        let embedding = gguf.f32_tensor("token_embd.weight")?;
        let load_dense = |gguf: &mut GgufFile, name: &str| -> Result<Dense, InferenceError> {
            match format {
                WeightFormat::F32 => Dense::f32(gguf.f32_tensor(name)?).map_err(compute),
                WeightFormat::Stored => Dense::quantized(gguf.qtensor(name)?).map_err(compute),
            }
        };
        let mut blocks = Vec::with_capacity(config.block_count);
        for i in 0..config.block_count {
            let mut dense = |name: &str| load_dense(gguf, &format!("blk.{i}.{name}.weight"));
            blocks.push(Block {
                q: dense("attn_q")?,
                k: dense("attn_k")?,
                v: dense("attn_v")?,
                o: dense("attn_output")?,
                gate: dense("ffn_gate")?,
                up: dense("ffn_up")?,
                down: dense("ffn_down")?,
                attn_norm: gguf.f32_tensor(&format!("blk.{i}.attn_norm.weight"))?,
                ffn_norm: gguf.f32_tensor(&format!("blk.{i}.ffn_norm.weight"))?,
            });
        }
        let output_norm = gguf.f32_tensor("output_norm.weight")?;
        let lm_head = match (gguf.has_tensor("output.weight"), format) {
            (true, WeightFormat::F32) => Dense::f32_rows(gguf.f32_tensor("output.weight")?),
            (true, WeightFormat::Stored) => load_dense(gguf, "output.weight")?,
            (false, WeightFormat::F32) => Dense::f32_rows(embedding.clone()),
            (false, WeightFormat::Stored) => load_dense(gguf, "token_embd.weight")?,
        };
        let model = Self {
            config,
            embedding,
            blocks,
            output_norm,
            lm_head,
        };
        model.check_shapes()?;
        Ok(model)
    }

    fn check_shapes(&self) -> Result<(), InferenceError> {
        let c = &self.config;
        let kv = c.kv_heads * c.head_dim;
        let (_, emb_hidden) = self.embedding.dims2().map_err(compute)?;
        let mut expected = vec![(
            "token_embd",
            self.embedding.dims().to_vec(),
            vec![self.vocab_size(), c.hidden],
        )];
        expected.push((
            "lm_head",
            self.lm_head.dims().to_vec(),
            vec![self.vocab_size(), emb_hidden],
        ));
        for (i, b) in self.blocks.iter().enumerate() {
            let ffn = b.gate.dims().first().copied().unwrap_or(0);
            for (name, w, want) in [
                ("attn_q", &b.q, vec![c.hidden, c.hidden]),
                ("attn_k", &b.k, vec![kv, c.hidden]),
                ("attn_v", &b.v, vec![kv, c.hidden]),
                ("attn_output", &b.o, vec![c.hidden, c.hidden]),
                ("ffn_gate", &b.gate, vec![ffn, c.hidden]),
                ("ffn_up", &b.up, vec![ffn, c.hidden]),
                ("ffn_down", &b.down, vec![c.hidden, ffn]),
            ] {
                expected.push((name, w.dims().to_vec(), want));
            }
            if b.attn_norm.dims() != [c.hidden] || b.ffn_norm.dims() != [c.hidden] {
                return Err(InferenceError::InvalidModel(format!(
                    "block {i}: norm weights have the wrong shape"
                )));
            }
        }
        for (name, got, want) in expected {
            if got != want {
                return Err(InferenceError::InvalidModel(format!(
                    "tensor {name} has shape {got:?}, expected {want:?}"
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn config(&self) -> &LlamaConfig {
        &self.config
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.embedding.dims()[0]
    }

    pub(crate) fn new_cache(&self) -> KvCache {
        KvCache {
            entries: (0..self.blocks.len()).map(|_| None).collect(),
            len: 0,
        }
    }

    /// Logits `(rows, vocab)` for the hidden states of positions `first_row..` of `ids`.
    ///
    /// Scoring asks for every position but the last (position t predicts token t+1, and the
    /// last position predicts nothing that is scored); generation asks for the last one only.
    pub(crate) fn forward(
        &self,
        ids: &[u32],
        cache: Option<&mut KvCache>,
        first_row: usize,
        rows: usize,
    ) -> Result<Tensor, InferenceError> {
        self.final_hidden_inner(ids, cache, first_row, rows)
            .and_then(|hidden| self.lm_head.forward(&hidden))
            .map_err(compute)
    }

    /// The normalized final hidden states `(rows, hidden)` of positions `first_row..` of `ids`:
    /// what the LM head turns into logits (`logits_chunk`).
    pub(crate) fn final_hidden(
        &self,
        ids: &[u32],
        first_row: usize,
        rows: usize,
    ) -> Result<Tensor, InferenceError> {
        self.final_hidden_inner(ids, None, first_row, rows)
            .map_err(compute)
    }

    /// Logits of vocabulary entries `first..first + count` for `hidden` (`final_hidden`), as a
    /// row-major `(rows, count)` vector.
    pub(crate) fn logits_chunk(
        &self,
        hidden: &Tensor,
        first: usize,
        count: usize,
    ) -> Result<Vec<f32>, InferenceError> {
        self.lm_head
            .forward_rows(hidden, first, count)
            .and_then(|logits| logits.flatten_all()?.to_vec1::<f32>())
            .map_err(compute)
    }

    /// Vocabulary entries to score per `logits_chunk` call.
    pub(crate) fn logits_chunk_width(&self) -> usize {
        self.lm_head.row_chunk(LM_HEAD_CHUNK)
    }

    fn final_hidden_inner(
        &self,
        ids: &[u32],
        mut cache: Option<&mut KvCache>,
        first_row: usize,
        rows: usize,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let seq = ids.len();
        let offset = cache.as_ref().map_or(0, |cache| cache.len);
        if seq == 0 || first_row + rows > seq {
            candle_core::bail!(
                "bad forward request: {seq} ids, rows {first_row}..{}",
                first_row + rows
            )
        }
        if offset + seq > c.context_length {
            candle_core::bail!(
                "{} positions exceed the context length {}",
                offset + seq,
                c.context_length
            )
        }
        let device = Device::Cpu;
        let ids_tensor = Tensor::new(ids, &device)?;
        let mut x = self.embedding.index_select(&ids_tensor, 0)?; // (seq, hidden)
        let (cos, sin) = self.rope_tables(offset, seq)?;
        let mask = causal_mask(seq, offset)?;
        let scale = 1.0 / (c.head_dim as f64).sqrt();

        for (i, block) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &block.attn_norm, c.rms_eps)?;
            let q = heads_first(&block.q.forward(&h)?, c.heads, c.head_dim)?;
            let k = heads_first(&block.k.forward(&h)?, c.kv_heads, c.head_dim)?;
            let v = heads_first(&block.v.forward(&h)?, c.kv_heads, c.head_dim)?;
            // GGUF llama weights are permuted for the interleaved rotary layout.
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            let (k, v) = match cache.as_deref_mut() {
                Some(cache) => {
                    let (k, v) = match cache.entries[i].take() {
                        Some((pk, pv)) => {
                            (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?)
                        }
                        None => (k, v),
                    };
                    cache.entries[i] = Some((k.clone(), v.clone()));
                    (k, v)
                }
                None => (k, v),
            };
            let k = repeat_kv(&k, c.heads / c.kv_heads)?;
            let v = repeat_kv(&v, c.heads / c.kv_heads)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let attn = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?; // (1, heads, seq, hd)
            let attn = attn.transpose(1, 2)?.reshape((seq, c.hidden))?;
            x = (x + block.o.forward(&attn)?)?;

            let h = candle_nn::ops::rms_norm(&x, &block.ffn_norm, c.rms_eps)?;
            let gated =
                (candle_nn::ops::silu(&block.gate.forward(&h)?)? * block.up.forward(&h)?)?;
            x = (x + block.down.forward(&gated)?)?;
        }
        if let Some(cache) = cache {
            cache.len += seq;
        }
        let x = x.narrow(0, first_row, rows)?;
        candle_nn::ops::rms_norm(&x, &self.output_norm, c.rms_eps)
    }

    /// cos and sin tables `(seq, head_dim / 2)` for positions `offset..offset + seq`.
    fn rope_tables(&self, offset: usize, seq: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let c = &self.config;
        let half = c.head_dim / 2;
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for pos in offset..offset + seq {
            for i in 0..half {
                // Computed in f64 so the tables match the reference's to f32 precision.
                let freq = (c.rope_base as f64).powf(-2.0 * i as f64 / c.head_dim as f64);
                let angle = pos as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let device = Device::Cpu;
        Ok((
            Tensor::from_vec(cos, (seq, half), &device)?,
            Tensor::from_vec(sin, (seq, half), &device)?,
        ))
    }
}

/// `(seq, heads * head_dim)` -> contiguous `(1, heads, seq, head_dim)`.
fn heads_first(x: &Tensor, heads: usize, head_dim: usize) -> candle_core::Result<Tensor> {
    let seq = x.dims()[0];
    x.reshape((1, seq, heads, head_dim))?
        .transpose(1, 2)?
        .contiguous()
}

/// Grouped-query attention: each key/value head serves `repeats` consecutive query heads.
fn repeat_kv(x: &Tensor, repeats: usize) -> candle_core::Result<Tensor> {
    if repeats == 1 {
        return Ok(x.clone());
    }
    let (b, kv_heads, seq, head_dim) = x.dims4()?;
    x.unsqueeze(2)?
        .expand((b, kv_heads, repeats, seq, head_dim))?
        .reshape((b, kv_heads * repeats, seq, head_dim))
}

/// Additive mask `(seq, offset + seq)`: query i sees keys up to `offset + i`.
fn causal_mask(seq: usize, offset: usize) -> candle_core::Result<Tensor> {
    let keys = offset + seq;
    let mask: Vec<f32> = (0..seq)
        .flat_map(|i| {
            (0..keys).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (seq, keys), &Device::Cpu)?.to_dtype(DType::F32)
}

/// Row `row` of a `(rows, vocab)` logits tensor, for sampling.
pub(crate) fn last_row(logits: &Tensor) -> Result<Vec<f32>, InferenceError> {
    let rows = logits.dim(0).map_err(compute)?;
    logits
        .get(rows - 1)
        .and_then(|r| r.to_vec1::<f32>())
        .map_err(compute)
}
