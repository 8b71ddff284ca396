//! One handler per route, and the routing table.

mod fallback;
pub(crate) mod healthz;
pub(crate) mod score;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/score")
            .route(web::post().to(score::score))
            .default_service(web::to(fallback::method_not_allowed("POST"))),
    )
    .service(
        web::resource("/healthz")
            .route(web::get().to(healthz::healthz))
            .route(web::head().to(healthz::healthz))
            .default_service(web::to(fallback::method_not_allowed("GET, HEAD"))),
    )
    .default_service(web::to(fallback::not_found));
}

/// Marker left in a response's extensions: how many tokens it scored (for the request log).
#[derive(Debug, Clone, Copy)]
pub struct TokensScored(pub usize);
