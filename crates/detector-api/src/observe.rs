//! The request middleware: one log line and one metrics count per request, after the response is
//! final. The line names the key's id, never the key.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use auth::KeyId;

use crate::error::ErrorInfo;
use crate::routes::TokensScored;
use crate::state::AppState;

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let result = next.call(req).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;

    let (status, route, key_id, tokens, error) = match &result {
        Ok(res) => {
            let request = res.request();
            // Unmatched paths share one label so scanners cannot blow up the metric's cardinality.
            let route = request
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned());
            let key_id = request.extensions().get::<KeyId>().cloned();
            let tokens = res
                .response()
                .extensions()
                .get::<TokensScored>()
                .map(|t| t.0);
            let error = res.response().extensions().get::<ErrorInfo>().cloned();
            (res.status().as_u16(), route, key_id, tokens, error)
        }
        Err(e) => (
            e.as_response_error().status_code().as_u16(),
            "unmatched".to_owned(),
            None,
            None,
            None,
        ),
    };

    if let Some(state) = &state {
        state.metrics.observe_request(&route, status);
    }
    let key_id = key_id.as_ref().map_or("-", KeyId::as_str);
    let code = error.as_ref().map_or("-", |e| e.code);
    let detail = error.as_ref().and_then(|e| e.detail.as_deref());
    if status >= 500 && status != 503 {
        tracing::error!(
            method = %method, route, status, latency_ms, key_id, tokens, code, detail,
            "Request failed."
        );
    } else {
        tracing::info!(
            method = %method, route, status, latency_ms, key_id, tokens, code, detail,
            "Request served."
        );
    }
    result
}
