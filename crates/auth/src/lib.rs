#![forbid(unsafe_code)]
//! API keys. (Being written.)
