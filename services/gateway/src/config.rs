//! The gateway's configuration (`[gateway]`, with the shared `[nats]`, `[http]` and
//! `[telemetry]` sections) and every rule it is checked against at start-up, so that
//! the modules that use a value can take it as valid.

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_platform::config::{ConfigError, NatsConfig, check_token};
use switchyard_platform::http::HttpServerConfig;
use switchyard_platform::telemetry::TelemetryConfig;

/// Longest session lifetime `gateway.session_ttl_secs` may ask for: 30 days.
const MAX_SESSION_TTL_SECS: u64 = 30 * 24 * 3600;
/// Shortest `gateway.session_secret`.
const MIN_SESSION_SECRET_CHARS: usize = 32;
/// Longest `timeoutMs` the control-plane accepts for a run (its `MAX_DURATION_MS`, in
/// `services/control-plane/src/durations.rs`): a longer probe timeout would have every
/// probe run refused at start.
const MAX_RUN_TIMEOUT_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// What the health report's budget leaves between a probe run's own timeout and the
/// report's end: the time its timed-out end takes to be projected and read back.
const PROBE_END_MARGIN_MS: u64 = 1000;

/// The gateway's whole configuration (the `nats`, `telemetry` and `gateway` sections).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats: NatsConfig,
    pub telemetry: TelemetryConfig,
    pub http: HttpServerConfig,
    pub metrics: switchyard_platform::metrics::MetricsConfig,
    pub gateway: GatewayConfig,
}

/// The `[gateway]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the public HTTP listener binds (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Base URL of the control-plane's HTTP API; `/api/...` paths are appended to it.
    pub control_plane_url: String,
    /// The bearer token that grants admin access. Never logged.
    pub admin_token: Option<SecretString>,
    /// Without an `admin_token` the gateway refuses to start unless this is `true`, in
    /// which case every request is served as the `anonymous` admin. Ignored when a
    /// token is set: the token is then always required.
    pub allow_anonymous: bool,
    /// Largest request body forwarded to the control-plane (413 `body_too_large` above).
    pub max_body_bytes: usize,
    /// Interval of SSE keep-alive comments.
    pub keep_alive_secs: u64,
    /// The `retry:` (milliseconds) every run stream starts with: how long a browser's
    /// `EventSource` waits before it reconnects after the connection dropped.
    pub sse_retry_ms: u64,
    /// Deadline for one control-plane request (503 `unavailable` after it).
    pub upstream_timeout_ms: u64,
    /// Concurrent SSE connections one principal may hold (429 `too_many_streams` above).
    pub max_streams_per_token: usize,
    /// How long a token the control-plane resolved is trusted without asking again. A
    /// change to the principal normally ends this at once (the control-plane's NATS
    /// notice); the TTL bounds how long a missed notice leaves a revoked token working.
    /// 0 disables the cache.
    pub token_cache_secs: u64,
    /// Most tokens cached at once.
    pub token_cache_max_entries: usize,
    /// New SSE connections a token may open per minute (a token bucket, so short bursts
    /// of up to this many are fine); 0 = no limit. 429 `stream_rate_limited` above it.
    pub stream_opens_per_minute: u32,
    /// Sent to the control-plane with every request (`x-switchyard-internal-token`);
    /// must equal its `control_plane.internal_token`. Required.
    pub control_plane_token: Option<SecretString>,
    /// The built portal (`npm run build` in `portal/`), served at `/`; a relative path
    /// is taken from the working directory. Without an `index.html` there, `/` says how
    /// to build it.
    pub portal_dir: PathBuf,
    /// How long a browser session lasts after sign-in (`POST /api/session`).
    pub session_ttl_secs: u64,
    /// Key material the session cookies are sealed with (at least 32 characters). Unset:
    /// derived from `admin_token`, so every gateway with the same token accepts the same
    /// cookies and a restart keeps them; changing the token (or this) ends every session.
    pub session_secret: Option<SecretString>,
    /// Mark the session cookie `Secure`. Set it when browsers reach the gateway over
    /// https (through a TLS-terminating proxy): the gateway itself serves plain HTTP and
    /// does not take a client's word (`X-Forwarded-Proto`) for it.
    pub session_cookie_secure: bool,
    /// Origins (`https://tools.example.com`) whose web pages may call the API from a
    /// browser (CORS, with bearer tokens; never with the session cookie). Empty: no
    /// cross-origin access, no CORS headers. A list, or one comma-separated string.
    #[serde(deserialize_with = "deserialize_origins")]
    pub cors_allowed_origins: Vec<String>,
    /// The `timeoutMs` of each probe run of `GET /api/health?probe=true`. The check
    /// waits 5 s longer for the run's end, but the whole report never takes longer than
    /// `upstream_timeout_ms` (its budget; the request's own deadline is 5 s later), so
    /// this must be at least 1 s shorter than that (and at most 7 days, the longest run
    /// timeout the control-plane accepts). Unset: 20 s, or `upstream_timeout_ms` less
    /// 1 s when that is shorter.
    pub health_probe_timeout_ms: Option<u64>,
    /// How long a probe's outcome is reused: a report asking for a probe of a provider
    /// probed less than this long ago gets that outcome (marked cached, with its age)
    /// instead of a new run. Concurrent reports always share one probe run per
    /// provider. 0 = no reuse once the run has ended.
    pub health_probe_cache_ms: u64,
    /// What a probe run asks the agent: one short turn that needs no tool.
    pub health_probe_prompt: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            control_plane_url: "http://127.0.0.1:8081".to_owned(),
            admin_token: None,
            allow_anonymous: false,
            max_body_bytes: 1024 * 1024,
            keep_alive_secs: 15,
            sse_retry_ms: switchyard_platform::sse::RETRY_MS,
            upstream_timeout_ms: 30_000,
            max_streams_per_token: 1000,
            token_cache_secs: 30,
            token_cache_max_entries: 10_000,
            stream_opens_per_minute: 600,
            control_plane_token: None,
            portal_dir: PathBuf::from("portal/dist"),
            session_ttl_secs: 8 * 3600,
            session_secret: None,
            session_cookie_secure: false,
            cors_allowed_origins: Vec::new(),
            health_probe_timeout_ms: None,
            health_probe_cache_ms: 60_000,
            health_probe_prompt: DEFAULT_PROBE_PROMPT.to_owned(),
        }
    }
}

