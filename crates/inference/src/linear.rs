//! The dense projection used by every matmul of the forward pass.
//!
//! Kept behind one small type so the matmul path (f32 gemm today) can be swapped for another
//! representation without touching the model code.

use candle_core::{Result, Tensor};

/// `y = x W^T` with `W` stored as `(out_features, in_features)`, as in the GGUF file.
pub(crate) struct Dense {
    weight: Tensor,
}

impl Dense {
    pub(crate) fn new(weight: Tensor) -> Self {
        Self { weight }
    }

    /// `x` is `(rows, in_features)`; returns `(rows, out_features)`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.t()?)
    }

    pub(crate) fn weight(&self) -> &Tensor {
        &self.weight
    }
}
