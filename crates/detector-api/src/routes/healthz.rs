//! `GET /healthz`: liveness and identity, behind the key like every route (the container's
//! healthcheck sends it). Never takes an inference slot, so it answers while all are busy.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::auth::Authenticated;
use crate::build_info;
use crate::state::AppState;

/// Liveness and identity of the running service.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Health<'a> {
    /// Always `ok` when the service answers.
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
    /// Always true: the model loads before the listener opens.
    model_loaded: bool,
    #[schema(value_type = crate::openapi::Model)]
    model: &'a inference::ModelInfo,
    /// The service's version (its crate version).
    version: &'static str,
    /// Git commit the binary was built from, or `unknown`.
    revision: &'static str,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness and identity",
    description = "Answers 200 while the service runs, even when every inference slot is busy. \
        Needs a key like every route (the container healthcheck sends it). HEAD /healthz \
        answers the same status and headers without a body.",
    responses(
        (status = 200, description = "The service is up with its model loaded.", body = Health),
        (status = 401, description = "`unauthorized`: no key, or one that is malformed, unknown, \
            expired or revoked, or two different ones.", body = crate::error::ErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"detector\"`"))),
        (status = 405, description = "`method_not_allowed`: only GET and HEAD.",
            body = crate::error::ErrorBody,
            headers(("Allow" = String, description = "`GET, HEAD`"))),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn healthz(_auth: Authenticated, state: web::Data<AppState>) -> HttpResponse {
    // The model is loaded before the listener opens, so a running server always has it.
    HttpResponse::Ok().json(Health {
        status: "ok",
        model_loaded: true,
        model: state.detector.model_info(),
        version: build_info::VERSION,
        revision: build_info::REVISION,
    })
}
