//! Liveness of one CLI run. The agent CLIs do not end by themselves when the model API
//! refuses the connection, never answers, or stalls mid-stream; these limits end such
//! a run. Three phases, each with its limit on *active* time (time spent waiting for a
//! human does not count, see [`Liveness::pause`]):
//!
//! 1. handshake — from the spawn until the adapter's protocol handshake completed
//!    ([`Liveness::handshake_done`]);
//! 2. first output — from the handshake until the first model output
//!    ([`Liveness::output_seen`]: text, reasoning, a tool call…);
//! 3. running — no more than the inactivity limit between two signs of life
//!    ([`Liveness::activity`] or [`Liveness::output_seen`]).
//!
//! Beside the phases runs the unreachable clock: once the adapter reports that the CLI
//! cannot connect to the model API ([`Liveness::unreachable`]; a retry notice is no
//! sign of life), the run fails `provider_unreachable` when that lasts for the
//! unreachable limit, or when a phase limit runs out first while it lasts. Model output
//! ([`Liveness::output_seen`]) or any answer of the API ([`Liveness::reachable`]) stops
//! the clock.
//!
//! The run's overall timeout is the supervisor's business, not this module's.

use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::FailureReason;
use tokio::sync::watch;
use tokio::time::Instant;

/// The limits. `Duration::ZERO` disables a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LivenessLimits {
    pub handshake: Duration,
    pub first_output: Duration,
    pub inactivity: Duration,
    /// How long the CLI may keep failing to connect to the model API.
    pub unreachable: Duration,
}

impl Default for LivenessLimits {
    /// The defaults of `[executor.liveness]`: 30 s, 120 s, 300 s and 10 s.
    fn default() -> Self {
        Self {
            handshake: Duration::from_millis(30_000),
            first_output: Duration::from_millis(120_000),
            inactivity: Duration::from_millis(300_000),
            unreachable: Duration::from_millis(10_000),
        }
    }
}

impl LivenessLimits {
    /// These limits with the run's overrides from `providerOptions`
    /// (`handshakeTimeoutMs`, `firstOutputTimeoutMs`, `inactivityTimeoutMs`,
    /// `unreachableTimeoutMs`; non-negative integers, 0 disables). Values of another
    /// type are ignored.
    pub(crate) fn with_overrides(mut self, provider_options: &serde_json::Value) -> Self {
        let read = |key: &str| {
            provider_options
                .get(key)
                .and_then(serde_json::Value::as_u64)
        };
        if let Some(ms) = read("handshakeTimeoutMs") {
            self.handshake = Duration::from_millis(ms);
        }
        if let Some(ms) = read("firstOutputTimeoutMs") {
            self.first_output = Duration::from_millis(ms);
        }
        if let Some(ms) = read("inactivityTimeoutMs") {
            self.inactivity = Duration::from_millis(ms);
        }
        if let Some(ms) = read("unreachableTimeoutMs") {
            self.unreachable = Duration::from_millis(ms);
        }
        self
    }
}

/// Which limit was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LivenessFailure {
    Handshake,
    FirstOutput,
    Inactivity,
    /// The CLI could not connect to the model API for `for_ms` ms of active time.
    Unreachable {
        for_ms: u64,
    },
}

impl LivenessFailure {
    /// The run's failure class: no first output is `provider_no_output`, a model API
    /// that cannot be reached is `provider_unreachable`, the others are `timeout`.
    pub(crate) fn reason(self) -> FailureReason {
        match self {
            Self::Handshake | Self::Inactivity => FailureReason::Timeout,
            Self::FirstOutput => FailureReason::ProviderNoOutput,
            Self::Unreachable { .. } => FailureReason::ProviderUnreachable,
        }
    }
}

/// Whether a CLI's error text says that the model API could not be connected to at all
/// (as opposed to an answer with an error status): connection refused, a failed DNS
/// lookup, no route, a reset before any answer.
pub(crate) fn names_connection_failure(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "connection refused",
        "connectionrefused",
        "econnrefused",
        "unable to connect",
        "cannot connect",
        "could not connect",
        "failed to connect",
        "connection failed",
        "error sending request",
        "waiting for network",
        "could not resolve",
        "name or service not known",
        "enotfound",
        "no route to host",
        "network is unreachable",
    ]
    .iter()
    .any(|marker| text.contains(marker))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    FirstOutput,
    Running,
}

#[derive(Debug, Clone, Copy)]
struct State {
    phase: Phase,
    /// Open pauses; the clock runs when 0.
    holds: usize,
    /// Active time accumulated before the current running stretch.
    banked: Duration,
    /// Start of the current running stretch, `None` while paused.
    running_since: Option<Instant>,
    /// Active time at the start of the current phase or the last sign of life.
    mark: Duration,
    /// Active time when the CLI started failing to connect to the model API (the first
    /// report of the current streak).
    unreachable_since: Option<Duration>,
}

