//! The listener of `GET /metrics`, apart from the API so the edge never proxies it.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;

use crate::error::{error_response, ApiError};
use crate::metrics::Metrics;

pub fn server(metrics: Arc<Metrics>, bind: SocketAddr) -> anyhow::Result<Server> {
    let server = HttpServer::new(move || {
        let metrics = metrics.clone();
        App::new()
            .route(
                "/metrics",
                web::get().to(move || {
                    let body = metrics.render();
                    async move {
                        HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4; charset=utf-8")
                            .body(body)
                    }
                }),
            )
            .default_service(web::to(|| async {
                let not_found = ApiError::NotFound;
                error_response(
                    StatusCode::NOT_FOUND,
                    not_found.code(),
                    &not_found.to_string(),
                )
            }))
    })
    // Scrapes are rare and cheap: one worker is plenty.
    .workers(1)
    // The service's own signal handling stops this listener after the API drains.
    .disable_signals()
    .shutdown_timeout(1)
    .bind(bind)
    .with_context(|| format!("cannot listen on {bind} (DETECTOR_METRICS_BIND)"))?
    .run();
    Ok(server)
}
