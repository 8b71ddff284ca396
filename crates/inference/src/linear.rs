//! The dense projection used by every matmul of the forward pass.
//!
//! Kept behind one small type so the matmul path can be swapped without touching the model code.
//! Two paths exist today: f32 weights through candle's gemm (the default), and the weights kept in
//! their stored GGUF quantization through candle's quantized matmul (measured about 11x slower
//! here: candle 0.11 has no x86 SIMD kernel for Q4_1; see docs/benchmarks.md).

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Module, Result, Tensor};

/// How the projection weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// Dequantized to f32 at load (the production choice, by measurement).
    #[default]
    F32,
    /// Kept as stored in the file (Q4_1 blocks, Q8_0 LM head for SmolLM2).
    Stored,
}

/// `y = x W^T` with `W` stored as `(out_features, in_features)`, as in the GGUF file.
pub(crate) enum Dense {
    F32(Tensor),
    Quantized { matmul: QMatMul, dims: Vec<usize> },
}

impl Dense {
    pub(crate) fn f32(weight: Tensor) -> Self {
        Self::F32(weight)
    }

    pub(crate) fn quantized(weight: QTensor) -> Result<Self> {
        let dims = weight.shape().dims().to_vec();
        Ok(Self::Quantized {
            matmul: QMatMul::from_qtensor(weight)?,
            dims,
        })
    }

    /// `x` is `(rows, in_features)`; returns `(rows, out_features)`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::F32(weight) => x.matmul(&weight.t()?),
            Self::Quantized { matmul, .. } => matmul.forward(x),
        }
    }

    /// `[out_features, in_features]`.
    pub(crate) fn dims(&self) -> &[usize] {
        match self {
            Self::F32(weight) => weight.dims(),
            Self::Quantized { dims, .. } => dims,
        }
    }
}
