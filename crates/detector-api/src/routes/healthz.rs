//! `GET /healthz`: liveness and identity, behind the key like every route (the container's
//! healthcheck sends it). Never takes an inference slot, so it answers while all are busy.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::auth::Authenticated;
use crate::build_info;
use crate::state::AppState;

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    model_loaded: bool,
    model: &'a inference::ModelInfo,
    version: &'static str,
    revision: &'static str,
}

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
