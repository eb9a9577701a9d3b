//! Following one opencode turn: the event stream translated into run events until the
//! session is idle, permission requests asked of a human, liveness and retries
//! enforced, aborts on stop — and, when the stream breaks while the server lives on,
//! re-subscribing and reading back what was missed (`recover.rs`).

use super::*;

/// Why re-subscribing ended without a live stream.
enum Lost {
    Halt(Halt),
    /// Every attempt failed (the last failure).
    GaveUp(String),
}

/// The state of one turn, besides the event stream.
struct TurnState {
    translator: Translator,
    asks: FuturesUnordered<BoxFuture<'static, (PermissionAsk, HumanLoopAnswer)>>,
    /// Once set, the session was aborted: the end to report, and until when the idle
    /// that confirms the abort is awaited.
    ending: Option<(End, Instant)>,
    /// When the prompt was sent (ms since the epoch): older messages are earlier turns'.
    since_ms: u64,
    /// Breaks of the event stream that were followed by a re-subscription.
    breaks: u32,
}

impl TurnState {
    fn new(translator: Translator, since_ms: u64) -> Self {
        Self {
            translator,
            asks: FuturesUnordered::new(),
            ending: None,
            since_ms,
            breaks: 0,
        }
    }
}

impl Server<'_> {
    /// Follows the turn until the session is idle (or the run ends otherwise).
    pub(super) async fn turn(
        &mut self,
        events: &mut EventReader,
        session_id: &str,
        since_ms: u64,
    ) -> End {
        let mut turn = TurnState::new(
            Translator::new(session_id, Some(&self.ctx.dirs.workspace)),
            since_ms,
        );
        loop {
            let settle_by = turn.ending.as_ref().map(|(_, by)| *by);
            tokio::select! {
                biased;
                _ = self.ctx.stop.cancelled(), if turn.ending.is_none() => {
                    tracing::info!("stopping: aborting the opencode session");
                    turn.asks.clear();
                    self.abort(session_id).await;
                    turn.ending = Some((End::Stopped, Instant::now() + self.env.stop_grace));
                }
                _ = sleep_until(settle_by), if settle_by.is_some() => {
                    return turn.ending.map_or(End::Stopped, |(end, _)| end);
                }
                failure = self.liveness.expired(), if turn.ending.is_none() => {
                    let end = self.expired(failure, turn.translator.model_called());
                    tracing::warn!(?failure, "liveness limit exceeded; aborting the opencode session");
                    turn.asks.clear();
                    self.abort(session_id).await;
                    turn.ending = Some((end, Instant::now() + ABORT_SETTLE));
                }
                Some((ask, answer)) = turn.asks.next(), if !turn.asks.is_empty() => {
                    if turn.ending.is_none() {
                        self.answer(&mut turn.translator, ask, answer).await;
                    }
                }
                item = events.next() => match item {
                    StreamItem::Event { raw, event } => {
                        if !is_noise(&event) {
                            self.raw.push("sse", &raw);
                        }
                        if let Some(kind) = translate::unfamiliar_type(&event) {
                            tracing::debug!(event_type = %self.raw.redact(&api::shorten(kind, 80)), "unfamiliar opencode event (kept as evidence)");
                        }
                        if turn.translator.starts_model_stream(&event) {
                            self.liveness.output_seen();
                        } else if turn.translator.concerns_session(&event) {
                            self.liveness.activity();
                        }
                        let steps = turn.translator.handle(&event);
                        if let Some(end) = self.act(&mut turn, session_id, steps).await {
                            return end;
                        }
                    }
                    StreamItem::Garbage(raw) => {
                        tracing::debug!(raw = %self.raw.redact(&api::shorten(&raw, 200)), "undecodable opencode event");
                        self.raw.push("sse", &raw);
                    }
                    StreamItem::Closed(error) => {
                        // Aborted already (stop, a failure): the stream closing is the
                        // server going away, and the end is known.
                        if let Some((end, _)) = turn.ending.take() {
                            return end;
                        }
                        match self.resubscribe(&mut turn, session_id, error).await {
                            Ok(fresh) => *events = fresh,
                            Err(end) => return end,
                        }
                    }
                },
                line = self.process.next_line() => match line {
                    Some(line) => self.raw.push("stdout", &line),
                    None => {
                        if let Some((end, _)) = turn.ending {
                            return end;
                        }
                        let code = exit_code(&mut self.process).await;
                        return self.halted(Halt::Exited(code), "during the turn", true);
                    }
                },
            }
        }
    }

    /// Acts on the translator's steps; `Some` once the turn is over.
    async fn act(
        &mut self,
        turn: &mut TurnState,
        session_id: &str,
        steps: Vec<Step>,
    ) -> Option<End> {
        for step in steps {
            match step {
                Step::Emit(kind) => {
                    if is_output(&kind) {
                        self.liveness.output_seen();
                    }
                    if let Err(error) = self.ctx.events.emit(self.raw.redact_event(kind)).await {
                        // The run's log is gone (stop, takeover): nothing more can be
                        // reported.
                        tracing::info!(%error, "run events refused; ending the opencode run");
                        return Some(End::Stopped);
                    }
                }
                Step::Ask(ask) if turn.ending.is_none() => {
                    self.liveness.output_seen();
                    turn.asks.push(self.ask(ask));
                }
                Step::Ask(_) => {}
                Step::DeclineQuestion(id) => self.decline_question(&id).await,
                // After an abort (a stop, a failure) what opencode says about the
                // interrupted model call is no retry.
                Step::Retry(_) if turn.ending.is_some() => {}
                Step::Retry(notice) => {
                    if let Some(end) = self.retry(&notice).await {
                        turn.asks.clear();
                        self.abort(session_id).await;
                        turn.ending = Some((end, Instant::now() + ABORT_SETTLE));
                    }
                }
                Step::Idle => return Some(self.idle(turn).await),
            }
        }
        None
    }

    /// The session went idle: completes what the translator holds and judges the turn.
    async fn idle(&mut self, turn: &mut TurnState) -> End {
        for step in turn.translator.finish() {
            if let Step::Emit(kind) = step
                && self
                    .ctx
                    .events
                    .emit(self.raw.redact_event(kind))
                    .await
                    .is_err()
            {
                return End::Stopped;
            }
        }
        match turn.ending.take() {
            Some((end, _)) => end,
            None => self.verdict(&turn.translator),
        }
    }

    /// The event stream broke mid-turn. Unless the server is gone, subscribes again
    /// (bounded, see `recover.rs`), says so in a diagnostic, and passes on what the
    /// server's REST API shows that the broken stream did not: the new stream, or the
    /// run's end (the turn may have ended while nobody listened).
    async fn resubscribe(
        &mut self,
        turn: &mut TurnState,
        session_id: &str,
        error: Option<String>,
    ) -> Result<EventReader, End> {
        let broke = broken_stream(error.as_deref());
        if self.process.try_wait().is_some() {
            return Err(self.server_gone(broke).await);
        }
        if turn.breaks == recover::MAX_BREAKS {
            return Err(self
                .server_gone(format!(
                    "{broke} (the {}th time in this turn; not re-subscribing again)",
                    recover::MAX_BREAKS + 1
                ))
                .await);
        }
        turn.breaks += 1;
        tracing::warn!(detail = %self.raw.redact(&broke), "re-subscribing to opencode's events");
        let (events, snapshot, attempt) = match self.reconnect(session_id, turn.since_ms).await {
            Ok(reconnected) => reconnected,
            Err(Lost::Halt(halt)) => {
                return Err(self
                    .halted_reconnecting(halt, turn.translator.model_called(), session_id, &broke)
                    .await);
            }
            Err(Lost::GaveUp(last)) => {
                return Err(self
                    .server_gone(format!(
                        "{broke}; re-subscribing failed {} times (last: {last})",
                        recover::ATTEMPTS
                    ))
                    .await);
            }
        };
        tracing::info!(attempt, "re-subscribed to opencode's events");
        self.liveness.activity();
        self.diagnostic(
            DiagnosticLevel::Warn,
            format!(
                "{}; re-subscribed (attempt {attempt} of {}) and recovered the turn's state from the server's API. Events emitted while disconnected are not replayed: how many were missed is unknown (text deltas may be missing; messages, tool calls and approvals were recovered)",
                self.raw.redact(&broke),
                recover::ATTEMPTS
            ),
        )
        .await;
        let rebuilt = recover::events(&snapshot, session_id);
        let steps = turn.translator.recover(&rebuilt);
        match self.act(turn, session_id, steps).await {
            Some(end) => Err(end),
            None => Ok(events),
        }
    }

    /// Up to [`recover::ATTEMPTS`] subscriptions, each followed by a snapshot of the
    /// session: the live stream, the snapshot, and the attempt that got them.
    async fn reconnect(
        &mut self,
        session_id: &str,
        since_ms: u64,
    ) -> Result<(EventReader, recover::Snapshot, u32), Lost> {
        let mut last = String::new();
        for attempt in 1..=recover::ATTEMPTS {
            self.watch(tokio::time::sleep(recover::backoff(attempt)))
                .await
                .map_err(Lost::Halt)?;
            let deadline = Instant::now() + recover::ATTEMPT_TIMEOUT;
            match self.subscribe(Some(deadline)).await.map_err(Lost::Halt)? {
                Ok(events) => {
                    let api = self.api.clone();
                    let snapshot =
                        within(Some(deadline), recover::fetch(&api, session_id, since_ms));
                    match self.watch(snapshot).await.map_err(Lost::Halt)? {
                        Some(Ok(snapshot)) => return Ok((events, snapshot, attempt)),
                        Some(Err(error)) => last = format!("reading the session's state: {error}"),
                        None => last = "reading the session's state timed out".to_owned(),
                    }
                }
                Err(failure) => last = failure.to_string(),
            }
            last = self.raw.redact(&last);
            tracing::warn!(attempt, error = %last, "re-subscribing to opencode's events failed");
        }
        Err(Lost::GaveUp(last))
    }

    /// The run ended while re-subscribing. The server may still be working on the
    /// turn, so a stop or an expired limit aborts it (nothing can confirm the abort
    /// without a stream; the server is ended right after).
    async fn halted_reconnecting(
        &mut self,
        halt: Halt,
        model_called: bool,
        session_id: &str,
        broke: &str,
    ) -> End {
        match halt {
            Halt::Stop => {
                self.abort(session_id).await;
                End::Stopped
            }
            Halt::Expired(failure) => {
                let end = self.expired(failure, model_called);
                self.abort(session_id).await;
                end
            }
            Halt::Exited(code) => {
                self.exit_code = code;
                End::failed(
                    FailureReason::ProviderCrashed,
                    format!("{broke}; the server exited {}", how_exited(code)),
                )
            }
        }
    }

    fn verdict(&self, translator: &Translator) -> End {
        match translator.verdict() {
            Verdict::Succeeded => End::Succeeded,
            Verdict::NoOutput => End::failed(
                FailureReason::ProviderNoOutput,
                "the opencode turn ended without any output from the model",
            ),
            Verdict::Aborted => End::failed(
                FailureReason::ProviderError,
                "the opencode turn was aborted by something other than this run",
            ),
            Verdict::Failed { reason, detail } => End::Failed { reason, detail },
        }
    }

    /// The future asking a human about a permission (the liveness clock paused).
    fn ask(&self, ask: PermissionAsk) -> BoxFuture<'static, (PermissionAsk, HumanLoopAnswer)> {
        let human_loop = self.ctx.human_loop.clone();
        let liveness = self.liveness.clone();
        let prompt = self.raw.redact(&ask.prompt(Some(&self.ctx.dirs.workspace)));
        let mut details = ask.details();
        self.raw.redact_value(&mut details);
        Box::pin(async move {
            let _paused = liveness.pause();
            let answer = human_loop.ask(ask.kind(), prompt, details).await;
            (ask, answer)
        })
    }

    /// Passes a human's decision on to opencode.
    async fn answer(
        &mut self,
        translator: &mut Translator,
        ask: PermissionAsk,
        answer: HumanLoopAnswer,
    ) {
        let approved = answer.approved();
        if !approved && let Some(call_id) = &ask.call_id {
            translator.declined(call_id);
        }
        tracing::info!(permission_id = %ask.id, approved, "answering opencode's permission request");
        if let Err(error) = self
            .api
            .reply_permission(&ask.id, approved, answer.message.as_deref())
            .await
        {
            tracing::warn!(%error, "could not answer opencode's permission request");
            self.diagnostic(
                DiagnosticLevel::Warn,
                format!(
                    "could not pass the decision on {} to opencode: {}",
                    ask.permission,
                    self.raw.redact(&error.to_string())
                ),
            )
            .await;
        }
    }

    async fn decline_question(&self, question_id: &str) {
        if let Err(error) = self.api.reject_question(question_id).await {
            tracing::warn!(%error, "could not reject opencode's question");
        }
        self.diagnostic(
            DiagnosticLevel::Warn,
            "opencode's agent asked a free-text question; questions are not supported, it was rejected".to_owned(),
        )
        .await;
    }

    /// A model API retry: reported, and once the budget is spent, the run's end. A
    /// retry because the API cannot be connected to is no sign of life (the
    /// unreachable clock runs); any other means the API answered.
    async fn retry(&self, notice: &RetryNotice) -> Option<End> {
        if notice.unreachable() {
            self.liveness.unreachable();
        } else {
            self.liveness.reachable();
        }
        let message = self.raw.redact(&notice.message);
        let budget = self.options.max_retries;
        if notice.attempt <= budget {
            self.diagnostic(
                DiagnosticLevel::Warn,
                format!(
                    "the model API call failed ({message}); opencode retries (attempt {} of {budget})",
                    notice.attempt
                ),
            )
            .await;
            return None;
        }
        tracing::warn!(
            attempt = notice.attempt,
            budget,
            "model API retry budget spent"
        );
        Some(End::failed(
            notice.reason(),
            format!("the model API call kept failing after {budget} retries: {message}"),
        ))
    }
}

fn is_output(kind: &RunEventKind) -> bool {
    matches!(
        kind,
        RunEventKind::MessageDelta(_)
            | RunEventKind::MessageCompleted(_)
            | RunEventKind::ReasoningDelta(_)
            | RunEventKind::ToolStarted(_)
            | RunEventKind::ToolOutput(_)
            | RunEventKind::ToolCompleted(_)
            | RunEventKind::FileChanged(_)
    )
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