/// `gateway.health_probe_timeout_ms` by default (if the report's budget allows it).
const DEFAULT_PROBE_TIMEOUT_MS: u64 = 20_000;

/// `gateway.health_probe_prompt` by default.
const DEFAULT_PROBE_PROMPT: &str =
    "This is a health check. Reply with the single word OK and do nothing else.";

impl GatewayConfig {
    pub(crate) fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    pub(crate) fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_secs)
    }

    pub(crate) fn health_probe_timeout(&self) -> Duration {
        let ms = self.health_probe_timeout_ms.unwrap_or_else(|| {
            DEFAULT_PROBE_TIMEOUT_MS
                .min(self.max_health_probe_timeout_ms())
                .max(1)
        });
        Duration::from_millis(ms)
    }

    pub(crate) fn health_probe_cache(&self) -> Duration {
        Duration::from_millis(self.health_probe_cache_ms)
    }

    /// The longest the health report may take, every check and probe included: the
    /// request's timeout layer cuts it 5 s later, so the report always gets out.
    pub(crate) fn health_report_budget(&self) -> Duration {
        self.upstream_timeout()
    }

    /// The longest `health_probe_timeout_ms` this configuration allows.
    fn max_health_probe_timeout_ms(&self) -> u64 {
        self.upstream_timeout_ms
            .saturating_sub(PROBE_END_MARGIN_MS)
            .min(MAX_RUN_TIMEOUT_MS)
    }
}

