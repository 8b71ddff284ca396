//! Signals: SIGHUP reloads the key file; SIGTERM and SIGINT stop accepting connections and let
//! requests in flight finish (the server's shutdown timeout bounds the wait).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix_web::dev::ServerHandle;
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::keys::KeyRing;
use crate::metrics::Metrics;

/// The signal streams, installed first thing at start-up: from then on a SIGHUP or SIGTERM that
/// arrives while the model loads waits to be handled instead of killing the process.
pub struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }
}

pub async fn handle(
    signals: Signals,
    api: ServerHandle,
    keys: Arc<KeyRing>,
    metrics: Arc<Metrics>,
    shutdown_started: Arc<OnceLock<Instant>>,
) {
    let Signals {
        mut hangup,
        mut terminate,
        mut interrupt,
    } = signals;
    loop {
        tokio::select! {
            _ = hangup.recv() => reload_keys(&keys, &metrics),
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    let _ = shutdown_started.set(Instant::now());
    tracing::info!("Shutting down: no new connections; draining jobs in flight.");
    // Graceful: in-flight requests finish (bounded by the server's shutdown timeout).
    api.stop(true).await;
}

fn reload_keys(keys: &KeyRing, metrics: &Metrics) {
    if keys.key_file().is_none() {
        tracing::info!("SIGHUP received; no key file is configured, nothing to reload.");
        return;
    }
    // The key file is small; reading it inline is cheaper than a trip to the blocking pool.
    match keys.reload() {
        Ok(store) => {
            let active = store.active_count();
            metrics.key_reloads.with_label_values(&["ok"]).inc();
            metrics.keys_loaded.set(active as i64);
            tracing::info!(keys = active, "Key file reloaded.");
        }
        Err(e) => {
            metrics.key_reloads.with_label_values(&["error"]).inc();
            tracing::error!(error = %e, "Key file reload failed; the previous keys stay in force.");
        }
    }
}
