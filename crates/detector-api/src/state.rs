//! What every request handler shares.

use std::sync::Arc;

use inference::Detector;

use crate::keys::KeyRing;
use crate::limiter::JobSlots;
use crate::metrics::Metrics;

pub struct AppState {
    pub detector: Arc<Detector>,
    pub keys: Arc<KeyRing>,
    pub slots: JobSlots,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: u64,
    pub retry_after_secs: u32,
}