impl Config {
    /// Checks what serde cannot: every problem names its key.
    // The error type is the platform's, shared by every service; it is returned once.
    #[allow(clippy::result_large_err)]
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate()?;
        self.metrics.validate()?;
        let gateway = &self.gateway;
        let invalid = |key: &'static str, problem: &str| ConfigError::Value {
            key,
            problem: problem.to_owned(),
        };
        match &gateway.admin_token {
            Some(token) if token.expose_secret().trim().is_empty() => {
                return Err(invalid("gateway.admin_token", "must not be empty"));
            }
            Some(token) if token.expose_secret().trim() != token.expose_secret() => {
                return Err(invalid(
                    "gateway.admin_token",
                    "must not start or end with whitespace",
                ));
            }
            Some(_) => {}
            None if !gateway.allow_anonymous => {
                return Err(invalid(
                    "gateway.admin_token",
                    "is not set: set a token, or set gateway.allow_anonymous = true to serve \
                     the API without authentication",
                ));
            }
            None => {}
        }
        parse_control_plane_url(&gateway.control_plane_url)
            .map_err(|problem| invalid("gateway.control_plane_url", &problem))?;
        match &gateway.control_plane_token {
            Some(token) => check_token("gateway.control_plane_token", token)?,
            None => {
                return Err(invalid(
                    "gateway.control_plane_token",
                    "is not set: the control-plane serves only callers with its \
                     control_plane.internal_token; set this to the same value",
                ));
            }
        }
        if gateway.max_body_bytes == 0 {
            return Err(invalid("gateway.max_body_bytes", "must be at least 1"));
        }
        if gateway.keep_alive_secs == 0 {
            return Err(invalid("gateway.keep_alive_secs", "must be at least 1"));
        }
        if gateway.sse_retry_ms == 0 {
            return Err(invalid("gateway.sse_retry_ms", "must be at least 1"));
        }
        if gateway.upstream_timeout_ms == 0 {
            return Err(invalid("gateway.upstream_timeout_ms", "must be at least 1"));
        }
        if gateway.max_streams_per_token == 0 {
            return Err(invalid(
                "gateway.max_streams_per_token",
                "must be at least 1",
            ));
        }
        if !(1..=MAX_SESSION_TTL_SECS).contains(&gateway.session_ttl_secs) {
            return Err(invalid(
                "gateway.session_ttl_secs",
                &format!("must be from 1 to {} (30 days)", MAX_SESSION_TTL_SECS),
            ));
        }
        if let Some(secret) = &gateway.session_secret
            && secret.expose_secret().chars().count() < MIN_SESSION_SECRET_CHARS
        {
            return Err(invalid(
                "gateway.session_secret",
                &format!("must be at least {} characters", MIN_SESSION_SECRET_CHARS),
            ));
        }
        let max_probe = gateway.max_health_probe_timeout_ms();
        if let Some(probe_ms) = gateway.health_probe_timeout_ms
            && !(1..=max_probe).contains(&probe_ms)
        {
            return Err(invalid(
                "gateway.health_probe_timeout_ms",
                &format!(
                    "must be from 1 to {max_probe}: the probe run has to end inside the \
                     health report's budget, gateway.upstream_timeout_ms ({}) less 1 s \
                     for its end to be read back, and the control-plane accepts no run \
                     timeout above {MAX_RUN_TIMEOUT_MS} (7 days); got {}",
                    gateway.upstream_timeout_ms, probe_ms
                ),
            ));
        }
        if gateway.health_probe_prompt.trim().is_empty() {
            return Err(invalid("gateway.health_probe_prompt", "must not be empty"));
        }
        for origin in &gateway.cors_allowed_origins {
            check_origin(origin)
                .map_err(|problem| invalid("gateway.cors_allowed_origins", &problem))?;
        }
        Ok(())
    }
}

/// Checks a configured control-plane base URL: absolute `http(s)`, with a host, no
/// query.
pub(crate) fn parse_control_plane_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// URL".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    Ok(url)
}

/// An origin as browsers send it in `Origin`: `http(s)://host[:port]`, lower case, no
/// path, no trailing slash. Anything else could never match, so it is refused at
/// start-up instead of silently allowing nothing.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" || origin == "null" {
        return Err(format!(
            "`{origin}` is not allowed: list each origin (https://host[:port])"
        ));
    }
    let url = Url::parse(origin).map_err(|e| format!("`{origin}` is not an origin: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{origin}` must be an http:// or https:// origin"));
    }
    let canonical = url.origin().ascii_serialization();
    if canonical != origin {
        return Err(format!(
            "`{origin}` is not an origin as browsers send it; write `{canonical}` (scheme, \
             host and port only, no path or trailing slash)"
        ));
    }
    Ok(())
}

