//! Prometheus metrics, served on their own bind address. Each request is counted once, by the
//! request middleware (`observe`), and nowhere else.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub rejections: IntCounterVec,
    pub inference_duration: Histogram,
    pub jobs_in_flight: IntGauge,
    pub job_slots: IntGauge,
    pub tokens_scored: IntCounter,
    pub model_load_seconds: Gauge,
    pub key_reloads: IntCounterVec,
    pub keys_loaded: IntGauge,
    build_info: IntGaugeVec,
}

/// Why a request was refused, for `detector_rejections_total`.
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    Saturated,
    Unauthorized,
    Invalid,
}

impl Rejection {
    /// The rejection a response status stands for, if any.
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            503 => Some(Rejection::Saturated),
            401 => Some(Rejection::Unauthorized),
            400 | 413 | 415 | 422 => Some(Rejection::Invalid),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Rejection::Saturated => "saturated",
            Rejection::Unauthorized => "unauthorized",
            Rejection::Invalid => "invalid",
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        // Registering fresh, uniquely named collectors on a fresh registry cannot fail.
        fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone())).expect("unique metric name");
            c
        }
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "detector_http_requests_total",
                    "HTTP requests answered, by route pattern and status.",
                ),
                &["route", "status"],
            )
            .expect("valid metric"),
        );
        let rejections = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "detector_rejections_total",
                    "Requests refused, by reason (saturated, unauthorized, invalid).",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        );
        // Buckets from 10 ms (a tiny text) to 30 s (a full context on a loaded core).
        let inference_duration = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "detector_inference_duration_seconds",
                    "Time spent scoring one text on a blocking thread.",
                )
                .buckets(vec![
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )
            .expect("valid metric"),
        );
        let jobs_in_flight = register(
            &registry,
            IntGauge::new(
                "detector_inference_jobs_in_flight",
                "Inference jobs running now.",
            )
            .expect("valid metric"),
        );
        let job_slots = register(
            &registry,
            IntGauge::new(
                "detector_inference_job_slots",
                "Inference jobs allowed at once (DETECTOR_MAX_CONCURRENT_JOBS).",
            )
            .expect("valid metric"),
        );
        let tokens_scored = register(
            &registry,
            IntCounter::new(
                "detector_tokens_scored_total",
                "Tokens scored over all successful requests.",
            )
            .expect("valid metric"),
        );
        let model_load_seconds = register(
            &registry,
            Gauge::new(
                "detector_model_load_seconds",
                "Time taken to load the model at start-up.",
            )
            .expect("valid metric"),
        );
        let key_reloads = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "detector_key_reloads_total",
                    "Key file reloads (SIGHUP), by result.",
                ),
                &["result"],
            )
            .expect("valid metric"),
        );
        let keys_loaded = register(
            &registry,
            IntGauge::new(
                "detector_keys_active",
                "Keys accepted as of the last (re)load.",
            )
            .expect("valid metric"),
        );
        let build_info = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "detector_build_info",
                    "Always 1; labels name the build and the model.",
                ),
                &["version", "revision", "model", "model_sha256"],
            )
            .expect("valid metric"),
        );
        Self {
            registry,
            requests,
            rejections,
            inference_duration,
            jobs_in_flight,
            job_slots,
            tokens_scored,
            model_load_seconds,
            key_reloads,
            keys_loaded,
            build_info,
        }
    }

    pub fn set_build_info(&self, model: &inference::ModelInfo) {
        self.build_info
            .with_label_values(&[
                crate::build_info::VERSION,
                crate::build_info::REVISION,
                model.name.as_str(),
                model.sha256_short.as_str(),
            ])
            .set(1);
    }

    /// Counts one answered request; called exactly once per request.
    pub fn observe_request(&self, route: &str, status: u16) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        if let Some(rejection) = Rejection::from_status(status) {
            self.rejections
                .with_label_values(&[rejection.label()])
                .inc();
        }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("metrics encode");
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
