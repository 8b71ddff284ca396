//! The OpenAPI document of the service, generated from the handlers' and types' annotations and
//! printed by `detector-api openapi`. The committed docs/openapi.json is its output; a test keeps
//! the two equal and checks the running service against it.
//!
//! The types below exist only for the document: they describe values whose Rust types live in
//! the `inference` crate (which has no HTTP and so no schema annotations) or that the service
//! reads without a struct (the request body).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::{ErrorBody, ErrorFields};
use crate::routes::healthz::{self, Health};
use crate::routes::score::{self, ScoreResponse};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "detector-api",
        description = "AI-generated-text detector: scores how likely a text is to be \
            machine-generated. Every route needs an API key, sent as `Authorization: Bearer KEY` \
            or `X-API-Key: KEY`. Every error, including 404 for a path no route matches, is JSON \
            `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}` (schema `ErrorBody`). \
            Prometheus metrics are served on a separate listener, never on this one. \
            See docs/api.md."
    ),
    paths(score::score, healthz::healthz),
    components(schemas(ScoreRequest, ScoreResponse, Health, Model, Label, ErrorBody, ErrorFields, ErrorCode)),
    modifiers(&KeySchemes, &HeadHealthz),
    tags(
        (name = "scoring", description = "Scoring texts."),
        (name = "operations", description = "Health of the running service."),
    )
)]
pub struct ApiDoc;

/// The document as printed by `detector-api openapi` and committed as docs/openapi.json.
pub fn document() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    json.push('\n');
    json
}

/// The two ways to present the one key: `bearer` and `api_key` (see auth::presented_key).
struct KeySchemes;

impl Modify for KeySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer KEY`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "`X-API-Key: KEY`, for clients that cannot set Authorization.",
            ))),
        );
    }
}

/// `HEAD /healthz` is routed to the GET handler: the same operation under its own id, and
/// without bodies, since a HEAD answer has none.
struct HeadHealthz;

impl Modify for HeadHealthz {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(item) = openapi.paths.paths.get_mut("/healthz") else {
            return;
        };
        let Some(mut head) = item.get.clone() else {
            return;
        };
        head.operation_id = Some("healthz_head".into());
        head.summary = Some("Liveness and identity, headers only".into());
        for response in head.responses.responses.values_mut() {
            if let utoipa::openapi::RefOr::T(response) = response {
                response.content.clear();
            }
        }
        item.head = Some(head);
    }
}

/// The body of `POST /score`. Other fields are ignored.
#[derive(ToSchema)]
#[allow(dead_code)] // read as a JSON object by body::JsonObject; this type only documents it
pub struct ScoreRequest {
    /// The text to score, UTF-8. Must have at least the service's minimum of tokens (16 by
    /// default); beyond its maximum (512 by default) only the beginning is scored. The whole
    /// body is at most 65536 bytes by default.
    text: String,
}

/// Name and short hash of the loaded weights (inference::ModelInfo).
#[derive(ToSchema)]
#[allow(dead_code)] // the response serializes inference::ModelInfo; this type only documents it
pub struct Model {
    /// File name of the weights without `.gguf`, e.g. `SmolLM2-135M-Instruct.Q4_1`.
    name: String,
    /// First 12 hex digits of the SHA-256 of the weights file.
    #[schema(pattern = "^[0-9a-f]{12}$")]
    sha256_short: String,
}

/// Verdict from the score and two thresholds (inference::Label): `ai` at or above the upper
/// one, `human` at or below the lower one, `uncertain` between (see docs/detection.md).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // the response serializes inference::Label; this type only documents it
pub enum Label {
    Ai,
    Human,
    Uncertain,
}

/// Every `code` the service sends (ApiError::code; a unit test keeps the two lists equal).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // the service sends codes as strings; this type only documents them
pub enum ErrorCode {
    InvalidJson,
    InvalidUtf8,
    InvalidBody,
    MissingText,
    InvalidText,
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    EmptyText,
    TextTooShort,
    Internal,
    Saturated,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use utoipa::PartialSchema;

    fn documented_codes() -> Vec<String> {
        let schema = serde_json::to_value(ErrorCode::schema()).unwrap();
        schema["enum"]
            .as_array()
            .expect("ErrorCode is an enum of strings")
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    /// One of each variant: adding a variant without a line here fails to compile below.
    fn every_error() -> Vec<ApiError> {
        let all = vec![
            ApiError::Unauthorized(auth::AuthError::Missing),
            ApiError::InvalidJson(String::new()),
            ApiError::InvalidUtf8,
            ApiError::InvalidBody,
            ApiError::MissingText,
            ApiError::TextNotString,
            ApiError::BadRequest {
                message: "",
                detail: String::new(),
            },
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::EmptyText,
            ApiError::TextTooShort { tokens: 1, min: 2 },
            ApiError::Saturated {
                retry_after_secs: 1,
            },
            ApiError::NotFound,
            ApiError::MethodNotAllowed { allow: "GET" },
            ApiError::Internal(String::new()),
        ];
        for error in &all {
            // Exhaustive on purpose: a new variant must be added to the list above.
            match error {
                ApiError::Unauthorized(_)
                | ApiError::InvalidJson(_)
                | ApiError::InvalidUtf8
                | ApiError::InvalidBody
                | ApiError::MissingText
                | ApiError::TextNotString
                | ApiError::BadRequest { .. }
                | ApiError::UnsupportedMediaType
                | ApiError::PayloadTooLarge { .. }
                | ApiError::EmptyText
                | ApiError::TextTooShort { .. }
                | ApiError::Saturated { .. }
                | ApiError::NotFound
                | ApiError::MethodNotAllowed { .. }
                | ApiError::Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn the_documented_codes_are_exactly_the_ones_the_service_sends() {
        let mut sent: Vec<String> = every_error().iter().map(|e| e.code().to_owned()).collect();
        sent.sort();
        sent.dedup();
        let mut documented = documented_codes();
        documented.sort();
        assert_eq!(documented, sent);
    }

    #[test]
    fn every_documented_status_has_the_error_codes_of_that_status() {
        // Each error's status is documented on /score or /healthz (404 on no path, by design).
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for error in every_error() {
            let status = crate::error::status_of(&error).as_u16().to_string();
            if status == "404" {
                continue;
            }
            let documented = ["/score", "/healthz"].iter().any(|path| {
                doc["paths"][path]
                    .as_object()
                    .unwrap()
                    .values()
                    .any(|op| op["responses"].get(&status).is_some())
            });
            assert!(
                documented,
                "status {status} of {} is not documented",
                error.code()
            );
        }
    }
}
