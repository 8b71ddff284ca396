//! Makes the errors actix produces on its own JSON as well: extractor configs for JSON, path and
//! query errors, and a last-resort middleware handler that rewrites any non-JSON error response
//! (so no plain-text error ever reaches a client, whatever produced it).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header;
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{web, HttpRequest};

use crate::error::{error_response, ApiError};

pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |e, _req: &HttpRequest| {
            let error = match e {
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => ApiError::PayloadTooLarge {
                    limit: limit as u64,
                },
                JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
                JsonPayloadError::Deserialize(e) => ApiError::InvalidJson(e.to_string()),
                other => ApiError::BadRequest {
                    message: "The request body could not be read.",
                    detail: other.to_string(),
                },
            };
            error.into()
        })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|e: PathError, _req: &HttpRequest| {
        ApiError::BadRequest {
            message: "The path is invalid.",
            detail: e.to_string(),
        }
        .into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e: QueryPayloadError, _req: &HttpRequest| {
        ApiError::BadRequest {
            message: "The query string is invalid.",
            detail: e.to_string(),
        }
        .into()
    })
}

/// `ErrorHandlers` default handler: keeps JSON error responses, rewrites the others.
pub fn ensure_json<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        500..=599 => "internal",
        _ => "error",
    };
    let message = status.canonical_reason().unwrap_or("Error");
    let (req, old) = res.into_parts();
    let mut new: actix_web::HttpResponse<BoxBody> =
        error_response(status, code, &format!("{message}."));
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, new).map_into_right_body::<B>(),
    ))
}
