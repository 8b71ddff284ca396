//! The dense projection used by every matmul of the forward pass.
//!
//! Kept behind one small type so the matmul path can be swapped without touching the model code.
//! Two paths exist today: f32 weights through candle's gemm (the default; projections held
//! transposed, the LM head as rows), and the weights kept in their stored GGUF quantization
//! through candle's quantized matmul (measured about 11x slower here: candle 0.11 has no x86
//! SIMD kernel for Q4_1; see docs/benchmarks.md).

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

/// `y = x W^T` with `W` given as `(out_features, in_features)`, as in the GGUF file.
pub(crate) enum Dense {
    /// `W^T`, contiguous `(in_features, out_features)`: gemm reads it without a transposed view,
    /// measured 2 to 10 % faster than `x.matmul(&w.t())` on the projections' shapes.
    F32Transposed(Tensor),
    /// `W` as given, `(out_features, in_features)`: for the LM head, whose rows are taken a
    /// vocabulary chunk at a time (`forward_rows`), and which SmolLM2 ties to the embedding (a
    /// transposed copy would cost its size in memory and measured no faster).
    F32Rows(Tensor),
    Quantized {
        matmul: QMatMul,
        dims: Vec<usize>,
    },
}

impl Dense {
    /// Holds `weight` transposed (one copy at load, the original is dropped).
    pub(crate) fn f32(weight: Tensor) -> Result<Self> {
        Ok(Self::F32Transposed(weight.t()?.contiguous()?))
    }

    /// Holds `weight` as it is (sharing its storage with any other holder).
    pub(crate) fn f32_rows(weight: Tensor) -> Self {
        Self::F32Rows(weight)
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
            Self::F32Transposed(transposed) => x.matmul(transposed),
            Self::F32Rows(weight) => x.matmul(&weight.t()?),
            Self::Quantized { matmul, .. } => matmul.forward(x),
        }
    }

    /// Output features `first..first + count` only: `(rows, count)`.
    pub(crate) fn forward_rows(&self, x: &Tensor, first: usize, count: usize) -> Result<Tensor> {
        match self {
            Self::F32Rows(weight) => x.matmul(&weight.narrow(0, first, count)?.t()?),
            other => other.forward(x)?.narrow(1, first, count),
        }
    }

    /// Output features worth computing at once with `forward_rows`: a chunk for row-held
    /// weights, everything for the others (which would compute it all for each chunk).
    pub(crate) fn row_chunk(&self, preferred: usize) -> usize {
        match self {
            Self::F32Rows(_) => preferred,
            other => other.dims()[0],
        }
    }

    /// `[out_features, in_features]`.
    pub(crate) fn dims(&self) -> Vec<usize> {
        match self {
            Self::F32Transposed(transposed) => transposed.dims().iter().rev().copied().collect(),
            Self::F32Rows(weight) => weight.dims().to_vec(),
            Self::Quantized { dims, .. } => dims.clone(),
        }
    }
}
