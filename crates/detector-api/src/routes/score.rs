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

/// The verdict on one text.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ScoreResponse<'a> {
    /// Calibrated probability that the text is machine-generated.
    #[schema(minimum = 0.0, maximum = 1.0)]
    score: f64,
    #[schema(value_type = crate::openapi::Label)]
    label: inference::Label,
    #[schema(value_type = crate::openapi::Model)]
    model: &'a inference::ModelInfo,
    /// Tokens scored: at least the service's minimum (16 by default), at most its maximum (512
    /// by default, longer texts are truncated). The first token is context only.
    tokens: usize,
    /// True when the text was longer than the maximum and only its beginning was scored.
    truncated: bool,
    /// Fast-DetectGPT analytic criterion the score is calibrated from; higher means more
    /// machine-like. An unbounded real number.
    criterion: f64,
    /// Mean log-probability (natural log, so at most 0) the model gives each actual next token.
    #[schema(maximum = 0.0)]
    mean_log_prob: f64,
    /// Mean entropy (nats, at least 0) of the model's next-token distribution.
    #[schema(minimum = 0.0)]
    mean_entropy: f64,
}

// The extractors run in order: the key is checked before the body is read.
#[utoipa::path(
    post,
    path = "/score",
    tag = "scoring",
    summary = "Score one text",
    description = "Probability that the text is machine-generated, with its label and signals. \
        The key is checked before the body is read. Each request takes one inference slot; \
        when none is free the answer is 503 at once, never a wait in a queue.",
    request_body(content = crate::openapi::ScoreRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The text was scored.", body = ScoreResponse),
        (status = 400, description = "`invalid_json`, `invalid_utf8`, `invalid_body`, \
            `missing_text`, `invalid_text` or `bad_request`: the body is not a JSON object \
            with a string field `text`.", body = crate::error::ErrorBody),
        (status = 401, description = "`unauthorized`: no key, or one that is malformed, unknown, \
            expired or revoked, or two different ones.", body = crate::error::ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"detector\"`"))),
        (status = 405, description = "`method_not_allowed`: only POST.",
            body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`POST`"))),
        (status = 413, description = "`payload_too_large`: the body is larger than the \
            service's limit (65536 bytes by default).", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: Content-Type is not \
            application/json.", body = crate::error::ErrorBody),
        (status = 422, description = "`empty_text` or `text_too_short`: too few tokens to \
            score (16 by default).", body = crate::error::ErrorBody),
        (status = 500, description = "`internal`: the model failed on this text; the detail \
            goes to the service's log only.", body = crate::error::ErrorBody),
        (status = 503, description = "`saturated`: every inference slot is busy; retry after \
            the announced delay.", body = crate::error::ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying \
                (1 by default)."))),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
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
