//! The request middleware: one log line and one metrics count per request, once the response is
//! final, or when the request is dropped unanswered (a connection force-closed at the end of the
//! shutdown grace period), as status 499, nginx's "client closed request". The line names the
//! key's id, never the key.

use std::cell::OnceCell;
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use auth::KeyId;

use crate::error::ErrorInfo;
use crate::routes::TokensScored;
use crate::state::AppState;

/// Status recorded for a request dropped before its answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut record = RequestRecord::begin(&req);
    let result = next.call(req).await;
    match &result {
        Ok(res) => record.finish(Outcome {
            status: res.status().as_u16(),
            tokens: res
                .response()
                .extensions()
                .get::<TokensScored>()
                .map(|t| t.0),
            error: res.response().extensions().get::<ErrorInfo>().cloned(),
        }),
        Err(e) => record.finish(Outcome {
            status: e.as_response_error().status_code().as_u16(),
            tokens: None,
            error: None,
        }),
    }
    result
}

struct Outcome {
    status: u16,
    tokens: Option<usize>,
    error: Option<ErrorInfo>,
}

/// Where the auth extractor leaves the id of the key that authenticated the request. Shared with
/// the record rather than read back from the request, because a dropped request is gone by the
/// time its line is written.
#[derive(Clone, Default)]
pub struct KeyIdCell(Rc<OnceCell<KeyId>>);

impl KeyIdCell {
    pub fn set(&self, id: KeyId) {
        let _ = self.0.set(id);
    }
}

/// One request's log line and count; emitted exactly once, on `finish` or else on drop.
struct RequestRecord {
    state: Option<web::Data<AppState>>,
    key_id: KeyIdCell,
    method: Method,
    route: String,
    started: Instant,
    done: bool,
}

impl RequestRecord {
    fn begin(request: &ServiceRequest) -> Self {
        let key_id = KeyIdCell::default();
        request.extensions_mut().insert(key_id.clone());
        Self {
            state: request.app_data::<web::Data<AppState>>().cloned(),
            key_id,
            method: request.method().clone(),
            // Unmatched paths share one label so scanners cannot blow up the metric's cardinality
            // (and a path never reaches the log: it may carry anything, a key included).
            route: request
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_owned()),
            started: Instant::now(),
            done: false,
        }
    }

    fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let Outcome {
            status,
            tokens,
            error,
        } = outcome;
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        if let Some(state) = &self.state {
            state.metrics.observe_request(&self.route, status);
        }
        let key_id = self.key_id.0.get().map_or("-", KeyId::as_str);
        let code = error.as_ref().map_or("-", |e| e.code);
        let detail = error.as_ref().and_then(|e| e.detail.as_deref());
        let (method, route) = (&self.method, self.route.as_str());
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
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        self.finish(Outcome {
            status: CLIENT_CLOSED_REQUEST,
            tokens: None,
            error: None,
        });
    }
}
