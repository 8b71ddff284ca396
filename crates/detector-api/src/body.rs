//! The `JsonObject` extractor: the request body as a JSON object, with every way of getting it
//! wrong answered by its own typed error (415, 413, invalid UTF-8, invalid JSON, not an object).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// After the limit is exceeded, up to this much more is read and dropped, so a client that is
/// still sending reads the 413 instead of a connection reset; beyond it the connection is closed.
const DRAIN_LIMIT: u64 = 1024 * 1024;

pub struct JsonObject(pub Map<String, Value>);

impl FromRequest for JsonObject {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(0, |state| state.max_body_bytes);
        let content_type_ok = is_json_content_type(req);
        let declared_length = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType);
            }
            let bytes = read_limited(payload, limit, declared_length).await?;
            parse_object(&bytes).map(JsonObject)
        })
    }
}

fn is_json_content_type(req: &HttpRequest) -> bool {
    let Some(value) = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

async fn read_limited(
    mut payload: Payload,
    limit: u64,
    declared_length: Option<u64>,
) -> Result<Vec<u8>, ApiError> {
    let too_large = ApiError::PayloadTooLarge { limit };
    if declared_length.is_some_and(|len| len > limit + DRAIN_LIMIT) {
        return Err(too_large);
    }
    let mut body = Vec::with_capacity(declared_length.unwrap_or(0).min(limit) as usize);
    let mut seen: u64 = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest {
            message: "The request body could not be read.",
            detail: e.to_string(),
        })?;
        seen += chunk.len() as u64;
        if seen > limit + DRAIN_LIMIT {
            break;
        }
        if seen <= limit {
            body.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(too_large);
    }
    Ok(body)
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    // UTF-8 first, so invalid bytes get their own answer rather than a JSON syntax error.
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::InvalidUtf8)?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::InvalidBody),
        Err(e) => Err(ApiError::InvalidJson(e.to_string())),
    }
}
