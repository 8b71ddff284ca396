//! `detectorctl bench`: a bounded load generator for `/score`. C workers share one request budget
//! (`--requests N` sends exactly N) and/or a deadline (`--duration S` starts no request after S
//! seconds); it reports throughput, latency percentiles and how many of each status came back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{Client, Url};
use serde::Serialize;

use crate::client::{error_chain, with_key, ConnectArgs, SAMPLE_TEXT};

/// Latencies above this are clamped: no request outlives the client timeout anyway.
const MAX_LATENCY_US: u64 = 10 * 60 * 1_000_000;

#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("bound")
        .required(true)
        .multiple(true)
        .args(["duration", "requests"])
))]
pub struct BenchArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Start no new request after this many seconds (requests in flight finish, bounded by
    /// --timeout-secs).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Send exactly this many requests in all.
    #[arg(long, value_name = "N")]
    pub requests: Option<u64>,
    /// Score the text in this file instead of the built-in sample.
    #[arg(long)]
    pub text_file: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (it is drawn on stderr, and only on a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// What one worker saw; merged at the end.
struct Tally {
    answered: Histogram<u64>,
    ok: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        // Three significant digits between 1 us and the clamp: enough for p99 of a CPU model.
        let histogram = || Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds");
        Tally {
            answered: histogram(),
            ok: histogram(),
            statuses: BTreeMap::new(),
            errors: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.answered.add(&other.answered);
        let _ = self.ok.add(&other.ok);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

struct Plan {
    client: Client,
    url: Url,
    key: String,
    /// Serialised once and shared by every request.
    body: Arc<Vec<u8>>,
    budget: Option<u64>,
    issued: AtomicU64,
    deadline: Option<Instant>,
}

impl Plan {
    /// Claims the right to send one more request, or says the run is over.
    fn claim(&self) -> bool {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match self.budget {
            Some(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
            None => {
                self.issued.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }
}

async fn worker(plan: Arc<Plan>, bar: ProgressBar) -> Tally {
    let mut tally = Tally::new();
    while plan.claim() {
        let start = Instant::now();
        let request = with_key(plan.client.post(plan.url.clone()), &plan.key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(plan.body.as_ref().clone());
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                // The answer counts once it has been read in full.
                response.bytes().await.map(|_| status)
            }
            Err(e) => Err(e),
        };
        let micros = (start.elapsed().as_micros() as u64).clamp(1, MAX_LATENCY_US);
        match outcome {
            Ok(status) => {
                let _ = tally.answered.record(micros);
                if status == 200 {
                    let _ = tally.ok.record(micros);
                }
                *tally.statuses.entry(status).or_default() += 1;
            }
            Err(e) => {
                tally.errors += 1;
                if tally.first_error.is_none() {
                    tally.first_error = Some(error_chain(&e));
                }
            }
        }
        bar.inc(1);
    }
    tally
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        })
    }
}

#[derive(Debug, Serialize)]
pub struct StatusCounts {
    #[serde(rename = "200")]
    pub ok: u64,
    #[serde(rename = "429")]
    pub too_many_requests: u64,
    #[serde(rename = "503")]
    pub unavailable: u64,
    /// Every other HTTP status, summed; `other_statuses` has them one by one.
    pub other: u64,
    /// Requests that got no HTTP answer (connect, TLS, timeout, reset).
    pub errors: u64,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub url: String,
    pub concurrency: u32,
    pub requests: u64,
    pub elapsed_secs: f64,
    pub throughput_rps: f64,
    pub status: StatusCounts,
    pub other_statuses: BTreeMap<u16, u64>,
    /// Every request that got an HTTP answer, whatever the status.
    pub latency: Option<Latency>,
    /// Only the 200s: the time a scoring takes under this load.
    pub latency_200: Option<Latency>,
    pub first_error: Option<String>,
}

impl BenchReport {
    fn new(args: &BenchArgs, url: &Url, tally: Tally, elapsed: Duration) -> Self {
        let count = |s: u16| tally.statuses.get(&s).copied().unwrap_or(0);
        let other_statuses: BTreeMap<u16, u64> = tally
            .statuses
            .iter()
            .filter(|(s, _)| ![200, 429, 503].contains(*s))
            .map(|(s, n)| (*s, *n))
            .collect();
        let requests = tally.statuses.values().sum::<u64>() + tally.errors;
        let secs = elapsed.as_secs_f64();
        BenchReport {
            url: url.to_string(),
            concurrency: args.concurrency,
            requests,
            elapsed_secs: secs,
            throughput_rps: if secs > 0.0 {
                requests as f64 / secs
            } else {
                0.0
            },
            status: StatusCounts {
                ok: count(200),
                too_many_requests: count(429),
                unavailable: count(503),
                other: other_statuses.values().sum(),
                errors: tally.errors,
            },
            other_statuses,
            latency: Latency::of(&tally.answered),
            latency_200: Latency::of(&tally.ok),
            first_error: tally.first_error,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} requests to {} in {:.2}s at concurrency {}: {:.2} req/s\n",
            self.requests, self.url, self.elapsed_secs, self.concurrency, self.throughput_rps
        );
        let s = &self.status;
        out.push_str(&format!(
            "status   200: {}  429: {}  503: {}  other: {}  errors: {}\n",
            s.ok, s.too_many_requests, s.unavailable, s.other, s.errors
        ));
        if !self.other_statuses.is_empty() {
            let list: Vec<String> = self
                .other_statuses
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            out.push_str(&format!("other    {}\n", list.join("  ")));
        }
        for (label, latency) in [("latency", &self.latency), ("200 only", &self.latency_200)] {
            if let Some(l) = latency {
                out.push_str(&format!(
                    "{label:<8} p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms  mean {:.1} ms\n",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.mean_ms
                ));
            }
        }
        if let Some(e) = &self.first_error {
            out.push_str(&format!("first error: {e}\n"));
        }
        out
    }
}

fn progress_bar(args: &BenchArgs) -> ProgressBar {
    if args.no_progress || args.json {
        return ProgressBar::hidden();
    }
    let (bar, template) = match (args.requests, args.duration) {
        (Some(n), _) => (
            ProgressBar::new(n),
            "{elapsed_precise} [{bar:40}] {pos}/{len} requests ({per_sec})",
        ),
        (None, _) => (
            ProgressBar::no_length(),
            "{elapsed_precise} {spinner} {pos} requests ({per_sec})",
        ),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<bool> {
    let Some(key) = args.connect.api_key() else {
        bail!("${} is not set (the API key)", args.connect.key_env);
    };
    if args.requests == Some(0) {
        bail!("--requests must be at least 1");
    }
    let text = match &args.text_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading --text-file {}", path.display()))?,
        None => SAMPLE_TEXT.to_owned(),
    };
    let name = args.connect.host_name()?;
    let url = args.connect.endpoint("/score");
    let started = Instant::now();
    let plan = Arc::new(Plan {
        client: args.connect.client(&[name.as_str()])?,
        url: url.clone(),
        key,
        body: Arc::new(serde_json::to_vec(&serde_json::json!({ "text": text }))?),
        budget: args.requests,
        issued: AtomicU64::new(0),
        deadline: args.duration.map(|s| started + Duration::from_secs(s)),
    });
    let bar = progress_bar(args);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(plan.clone(), bar.clone())))
        .collect();
    let mut tally = Tally::new();
    for w in workers {
        tally.merge(w.await.context("a bench worker panicked")?);
    }
    bar.finish_and_clear();
    let report = BenchReport::new(args, &url, tally, started.elapsed());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    // Nothing answered at all is a failed run; any mix of statuses is a result to read.
    Ok(report.requests > report.status.errors)
}
