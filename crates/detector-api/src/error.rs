//! The service's one error type, the one function that maps it to an HTTP status, and its JSON
//! form `{"error": {"code": "...", "message": "..."}}`.
//!
//! Messages are written for clients and never carry internal detail (paths, library errors):
//! that goes to the log through [`ErrorInfo::detail`].

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use auth::AuthError;
use inference::InferenceError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("A valid API key is required.")]
    Unauthorized(AuthError),
    #[error("The request body is not valid JSON: {0}.")]
    InvalidJson(String),
    #[error("The request body is not valid UTF-8.")]
    InvalidUtf8,
    #[error("The request body must be a JSON object.")]
    InvalidBody,
    #[error("The field \"text\" is required.")]
    MissingText,
    #[error("The field \"text\" must be a string.")]
    TextNotString,
    /// A fixed message for the client; the library's own wording is the logged detail.
    #[error("{message}")]
    BadRequest {
        message: &'static str,
        detail: String,
    },
    #[error("Content-Type must be application/json.")]
    UnsupportedMediaType,
    #[error("The request body is larger than {limit} bytes.")]
    PayloadTooLarge { limit: u64 },
    #[error("The text is empty.")]
    EmptyText,
    #[error("The text has {tokens} tokens; at least {min} are needed to score it.")]
    TextTooShort { tokens: usize, min: usize },
    #[error("Every inference slot is busy; retry after {retry_after_secs} s.")]
    Saturated { retry_after_secs: u32 },
    #[error("No route matches this path.")]
    NotFound,
    #[error("This route does not allow this method.")]
    MethodNotAllowed { allow: &'static str },
    /// The detail is logged, never sent.
    #[error("The server failed to handle the request.")]
    Internal(String),
}

/// The one mapping from error to status.
pub fn status_of(error: &ApiError) -> StatusCode {
    match error {
        ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        ApiError::InvalidJson(_)
        | ApiError::InvalidUtf8
        | ApiError::InvalidBody
        | ApiError::MissingText
        | ApiError::TextNotString
        | ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        ApiError::EmptyText | ApiError::TextTooShort { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ApiError::Saturated { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ApiError::NotFound => StatusCode::NOT_FOUND,
        ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// Stable machine-readable code for the `code` field.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidUtf8 => "invalid_utf8",
            ApiError::InvalidBody => "invalid_body",
            ApiError::MissingText => "missing_text",
            ApiError::TextNotString => "invalid_text",
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::EmptyText => "empty_text",
            ApiError::TextTooShort { .. } => "text_too_short",
            ApiError::Saturated { .. } => "saturated",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Internal(_) => "internal",
        }
    }

    /// What the log line gets beyond the code: why auth failed, what broke inside.
    fn detail(&self) -> Option<String> {
        match self {
            ApiError::Unauthorized(e) => Some(e.to_string()),
            ApiError::Internal(detail) | ApiError::BadRequest { detail, .. } => {
                Some(detail.clone())
            }
            _ => None,
        }
    }
}

impl From<InferenceError> for ApiError {
    fn from(e: InferenceError) -> Self {
        match e {
            InferenceError::EmptyText => ApiError::EmptyText,
            InferenceError::TooShort { tokens, min } => ApiError::TextTooShort { tokens, min },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Unauthorized(e)
    }
}

/// Left in the response's extensions for the request log and the rejection metrics.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub code: &'static str,
    pub detail: Option<String>,
}

/// Every error the service answers: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorFields<'a> {
    /// Stable machine-readable code; clients branch on this, never on the message.
    #[schema(value_type = crate::openapi::ErrorCode)]
    code: &'a str,
    /// One sentence for a human; its wording may change.
    message: &'a str,
}

/// The JSON error body; also used for errors actix produces itself.
pub fn error_response(status: StatusCode, code: &'static str, message: &str) -> HttpResponse {
    let mut response = HttpResponse::build(status).json(ErrorBody {
        error: ErrorFields { code, message },
    });
    response
        .extensions_mut()
        .insert(ErrorInfo { code, detail: None });
    response
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(self)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = error_response(self.status_code(), self.code(), &self.to_string());
        let headers = response.headers_mut();
        match self {
            // RFC 9110: a 401 names the scheme the client should use.
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"detector\""),
                );
            }
            ApiError::Saturated { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorInfo {
            code: self.code(),
            detail: self.detail(),
        });
        response
    }
}
