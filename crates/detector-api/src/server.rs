//! Start-up and shutdown: load keys and model, start the API and metrics listeners, react to
//! signals (SIGHUP reloads keys; SIGTERM/SIGINT drain jobs in flight, then exit).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use inference::Detector;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::error::{error_response, ApiError};
use crate::keys::KeyRing;
use crate::limiter::JobSlots;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::{build_info, json_errors, observe, routes};

pub async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(
        version = build_info::VERSION,
        revision = build_info::REVISION,
        "Starting detector-api."
    );
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

    let detector = load_model(&config.model_path, config.detector_config(), &metrics).await?;
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

    let metrics_for_server = metrics.clone();
    let metrics_server = HttpServer::new(move || {
        let metrics = metrics_for_server.clone();
        App::new()
            .route(
                "/metrics",
                web::get().to(move || {
                    let body = metrics.render();
                    async move {
                        HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4; charset=utf-8")
                            .body(body)
                    }
                }),
            )
            .default_service(web::to(|| async {
                error_response(
                    actix_web::http::StatusCode::NOT_FOUND,
                    ApiError::NotFound.code(),
                    &ApiError::NotFound.to_string(),
                )
            }))
    })
    // Scrapes are rare and cheap: one worker is plenty.
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(config.metrics_bind)
    .with_context(|| {
        format!(
            "cannot listen on {} (DETECTOR_METRICS_BIND)",
            config.metrics_bind
        )
    })?
    .run();

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
    let signals = actix_web::rt::spawn(handle_signals(
        api_handle,
        keys,
        metrics.clone(),
        shutdown_started.clone(),
    ));

    api.await.context("the API server failed")?;
    signals.abort();

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
    let detector = web::block(move || Detector::load(&owned_path, detector_config))
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
        load_seconds = elapsed.as_secs_f64(),
        "Model loaded."
    );
    Ok(Arc::new(detector))
}

async fn handle_signals(
    api: ServerHandle,
    keys: Arc<KeyRing>,
    metrics: Arc<Metrics>,
    shutdown_started: Arc<OnceLock<Instant>>,
) {
    let (Ok(mut hangup), Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Cannot install signal handlers; stopping.");
        api.stop(true).await;
        return;
    };
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