impl State {
    fn active(&self, now: Instant) -> Duration {
        self.banked + self.running_since.map_or(Duration::ZERO, |t| now - t)
    }

    fn now_active(&self) -> Duration {
        self.active(Instant::now())
    }
}

/// The liveness of one run. Cheap to clone (clones share the state), so the stdout
/// reader and the code answering human-loop requests can each hold one.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    limits: LivenessLimits,
    state: Arc<watch::Sender<State>>,
}

impl Liveness {
    /// A run's liveness, starting now in the handshake phase. `provider_options` may
    /// override the limits (see [`LivenessLimits::with_overrides`]).
    pub(crate) fn new(limits: LivenessLimits, provider_options: &serde_json::Value) -> Self {
        let (state, _) = watch::channel(State {
            phase: Phase::Handshake,
            holds: 0,
            banked: Duration::ZERO,
            running_since: Some(Instant::now()),
            mark: Duration::ZERO,
            unreachable_since: None,
        });
        Self {
            limits: limits.with_overrides(provider_options),
            state: Arc::new(state),
        }
    }

    /// The limits in force for this run.
    #[cfg(test)]
    fn limits(&self) -> LivenessLimits {
        self.limits
    }

    /// The protocol handshake completed: the first-output clock starts.
    pub(crate) fn handshake_done(&self) {
        self.state.send_if_modified(|s| {
            if s.phase != Phase::Handshake {
                return false;
            }
            s.phase = Phase::FirstOutput;
            s.mark = s.now_active();
            true
        });
    }

    /// The model produced output (text, reasoning, a tool call, a file change…). Also
    /// counts as the handshake when that was not reported.
    pub(crate) fn output_seen(&self) {
        self.state.send_modify(|s| {
            s.phase = Phase::Running;
            s.mark = s.now_active();
            s.unreachable_since = None;
        });
    }

    /// The CLI reports that it could not connect to the model API (and will retry):
    /// starts the unreachable clock unless it runs already. Not a sign of life.
    pub(crate) fn unreachable(&self) {
        self.state.send_if_modified(|s| {
            if s.unreachable_since.is_some() {
                return false;
            }
            s.unreachable_since = Some(s.now_active());
            true
        });
    }

    /// The model API answered (even with an error status): stops the unreachable clock.
    pub(crate) fn reachable(&self) {
        self.state
            .send_if_modified(|s| s.unreachable_since.take().is_some());
    }

    /// Any other sign of life (a protocol notification, a token count, a heartbeat):
    /// restarts the inactivity clock once output has been seen. Before that it changes
    /// nothing — a CLI that keeps chattering without the model answering still hits
    /// the first-output limit.
    pub(crate) fn activity(&self) {
        self.state.send_if_modified(|s| {
            if s.phase != Phase::Running {
                return false;
            }
            s.mark = s.now_active();
            true
        });
    }

    /// Stops the clock until the guard is dropped (hold it while waiting for a human).
    /// Pauses nest. Resuming counts as a sign of life: the time before the pause does
    /// not add up with the time after it.
    pub(crate) fn pause(&self) -> PauseGuard {
        self.state.send_modify(|s| {
            if s.holds == 0 {
                s.banked = s.now_active();
                s.running_since = None;
            }
            s.holds += 1;
        });
        PauseGuard {
            state: self.state.clone(),
        }
    }

    /// Resolves when a limit is exceeded (never, if every limit of the current phase is
    /// disabled and nothing changes). Cancel-safe; call it again after a change.
    pub(crate) async fn expired(&self) -> LivenessFailure {
        let mut changes = self.state.subscribe();
        loop {
            let state = *changes.borrow_and_update();
            let (limit, phase_failure) = match state.phase {
                Phase::Handshake => (self.limits.handshake, LivenessFailure::Handshake),
                Phase::FirstOutput => (self.limits.first_output, LivenessFailure::FirstOutput),
                Phase::Running => (self.limits.inactivity, LivenessFailure::Inactivity),
            };
            // What is left of each running limit; the first to run out decides.
            let mut left: Option<Duration> = None;
            if state.running_since.is_some() {
                let now = state.now_active();
                // While the model API cannot be reached, whichever limit runs out, the
                // cause is the unreachable API.
                let failure = match state.unreachable_since {
                    Some(since) => LivenessFailure::Unreachable {
                        for_ms: now.saturating_sub(since).as_millis() as u64,
                    },
                    None => phase_failure,
                };
                if !limit.is_zero() {
                    let elapsed = now.saturating_sub(state.mark);
                    if elapsed >= limit {
                        return failure;
                    }
                    left = Some(limit - elapsed);
                }
                if let Some(since) = state.unreachable_since
                    && !self.limits.unreachable.is_zero()
                {
                    let elapsed = now.saturating_sub(since);
                    if elapsed >= self.limits.unreachable {
                        return failure;
                    }
                    let rest = self.limits.unreachable - elapsed;
                    left = Some(left.map_or(rest, |l| l.min(rest)));
                }
            }
            match left {
                Some(left) => tokio::select! {
                    _ = tokio::time::sleep(left) => {}
                    changed = changes.changed() => if changed.is_err() {
                        return std::future::pending().await;
                    },
                },
                None => {
                    if changes.changed().await.is_err() {
                        // The sender lives in `self`: cannot happen while we borrow it.
                        return std::future::pending().await;
                    }
                }
            }
        }
    }

