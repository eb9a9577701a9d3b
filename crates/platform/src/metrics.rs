//! Prometheus metrics: every service keeps its own recorder and serves it at `GET
//! /metrics` on its HTTP listener, behind a bearer token (`metrics.token`).
//!
//! The recorder is per service instance, not the `metrics` crate's process-global
//! one: the all-in-one command and the tests run several services (and several whole
//! platforms) in one process, and each must report only its own work. Services hold a
//! [`Metrics`] and take `Counter` / `Gauge` / `Histogram` handles from it; label values
//! must come from small fixed sets (provider, status, reason), never run ids.
//!
//! Serialisation failures are the exception: they are bugs found deep in free functions
//! with no service at hand, so they go to one process-wide count
//! ([`serialization_failed`]) that every service reports.

use crate::config::{ConfigError, check_token};
use crate::http::{ApiError, bearer_challenge, bearer_token, secret_matches};
use ::metrics::{Key, Label, Level, Metadata, Recorder as _};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use secrecy::SecretString;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use ::metrics::{Counter, Gauge, Histogram};

/// The shared `[metrics]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// The bearer token a scraper must send to `GET /metrics`. Unset: `/metrics`
    /// answers 403 `metrics_disabled`.
    pub token: Option<SecretString>,
}

impl MetricsConfig {
    /// Checks the token once at start-up; the error names the key, never the value.
    // The platform's shared error type is large; validation runs once.
    #[allow(clippy::result_large_err)]
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.token {
            Some(token) => check_token("metrics.token", token),
            None => Ok(()),
        }
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets (names ending `_seconds`).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the batch-size histograms' buckets (names ending `_events`).
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];
/// How often recorded histogram samples are folded into their buckets when nobody
/// scrapes (a scrape folds them too); keeps an unscraped service's memory flat.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// Bound on a service's sampling before a scrape (a NATS or Postgres round trip).
const COLLECT_TIMEOUT: Duration = Duration::from_secs(5);

static METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// Serialisation failures of this process (see the module docs).
static SERIALIZATION_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Counts a value that could not be serialised (the caller logs it and returns the
/// error); reported by every service as `switchyard_serialization_failures_total`.
pub fn serialization_failed() {
    SERIALIZATION_FAILURES.fetch_add(1, Ordering::Relaxed);
}

/// One service's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A recorder whose series all carry `service="<service>"`. Its upkeep runs until
    /// `shutdown`.
    pub fn new(service: &'static str, shutdown: &CancellationToken) -> Self {
        let builder = PrometheusBuilder::new().add_global_label("service", service);
        // Only fails for an empty bucket list, which these constants are not.
        let builder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_events".to_owned()), SIZE_BUCKETS)
            }) {
            Ok(builder) => builder,
            Err(error) => {
                tracing::error!(%error, "metric buckets rejected; histograms become summaries");
                PrometheusBuilder::new().add_global_label("service", service)
            }
        };
        let recorder = Arc::new(builder.build_recorder());
        let handle = recorder.handle();
        let metrics = Self { recorder, handle };
        metrics.describe_counter(
            "switchyard_serialization_failures_total",
            "Values this process could not serialise (a bug; nothing empty was sent).",
        );
        let upkeep = metrics.handle.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(UPKEEP_EVERY) => upkeep.run_upkeep(),
                }
            }
        });
        metrics
    }

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, (*v).to_owned()))
            .collect();
        Key::from_parts(name, labels)
    }

    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.recorder
            .register_counter(&Self::key(name, labels), &METADATA)
    }

    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.recorder
            .register_gauge(&Self::key(name, labels), &METADATA)
    }

    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.recorder
            .register_histogram(&Self::key(name, labels), &METADATA)
    }

    /// The `# HELP` line of a counter.
    pub fn describe_counter(&self, name: &'static str, help: &'static str) {
        self.recorder
            .describe_counter(name.into(), None, help.into());
    }

    /// The `# HELP` line of a gauge.
    pub fn describe_gauge(&self, name: &'static str, help: &'static str) {
        self.recorder.describe_gauge(name.into(), None, help.into());
    }

    /// The `# HELP` line of a histogram.
    pub fn describe_histogram(&self, name: &'static str, help: &'static str) {
        self.recorder
            .describe_histogram(name.into(), None, help.into());
    }

    /// The exposition text (format 0.0.4).
    pub fn render(&self) -> String {
        self.counter("switchyard_serialization_failures_total", &[])
            .absolute(SERIALIZATION_FAILURES.load(Ordering::Relaxed));
        self.handle.render()
    }
}

/// What a service samples right before a scrape (queue depth, slots): gauges read
/// from where they live instead of kept up to date on every change.
pub type Collector = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// `GET /metrics`, answering only a caller with `Authorization: Bearer <metrics.token>`:
/// without a configured token 403 `metrics_disabled`, without the right token 401
/// `unauthorized`. Merge it outside any other authentication of the listener.
pub fn routes<S: Clone + Send + Sync + 'static>(
    metrics: Metrics,
    config: &MetricsConfig,
    collect: Option<Collector>,
) -> Router<S> {
    let token = config.token.clone();
    Router::new().route(
        "/metrics",
        get(move |headers: axum::http::HeaderMap| {
            let metrics = metrics.clone();
            let token = token.clone();
            let collect = collect.clone();
            async move {
                let Some(token) = token else {
                    return ApiError::new(
                        StatusCode::FORBIDDEN,
                        "metrics_disabled",
                        "metrics are disabled on this service: set `metrics.token` to enable them",
                    )
                    .into_response();
                };
                match bearer_token(&headers) {
                    Some(given) if secret_matches(given.as_bytes(), &token) => {}
                    _ => return bearer_challenge("a valid metrics bearer token is required"),
                }
                if let Some(collect) = collect
                    && tokio::time::timeout(COLLECT_TIMEOUT, collect())
                        .await
                        .is_err()
                {
                    tracing::warn!("sampling metrics before a scrape timed out");
                }
                exposition(metrics.render())
            }
        }),
    )
}

fn exposition(text: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    fn token() -> MetricsConfig {
        MetricsConfig {
            token: Some(SecretString::from("metrics-token-0123456789")),
        }
    }

    async fn get_metrics(config: &MetricsConfig, auth: Option<&str>) -> (StatusCode, String) {
        let metrics = Metrics::new("test", &CancellationToken::new());
        metrics
            .counter("switchyard_test_total", &[("provider", "scripted")])
            .increment(3);
        let router: Router = routes(metrics, config, None);
        let mut request = Request::get("/metrics");
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let response = router
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn only_the_configured_token_reads_the_metrics() {
        let (status, body) = get_metrics(&MetricsConfig::default(), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("\"metrics_disabled\""), "{body}");
        let (status, _) = get_metrics(&token(), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = get_metrics(&token(), Some("Bearer wrong-token-0123456789")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = get_metrics(&token(), Some("Bearer metrics-token-0123456789")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.lines()
                .any(|l| l == "switchyard_test_total{service=\"test\",provider=\"scripted\"} 3"),
            "{body}"
        );
    }

    #[test]
    fn a_short_token_is_refused_at_start_up() {
        let config = MetricsConfig {
            token: Some(SecretString::from("short")),
        };
        assert!(config.validate().is_err());
        assert!(token().validate().is_ok());
        assert!(MetricsConfig::default().validate().is_ok());
    }
}
