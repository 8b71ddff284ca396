//! The `Authenticated` extractor: a handler that takes it only runs for a valid key. The key id
//! goes into the request's extensions for the request log; the key itself goes nowhere.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header::{HeaderName, AUTHORIZATION};
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use auth::{presented_key, KeyId};

use crate::error::ApiError;
use crate::state::AppState;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Proof that the request carried a valid key (its id is in the request's extensions).
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
    req.extensions_mut().insert::<KeyId>(id);
    Ok(Authenticated)
}
