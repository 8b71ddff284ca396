//! Start-up and shutdown: load keys and model, start the API and metrics listeners, and after a
//! SIGTERM (see `signals`) let the jobs in flight finish within the grace period.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use inference::Detector;

use crate::config::Config;
use crate::keys::KeyRing;
use crate::limiter::JobSlots;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::{build_info, json_errors, metrics_endpoint, observe, routes, signals};

pub async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(
        version = build_info::VERSION,
        revision = build_info::REVISION,
        "Starting detector-api."
    );
    let installed_signals =
        signals::Signals::install().context("cannot install the signal handlers")?;
    let env_key = config.api_key()?;
    let short_env_key = env_key.as_ref().is_some_and(|k| k.expose().len() < 16);
    let keys = Arc::new(
        KeyRing::load(env_key, config.key_file.clone()).context("cannot load the API keys")?,
    );
    let metrics = Arc::new(Metrics::new());
    let active_keys = keys.snapshot().active_count();
    metrics.keys_loaded.set(active_keys as i64);
    if active_keys == 0 {
        tracing::warn!("No key is active: every request will get 401.");
    }
    if short_env_key {
        tracing::warn!("DETECTOR_API_KEY is shorter than 16 characters; use a long random key.");
    }

    let detector = load_model(
        &config.model_path,
        config.detector_config(),
        config.inference_nice,
        &metrics,
    )
    .await?;
    metrics.set_build_info(detector.model_info());
    let slots = JobSlots::new(config.max_concurrent_jobs);
    metrics.job_slots.set(i64::from(slots.capacity()));

    let state = web::Data::new(AppState {
        detector,
        keys: keys.clone(),
        slots: slots.clone(),
        metrics: metrics.clone(),
        max_body_bytes: config.max_body_bytes,
        retry_after_secs: config.retry_after_secs,
    });
    let body_limit = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);

    let api_state = state.clone();
    let api = HttpServer::new(move || {
        App::new()
            .app_data(api_state.clone())
            .app_data(json_errors::json_config(body_limit))
            .app_data(json_errors::path_config())
            .app_data(json_errors::query_config())
            .configure(routes::configure)
            .wrap(ErrorHandlers::new().default_handler(json_errors::ensure_json))
            .wrap(from_fn(observe::observe))
    })
    // Signals are handled below, so that SIGTERM drains both listeners and the inference jobs.
    .disable_signals()
    .shutdown_timeout(config.shutdown_grace_secs)
    .bind(config.bind)
    .with_context(|| format!("cannot listen on {} (DETECTOR_BIND)", config.bind))?
    .run();

    let metrics_server = metrics_endpoint::server(metrics.clone(), config.metrics_bind)?;

    tracing::info!(
        bind = %config.bind,
        metrics_bind = %config.metrics_bind,
        max_concurrent_jobs = config.max_concurrent_jobs,
        keys = active_keys,
        "Listening."
    );

    let api_handle = api.handle();
    let metrics_handle = metrics_server.handle();
    let metrics_task = actix_web::rt::spawn(metrics_server);
    let shutdown_started = Arc::new(OnceLock::new());
    let signal_task = actix_web::rt::spawn(signals::handle(
        installed_signals,
        api_handle,
        keys,
        metrics.clone(),
        shutdown_started.clone(),
    ));

    api.await.context("the API server failed")?;
    signal_task.abort();

    // Jobs whose clients went away still hold their slots; give them what is left of the grace
    // (one grace period in all, counted from the signal).
    let elapsed = shutdown_started
        .get()
        .map_or(Duration::ZERO, Instant::elapsed);
    let drained = slots
        .wait_idle(config.shutdown_grace().saturating_sub(elapsed))
        .await;
    if !drained {
        tracing::warn!(
            jobs = slots.busy(),
            "Grace period over with jobs still running; exiting anyway."
        );
    }
    metrics_handle.stop(false).await;
    let _ = metrics_task.await;
    tracing::info!("Stopped.");
    Ok(())
}

async fn load_model(
    path: &Path,
    detector_config: inference::DetectorConfig,
    inference_nice: u8,
    metrics: &Metrics,
) -> anyhow::Result<Arc<Detector>> {
    if !path.exists() {
        anyhow::bail!(
            "the model file {} does not exist: run scripts/fetch-model, or point \
             DETECTOR_MODEL_PATH at the GGUF weights",
            path.display()
        );
    }
    let started = Instant::now();
    let owned_path = path.to_owned();
    // Loading reads and dequantizes the weights: blocking work, off the async thread.
    let detector = web::block(move || {
        Detector::load(&owned_path, detector_config)?.with_job_nice(inference_nice)
    })
    .await
    .context("the model loading task failed")?
    .with_context(|| format!("cannot load the model from {}", path.display()))?;
    let elapsed = started.elapsed();
    metrics.model_load_seconds.set(elapsed.as_secs_f64());
    let info = detector.model_info();
    tracing::info!(
        model = %info.name,
        sha256 = %info.sha256_short,
        min_tokens = detector.config().min_tokens,
        max_tokens = detector.config().max_tokens,
        inference_nice = detector.job_nice(),
        load_seconds = elapsed.as_secs_f64(),
        "Model loaded."
    );
    Ok(Arc::new(detector))
}