    /// A sentence for the run's failure detail, e.g. "no handshake within 30000 ms".
    pub(crate) fn describe(&self, failure: LivenessFailure) -> String {
        let ms = |d: Duration| d.as_millis();
        match failure {
            LivenessFailure::Handshake => format!(
                "no protocol handshake with the CLI within {} ms",
                ms(self.limits.handshake)
            ),
            LivenessFailure::FirstOutput => format!(
                "no model output within {} ms of the handshake",
                ms(self.limits.first_output)
            ),
            LivenessFailure::Inactivity => format!(
                "no sign of life from the CLI for {} ms",
                ms(self.limits.inactivity)
            ),
            LivenessFailure::Unreachable { for_ms } => format!(
                "the model API could not be reached: the CLI kept failing to connect for \
                 {for_ms} ms"
            ),
        }
    }
}

/// Keeps the liveness clock stopped while alive.
#[derive(Debug)]
pub(crate) struct PauseGuard {
    state: Arc<watch::Sender<State>>,
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        self.state.send_modify(|s| {
            s.holds = s.holds.saturating_sub(1);
            if s.holds == 0 && s.running_since.is_none() {
                s.running_since = Some(Instant::now());
                // The wait for a human restarts the phase's allowance: a CLI that was
                // quiet before the question must not time out right after the answer.
                s.mark = s.banked;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> LivenessLimits {
        LivenessLimits {
            handshake: Duration::from_secs(3),
            first_output: Duration::from_secs(10),
            inactivity: Duration::from_secs(20),
            unreachable: Duration::from_secs(8),
        }
    }

    /// How long (in virtual time) `expired` takes to fire, and with what.
    async fn fires_after(liveness: &Liveness) -> (LivenessFailure, Duration) {
        let started = Instant::now();
        let failure = liveness.expired().await;
        (failure, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn the_handshake_limit_fires() {
        let liveness = Liveness::new(limits(), &json!({}));
        let (failure, after) = fires_after(&liveness).await;
        assert_eq!(failure, LivenessFailure::Handshake);
        assert_eq!(after, Duration::from_secs(3));
        assert_eq!(failure.reason(), FailureReason::Timeout);
        assert!(liveness.describe(failure).contains("3000 ms"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_output_limit_fires_and_activity_does_not_reset_it() {
        let liveness = Liveness::new(limits(), &json!({}));
        tokio::time::advance(Duration::from_secs(2)).await;
        liveness.handshake_done();
        let waiter = tokio::spawn({
            let liveness = liveness.clone();
            async move { fires_after(&liveness).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        liveness.activity();
        let (failure, after) = waiter.await.unwrap();
        assert_eq!(failure, LivenessFailure::FirstOutput);
        assert_eq!(after, Duration::from_secs(10));
        assert_eq!(failure.reason(), FailureReason::ProviderNoOutput);
    }

    #[tokio::test(start_paused = true)]
    async fn the_inactivity_limit_fires_after_the_last_sign_of_life() {
        let liveness = Liveness::new(limits(), &json!({}));
        liveness.handshake_done();
        liveness.output_seen();
        let waiter = tokio::spawn({
            let liveness = liveness.clone();
            async move { fires_after(&liveness).await }
        });
        tokio::time::sleep(Duration::from_secs(15)).await;
        liveness.activity();
        tokio::time::sleep(Duration::from_secs(15)).await;
        liveness.output_seen();
        let (failure, after) = waiter.await.unwrap();
        assert_eq!(failure, LivenessFailure::Inactivity);
        assert_eq!(after, Duration::from_secs(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_stops_the_clock() {
        let liveness = Liveness::new(limits(), &json!({}));
        liveness.output_seen();
        let waiter = tokio::spawn({
            let liveness = liveness.clone();
            async move { fires_after(&liveness).await }
        });
        tokio::time::sleep(Duration::from_secs(19)).await;
        {
            let _outer = liveness.pause();
            let _inner = liveness.pause();
            tokio::time::sleep(Duration::from_secs(600)).await;
            assert!(!waiter.is_finished(), "no limit fires while paused");
        }
        let (failure, after) = waiter.await.unwrap();
        assert_eq!(failure, LivenessFailure::Inactivity);
        // 19 s before the pause, 600 s paused, then a full allowance after it.
        assert_eq!(after, Duration::from_secs(19 + 600 + 20));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_notices_of_an_unreachable_api_are_no_sign_of_life() {
        let liveness = Liveness::new(limits(), &json!({}));
        liveness.handshake_done();
        liveness.output_seen();
        let waiter = tokio::spawn({
            let liveness = liveness.clone();
            async move { fires_after(&liveness).await }
        });
        // Later connection failures neither restart the clock nor count as activity.
        tokio::time::sleep(Duration::from_secs(2)).await;
        liveness.unreachable();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            liveness.unreachable();
            liveness.activity();
        }
        let (failure, after) = waiter.await.unwrap();
        assert_eq!(failure, LivenessFailure::Unreachable { for_ms: 8_000 });
        assert_eq!(after, Duration::from_secs(2 + 8));
        assert_eq!(failure.reason(), FailureReason::ProviderUnreachable);
        assert!(liveness.describe(failure).contains("8000 ms"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_of_the_api_stops_the_unreachable_clock() {
        let liveness = Liveness::new(limits(), &json!({}));
        liveness.handshake_done();
        let waiter = tokio::spawn({
            let liveness = liveness.clone();
            async move { fires_after(&liveness).await }
        });
        liveness.unreachable();
        tokio::time::sleep(Duration::from_secs(5)).await;
        liveness.reachable();
        // Only the first-output limit is left, and it is no longer the API's fault.
        let (failure, after) = waiter.await.unwrap();
        assert_eq!(failure, LivenessFailure::FirstOutput);
        assert_eq!(after, Duration::from_secs(10));

        let liveness = Liveness::new(limits(), &json!({}));
        liveness.handshake_done();
        liveness.unreachable();
        tokio::time::sleep(Duration::from_secs(5)).await;
        liveness.output_seen();
        let (failure, after) = fires_after(&liveness).await;
        assert_eq!(failure, LivenessFailure::Inactivity);
        assert_eq!(after, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_phase_limit_that_runs_out_while_the_api_is_unreachable_blames_the_api() {
        let liveness = Liveness::new(
            limits(),
            &json!({"unreachableTimeoutMs": 60_000, "firstOutputTimeoutMs": 4_000}),
        );
        liveness.handshake_done();
        tokio::time::sleep(Duration::from_secs(1)).await;
        liveness.unreachable();
        let (failure, after) = fires_after(&liveness).await;
        assert_eq!(failure, LivenessFailure::Unreachable { for_ms: 3_000 });
        assert_eq!(after, Duration::from_secs(3));
        // Disabled: only the phase limits are left.
        let liveness = Liveness::new(limits(), &json!({"unreachableTimeoutMs": 0}));
        liveness.handshake_done();
        liveness.unreachable();
        let (failure, _) = fires_after(&liveness).await;
        assert_eq!(failure.reason(), FailureReason::ProviderUnreachable);
        assert_eq!(liveness.limits().unreachable, Duration::ZERO);
    }

    #[test]
    fn connection_failures_are_told_from_error_answers() {
        for text in [
            "Reconnecting... waiting for network",
            "Connection failed: error sending request",
            "API Error: Unable to connect to API (ConnectionRefused)",
            "Cannot connect to API: Unable to connect. Is the computer able to access the url?",
            "connect ECONNREFUSED 127.0.0.1:9",
        ] {
            assert!(names_connection_failure(text), "{text}");
        }
        for text in [
            "unexpected status 500 Internal Server Error: fake internal error",
            "Incorrect API key provided",
            "stream disconnected before completion: stream closed before response.completed",
            "Request timed out",
        ] {
            assert!(!names_connection_failure(text), "{text}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn provider_options_override_and_zero_disables() {
        let liveness = Liveness::new(
            limits(),
            &json!({"handshakeTimeoutMs": 0, "firstOutputTimeoutMs": 250, "inactivityTimeoutMs": "x"}),
        );
        assert_eq!(liveness.limits().handshake, Duration::ZERO);
        assert_eq!(liveness.limits().inactivity, Duration::from_secs(20));
        let waiter = tokio::spawn({
            let liveness = liveness.clone();
            async move { fires_after(&liveness).await }
        });
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(
            !waiter.is_finished(),
            "a disabled handshake limit never fires"
        );
        liveness.handshake_done();
        let (failure, after) = waiter.await.unwrap();
        assert_eq!(failure, LivenessFailure::FirstOutput);
        assert_eq!(after, Duration::from_millis(3_600_250));
    }
}
