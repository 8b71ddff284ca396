//! Reading a GGUF file: metadata look-ups and tensors dequantized to f32.
//!
//! Weights are dequantized once at load. Measured on the 2-core target machine, candle 0.11 has no
//! SIMD kernel for Q4_1 on x86, so keeping the weights quantized made a 128-token forward about 11
//! times slower than f32 (see docs/benchmarks.md).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

use crate::InferenceError;

/// An opened GGUF file: its parsed header plus a reader positioned anywhere.
pub(crate) struct GgufFile {
    content: Content,
    reader: BufReader<File>,
}

fn invalid(message: impl Into<String>) -> InferenceError {
    InferenceError::InvalidModel(message.into())
}

impl GgufFile {
    pub(crate) fn open(path: &Path) -> Result<Self, InferenceError> {
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => InferenceError::ModelMissing {
                path: path.to_path_buf(),
            },
            _ => invalid(format!("cannot open {}: {e}", path.display())),
        })?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader)
            .map_err(|e| invalid(format!("{} is not a GGUF file: {e}", path.display())))?;
        Ok(Self { content, reader })
    }

    fn value(&self, key: &str) -> Result<&Value, InferenceError> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| invalid(format!("metadata key {key} is missing")))
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.content.metadata.contains_key(key)
    }

    pub(crate) fn string(&self, key: &str) -> Result<&str, InferenceError> {
        self.value(key)?
            .to_string()
            .map(String::as_str)
            .map_err(|e| invalid(format!("metadata key {key}: {e}")))
    }

    pub(crate) fn usize(&self, key: &str) -> Result<usize, InferenceError> {
        let value = self.value(key)?;
        // Writers differ in the integer width they use for counts; accept any of them.
        let n = match value {
            Value::U8(v) => *v as u64,
            Value::U16(v) => *v as u64,
            Value::U32(v) => *v as u64,
            Value::U64(v) => *v,
            Value::I8(v) if *v >= 0 => *v as u64,
            Value::I16(v) if *v >= 0 => *v as u64,
            Value::I32(v) if *v >= 0 => *v as u64,
            Value::I64(v) if *v >= 0 => *v as u64,
            other => {
                return Err(invalid(format!(
                    "metadata key {key} is not a count: {other:?}"
                )))
            }
        };
        usize::try_from(n).map_err(|_| invalid(format!("metadata key {key} is too large")))
    }

    pub(crate) fn f32(&self, key: &str) -> Result<f32, InferenceError> {
        match self.value(key)? {
            Value::F32(v) => Ok(*v),
            Value::F64(v) => Ok(*v as f32),
            other => Err(invalid(format!(
                "metadata key {key} is not a float: {other:?}"
            ))),
        }
    }

    pub(crate) fn strings(&self, key: &str) -> Result<Vec<&str>, InferenceError> {
        let values = self
            .value(key)?
            .to_vec()
            .map_err(|e| invalid(format!("metadata key {key}: {e}")))?;
        values
            .iter()
            .map(|v| {
                v.to_string()
                    .map(String::as_str)
                    .map_err(|e| invalid(format!("metadata key {key}: {e}")))
            })
            .collect()
    }

    pub(crate) fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Reads tensor `name` as stored (quantized or not).
    pub(crate) fn qtensor(&mut self, name: &str) -> Result<QTensor, InferenceError> {
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| invalid(format!("tensor {name}: {e}")))
    }

    /// Reads tensor `name` and dequantizes it to an f32 tensor on the CPU.
    pub(crate) fn f32_tensor(&mut self, name: &str) -> Result<Tensor, InferenceError> {
        let qtensor = self.qtensor(name)?;
        let tensor = qtensor
            .dequantize(&Device::Cpu)
            .map_err(|e| invalid(format!("tensor {name}: {e}")))?;
        tensor
            .to_dtype(DType::F32)
            .map_err(|e| invalid(format!("tensor {name}: {e}")))
    }
}
