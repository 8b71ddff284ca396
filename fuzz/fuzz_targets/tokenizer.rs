//! The tokenizer on arbitrary UTF-8: `inference::Detector::tokenize` of the real model, which is
//! what `score` runs first on every accepted text.
//!
//! The model is loaded once per fuzzing process from `DETECTOR_MODEL_PATH` (default: the repo's
//! `models/SmolLM2-135M-Instruct.Q4_1.gguf`, fetched by scripts/fetch-model). Checked: no panic
//! and no error; every id is one the model can embed (else `score` would answer 500); and
//! `detokenize` gives the text back, except for the bytes SmolLM2's vocabulary has no token for.
//!
//! Those bytes are a finding of this target (docs/reliability.md): byte-level BPE needs a token
//! for each of the 256 bytes, SmolLM2's vocabulary lacks 21 of them (the BPE has no unknown token,
//! so they are dropped silently, as the reference tokenizer does). Of those, only 0x04, 0x06,
//! 0x13, 0x14, 0x16 and 0x1D (control characters) and the lead bytes 0xF1 and 0xF2 (code points
//! U+40000..U+BFFFF) occur in UTF-8; the other bytes never do.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use inference::{Detector, DetectorConfig};
use libfuzzer_sys::fuzz_target;

/// Bytes without a token in SmolLM2's vocabulary (read from the GGUF's tokenizer.ggml.tokens).
const BYTES_WITHOUT_TOKEN: [u8; 21] = [
    0x04, 0x06, 0x13, 0x14, 0x16, 0x1d, 0xc0, 0xc1, 0xf1, 0xf2, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa,
    0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];

/// SmolLM2's vocabulary (and embedding) size, checked against the model at load. An id at or
/// above it makes `signals` fail, which the service would answer with a 500.
const VOCAB_SIZE: u32 = 49_152;

fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        let path = std::env::var_os("DETECTOR_MODEL_PATH").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
        let detector = Detector::load(&path, DetectorConfig::default())
            .unwrap_or_else(|e| panic!("cannot load the model for the tokenizer target: {e}"));
        // The vocabulary bound below is the embedding's: the last id scores, the next does not.
        assert!(detector.signals(&[0, VOCAB_SIZE - 1]).is_ok(), "vocabulary smaller than {VOCAB_SIZE}");
        assert!(detector.signals(&[0, VOCAB_SIZE]).is_err(), "vocabulary larger than {VOCAB_SIZE}");
        // The list of bytes without a token is right for ASCII: exactly those tokenize to nothing.
        for byte in 0u8..0x80 {
            let ids = detector.tokenize(&char::from(byte).to_string()).unwrap();
            assert_eq!(ids.is_empty(), BYTES_WITHOUT_TOKEN.contains(&byte), "byte {byte:#04x}");
        }
        detector
    })
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let detector = detector();
    let ids = detector
        .tokenize(text)
        .unwrap_or_else(|e| panic!("tokenize failed on {text:?}: {e}"));
    assert!(ids.iter().all(|&id| id < VOCAB_SIZE), "id outside the vocabulary for {text:?}: {ids:?}");
    let back = detector
        .detokenize(&ids)
        .unwrap_or_else(|e| panic!("detokenize failed on {text:?}: {e}"));
    // What survives: the text's bytes minus those without a token, decoded as the ByteLevel
    // decoder does (lossy: a 4-byte character whose lead byte was dropped becomes U+FFFD).
    let kept: Vec<u8> = text.bytes().filter(|b| !BYTES_WITHOUT_TOKEN.contains(b)).collect();
    assert_eq!(back, String::from_utf8_lossy(&kept), "tokenize/detokenize changed the text");
});