/// `cors_allowed_origins` from a list (TOML) or one comma-separated string (the
/// environment variable `SWITCHYARD_GATEWAY__CORS_ALLOWED_ORIGINS`).
fn deserialize_origins<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Origins {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Origins::deserialize(deserializer)? {
        Origins::List(list) => list,
        Origins::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Loads `pairs` and a valid `gateway.control_plane_token` (unless `pairs` set one).
    fn load(pairs: &[(&str, &str)]) -> Config {
        let mut env: HashMap<String, String> = HashMap::from([(
            "SWITCHYARD_GATEWAY__CONTROL_PLANE_TOKEN".to_owned(),
            "gateway-test-internal-token".to_owned(),
        )]);
        env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        switchyard_platform::config::load_from(None, env).unwrap()
    }

    fn bad_key(config: &Config) -> &'static str {
        match config.validate() {
            Err(ConfigError::Value { key, .. }) => key,
            other => panic!("expected a bad key, got {other:?}"),
        }
    }

    #[test]
    fn defaults_refuse_to_start_without_a_token() {
        let config = load(&[]);
        assert_eq!(config.gateway.listen.port(), 8080);
        assert_eq!(config.gateway.max_body_bytes, 1024 * 1024);
        assert_eq!(config.gateway.max_streams_per_token, 1000);
        assert_eq!(bad_key(&config), "gateway.admin_token");
    }

    #[test]
    fn a_token_or_anonymous_mode_is_accepted() {
        let config = load(&[("SWITCHYARD_GATEWAY__ADMIN_TOKEN", "s3cret")]);
        config.validate().unwrap();
        let config = load(&[("SWITCHYARD_GATEWAY__ALLOW_ANONYMOUS", "true")]);
        config.validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let token = ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", "s3cret");
        let cases = [
            (
                "SWITCHYARD_GATEWAY__ADMIN_TOKEN",
                " ",
                "gateway.admin_token",
            ),
            (
                "SWITCHYARD_GATEWAY__CONTROL_PLANE_URL",
                "nope",
                "gateway.control_plane_url",
            ),
            (
                "SWITCHYARD_GATEWAY__CONTROL_PLANE_URL",
                "ftp://x",
                "gateway.control_plane_url",
            ),
            (
                "SWITCHYARD_GATEWAY__KEEP_ALIVE_SECS",
                "0",
                "gateway.keep_alive_secs",
            ),
            (
                "SWITCHYARD_GATEWAY__SSE_RETRY_MS",
                "0",
                "gateway.sse_retry_ms",
            ),
            (
                "SWITCHYARD_GATEWAY__MAX_BODY_BYTES",
                "0",
                "gateway.max_body_bytes",
            ),
            (
                "SWITCHYARD_GATEWAY__UPSTREAM_TIMEOUT_MS",
                "0",
                "gateway.upstream_timeout_ms",
            ),
            (
                "SWITCHYARD_GATEWAY__MAX_STREAMS_PER_TOKEN",
                "0",
                "gateway.max_streams_per_token",
            ),
            (
                "SWITCHYARD_GATEWAY__SESSION_TTL_SECS",
                "0",
                "gateway.session_ttl_secs",
            ),
            (
                "SWITCHYARD_GATEWAY__SESSION_TTL_SECS",
                "2592001",
                "gateway.session_ttl_secs",
            ),
            (
                "SWITCHYARD_GATEWAY__SESSION_SECRET",
                "too short",
                "gateway.session_secret",
            ),
            (
                "SWITCHYARD_GATEWAY__CORS_ALLOWED_ORIGINS",
                "https://ok.example, https://bad.example/",
                "gateway.cors_allowed_origins",
            ),
            (
                "SWITCHYARD_GATEWAY__CORS_ALLOWED_ORIGINS",
                "*",
                "gateway.cors_allowed_origins",
            ),
            (
                "SWITCHYARD_GATEWAY__CONTROL_PLANE_TOKEN",
                "short",
                "gateway.control_plane_token",
            ),
            (
                "SWITCHYARD_HTTP__HEADER_READ_TIMEOUT_MS",
                "0",
                "http.header_read_timeout_ms",
            ),
            (
                "SWITCHYARD_GATEWAY__HEALTH_PROBE_TIMEOUT_MS",
                "0",
                "gateway.health_probe_timeout_ms",
            ),
            (
                "SWITCHYARD_GATEWAY__HEALTH_PROBE_PROMPT",
                "  ",
                "gateway.health_probe_prompt",
            ),
        ];
        for (var, value, key) in cases {
            let config = load(&[token, (var, value)]);
            assert_eq!(bad_key(&config), key, "{var}={value}");
        }
        load(&[
            token,
            ("SWITCHYARD_GATEWAY__HEALTH_PROBE_TIMEOUT_MS", "25000"),
        ])
        .validate()
        .unwrap();
    }

    /// Set, the probe timeout must end inside the report's budget (the upstream
    /// timeout less 1 s) and within the control-plane's 7-day run timeout; unset, it
    /// is 20 s or whatever the budget allows.
    #[test]
    fn the_probe_timeout_fits_inside_the_report_budget() {
        let token = ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", "s3cret");
        let probe = "SWITCHYARD_GATEWAY__HEALTH_PROBE_TIMEOUT_MS";
        let upstream = "SWITCHYARD_GATEWAY__UPSTREAM_TIMEOUT_MS";
        load(&[token, (probe, "29000")]).validate().unwrap();
        let config = load(&[token, (probe, "29001")]);
        match config.validate() {
            Err(ConfigError::Value { key, problem }) => {
                assert_eq!(key, "gateway.health_probe_timeout_ms");
                assert!(problem.contains("from 1 to 29000"), "{problem}");
                assert!(problem.contains("upstream_timeout_ms (30000)"), "{problem}");
            }
            other => panic!("expected a bad value, got {other:?}"),
        }
        // A huge upstream timeout: the control-plane's longest run timeout bounds it.
        let config = load(&[token, (upstream, "1000000000"), (probe, "604800001")]);
        assert_eq!(bad_key(&config), "gateway.health_probe_timeout_ms");
        load(&[token, (upstream, "1000000000"), (probe, "604800000")])
            .validate()
            .unwrap();
        // Unset: the default shrinks with a short upstream timeout instead of refusing it.
        let config = load(&[token, (upstream, "5000")]);
        config.validate().unwrap();
        assert_eq!(
            config.gateway.health_probe_timeout(),
            Duration::from_secs(4)
        );
        let config = load(&[token]);
        assert_eq!(
            config.gateway.health_probe_timeout(),
            Duration::from_secs(20)
        );
        assert_eq!(
            config.gateway.health_report_budget(),
            Duration::from_secs(30)
        );
        assert_eq!(config.gateway.health_probe_cache(), Duration::from_secs(60));
    }

    #[test]
    fn cors_origins_come_from_a_list_or_a_comma_separated_variable() {
        let config = load(&[
            ("SWITCHYARD_GATEWAY__ADMIN_TOKEN", "s3cret"),
            (
                "SWITCHYARD_GATEWAY__CORS_ALLOWED_ORIGINS",
                "https://a.example, http://127.0.0.1:5173",
            ),
        ]);
        config.validate().unwrap();
        assert_eq!(
            config.gateway.cors_allowed_origins,
            ["https://a.example", "http://127.0.0.1:5173"]
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.toml");
        std::fs::write(
            &file,
            "[gateway]\nadmin_token = \"s3cret\"\ncors_allowed_origins = [\"https://b.example\"]\n",
        )
        .unwrap();
        let config: Config =
            switchyard_platform::config::load_from(Some(&file), HashMap::new()).unwrap();
        assert_eq!(config.gateway.cors_allowed_origins, ["https://b.example"]);
        assert!(load(&[]).gateway.cors_allowed_origins.is_empty());
    }

    #[test]
    fn the_control_plane_token_is_required() {
        let env: HashMap<String, String> = [(
            "SWITCHYARD_GATEWAY__ADMIN_TOKEN".to_owned(),
            "s3cret".to_owned(),
        )]
        .into();
        let config: Config = switchyard_platform::config::load_from(None, env).unwrap();
        assert_eq!(bad_key(&config), "gateway.control_plane_token");
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let config = load(&[("SWITCHYARD_GATEWAY__ADMIN_TOKEN", "very-secret-token")]);
        assert!(!format!("{config:?}").contains("very-secret-token"));
    }

    #[test]
    fn unknown_gateway_keys_are_rejected() {
        let env: HashMap<String, String> =
            [("SWITCHYARD_GATEWAY__LISTNE".to_owned(), "x".to_owned())].into();
        assert!(switchyard_platform::config::load_from::<Config>(None, env).is_err());
    }

    #[test]
    fn only_origins_as_browsers_send_them_are_accepted() {
        for good in [
            "https://tools.example.com",
            "http://127.0.0.1:5173",
            "http://localhost:3000",
        ] {
            check_origin(good).unwrap();
        }
        for bad in [
            "*",
            "null",
            "https://tools.example.com/",
            "https://tools.example.com/path",
            "https://Tools.example.com",
            "https://tools.example.com:443",
            "ftp://tools.example.com",
            "tools.example.com",
            "",
        ] {
            assert!(check_origin(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn control_plane_urls_are_checked() {
        for bad in [
            "",
            "cp:8081",
            "ftp://cp",
            "http://cp/?a=b",
            "http://cp/#x",
            "unix:/tmp/s",
        ] {
            assert!(parse_control_plane_url(bad).is_err(), "{bad:?}");
        }
        parse_control_plane_url("http://cp:8081/prefix").unwrap();
    }
}
