//! The `Authenticated` extractor: a handler that takes it only runs for a valid key. The key id
//! goes to the request log; the key itself goes nowhere.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderName, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use auth::presented_key;

use crate::error::ApiError;
use crate::observe::KeyIdCell;
use crate::state::AppState;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Proof that the request carried a valid key (its id goes to the request log's `KeyIdCell`).
#[derive(Debug, Clone, Copy)]
pub struct Authenticated;

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Authenticated, ApiError> {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Err(ApiError::Internal("application state is missing".into()));
    };
    let headers = req.headers();
    let authorization: Vec<&[u8]> = headers
        .get_all(AUTHORIZATION)
        .map(|v| v.as_bytes())
        .collect();
    let api_key: Vec<&[u8]> = headers.get_all(X_API_KEY).map(|v| v.as_bytes()).collect();
    let presented = presented_key(&authorization, &api_key)?;
    let id = state.keys.snapshot().verify(presented)?;
    if let Some(cell) = req.extensions().get::<KeyIdCell>() {
        cell.set(id);
    }
    Ok(Authenticated)
}
