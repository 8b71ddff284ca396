//! `POST /score`: auth, validation, one inference slot (or 503 at once), the job on a blocking
//! thread, JSON.

use std::time::Instant;

use actix_web::{web, HttpResponse};
use serde::Serialize;
use serde_json::Value;

use crate::auth::Authenticated;
use crate::body::JsonObject;
use crate::error::ApiError;
use crate::routes::TokensScored;
use crate::state::AppState;

#[derive(Serialize)]
struct ScoreResponse<'a> {
    score: f64,
    label: inference::Label,
    model: &'a inference::ModelInfo,
    tokens: usize,
    truncated: bool,
    criterion: f64,
    mean_log_prob: f64,
    mean_entropy: f64,
}

// The extractors run in order: the key is checked before the body is read.
pub async fn score(
    _auth: Authenticated,
    body: JsonObject,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let text = text_field(body)?;
    if text.trim().is_empty() {
        return Err(ApiError::EmptyText);
    }
    let slot = state.slots.try_take().ok_or(ApiError::Saturated {
        retry_after_secs: state.retry_after_secs,
    })?;

    let detector = state.detector.clone();
    let metrics = state.metrics.clone();
    // The slot moves into the job: it is released when the computation ends, not when the
    // client goes away.
    let job = web::block(move || {
        let _slot = slot;
        let _in_flight = InFlight::enter(&metrics.jobs_in_flight);
        let started = Instant::now();
        let result = detector.score(&text);
        metrics
            .inference_duration
            .observe(started.elapsed().as_secs_f64());
        result
    });
    let scored = job
        .await
        .map_err(|e| ApiError::Internal(format!("inference task failed: {e}")))??;

    state.metrics.tokens_scored.inc_by(scored.tokens as u64);
    let mut response = HttpResponse::Ok().json(ScoreResponse {
        score: scored.score,
        label: scored.label,
        model: state.detector.model_info(),
        tokens: scored.tokens,
        truncated: scored.truncated,
        criterion: scored.criterion,
        mean_log_prob: scored.mean_log_prob,
        mean_entropy: scored.mean_entropy,
    });
    response
        .extensions_mut()
        .insert(TokensScored(scored.tokens));
    Ok(response)
}

fn text_field(JsonObject(mut body): JsonObject) -> Result<String, ApiError> {
    match body.remove("text") {
        None => Err(ApiError::MissingText),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(ApiError::TextNotString),
    }
}

/// Counts a job in the in-flight gauge for exactly as long as it runs, even if it panics.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
