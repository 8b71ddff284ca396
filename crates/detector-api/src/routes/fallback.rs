//! Answers for paths no route matches (404) and methods a route does not allow (405).

use std::future::{ready, Ready};

use actix_web::HttpResponse;

use crate::error::ApiError;

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

pub fn method_not_allowed(
    allow: &'static str,
) -> impl Fn() -> Ready<Result<HttpResponse, ApiError>> + Clone + 'static {
    move || ready(Err(ApiError::MethodNotAllowed { allow }))
}
