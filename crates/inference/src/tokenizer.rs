//! The model's own tokenizer, rebuilt from the GGUF metadata (byte-level BPE).
//!
//! Special-token text typed by a user (for example `<|endoftext|>` inside a submitted text) is
//! tokenized as plain text: the control tokens are deliberately not registered as added tokens, so
//! no user input can inject a control token into the scored sequence. The reference tokenizer in
//! tools/reference/ is run with `split_special_tokens=True` to match.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::Tokenizer;

use crate::gguf::GgufFile;
use crate::InferenceError;

/// Byte-level BPE tokenizer of the loaded model.
pub(crate) struct TextTokenizer {
    inner: Tokenizer,
    vocab_size: usize,
    eos_id: Option<u32>,
}

fn invalid(message: impl Into<String>) -> InferenceError {
    InferenceError::InvalidModel(message.into())
}

/// The pre-tokenizer named by `tokenizer.ggml.pre`. Only byte-level flavours are supported.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, InferenceError> {
    // `add_prefix_space = false`: the model was trained without a leading space on the text.
    let byte_level = ByteLevel::new(false, false, true);
    match pre {
        // SmolLM's tokenizer splits every digit on its own before the GPT-2 regex.
        "smollm" => Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(byte_level),
        ]))),
        "gpt2" | "default" => Ok(PreTokenizerWrapper::ByteLevel(byte_level)),
        other => Err(invalid(format!(
            "unsupported tokenizer pre-tokenizer {other:?}"
        ))),
    }
}

impl TextTokenizer {
    pub(crate) fn from_gguf(gguf: &GgufFile) -> Result<Self, InferenceError> {
        let model = gguf.string("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(invalid(format!(
                "unsupported tokenizer model {model:?} (byte-level BPE `gpt2` only)"
            )));
        }
        let pre = if gguf.has("tokenizer.ggml.pre") {
            gguf.string("tokenizer.ggml.pre")?
        } else {
            "default"
        };
        let tokens = gguf.strings("tokenizer.ggml.tokens")?;
        let merges = gguf.strings("tokenizer.ggml.merges")?;

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.to_string(), id as u32))
            .collect();
        if vocab.len() != tokens.len() {
            return Err(invalid("tokenizer vocabulary has duplicate tokens"));
        }
        let merges = merges
            .iter()
            .map(|merge| {
                merge
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| invalid(format!("malformed merge {merge:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| invalid(format!("tokenizer: {e}")))?;

        let mut inner = Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let eos_id = if gguf.has("tokenizer.ggml.eos_token_id") {
            Some(gguf.usize("tokenizer.ggml.eos_token_id")? as u32)
        } else {
            None
        };
        Ok(Self {
            inner,
            vocab_size: tokens.len(),
            eos_id,
        })
    }

    /// Token ids of `text`, without BOS or any other added token.
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, InferenceError> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| InferenceError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub(crate) fn decode(&self, ids: &[u32]) -> Result<String, InferenceError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| InferenceError::Tokenizer(e.to_string()))
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub(crate) fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }
}
