//! What this binary is: crate version and the source revision it was built from.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Set at compile time (the Dockerfile passes `git rev-parse HEAD`); "unknown" otherwise.
pub const REVISION: &str = match option_env!("DETECTOR_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};
