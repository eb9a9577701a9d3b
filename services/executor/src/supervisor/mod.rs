//! The supervisor: takes one accepted run from `run.started` to `run.completed` and
//! frees its slot — in-process here, or in a run host through [`hosted`].
//!
//! It prepares the run's directories and conversation, then drives the provider: it
//! enforces the run timeout on active time (the clock pauses while a human is asked)
//! and the run's budget, turns stop requests, timeouts and the end of a shutdown's
//! drain into a cancelled stop token plus a grace period, then an abort, and writes the
//! closing events (a shutdown also gets a `diagnostic` saying so). A run whose log was
//! taken over by another writer (fenced) is stopped and gets no further event from
//! here.

pub(crate) mod hosted;

use crate::budget::Limits;
use crate::clock::ActiveClock;
use crate::executor::Executor;
use crate::file_changes::FileChanges;
use crate::human_loop::{self, HumanLoop};
use crate::provider::{Provider, ProviderOutcome, RunContext, SessionReport};
use crate::runs::{RunState, StopCause};
use crate::settings::WorkspaceCleanup;
use crate::sink::{EmitError, EventSink};
use crate::workdirs::{self, ConversationDir, ConversationState, SessionRecord, WorkDirs};
use std::sync::Arc;
use std::time::Duration;
use switchyard_contracts::event::{
    Diagnostic, DiagnosticLevel, Evidence, RunCompleted, RunStarted,
};
use switchyard_contracts::provider::{operator_only_message, operator_only_option};
use switchyard_contracts::{FailureReason, ProviderName, RunCommand, RunEventKind, RunId};
use tracing::Instrument;

/// What the supervisor needs to run one accepted run.
pub(crate) struct Supervised {
    pub(crate) run: Arc<RunState>,
    pub(crate) provider: Arc<dyn Provider>,
    pub(crate) command: RunCommand,
    pub(crate) timeout_ms: u64,
    pub(crate) sink: EventSink,
    /// The start request's trace id, logged on the run's span.
    pub(crate) trace_id: Option<String>,
}

/// How the provider's task ended.
enum Ending {
    Returned(ProviderOutcome),
    Panicked(String),
    /// Aborted after the stop grace ran out.
    Aborted,
    /// Never started (e.g. the workspace could not be created).
    NotStarted(RunCompleted),
}

/// Runs an accepted run to its end and frees its slot.
pub(crate) async fn supervise(executor: Arc<Executor>, job: Supervised) {
    let span = tracing::info_span!("run", run_id = %job.run.run_id, trace_id = job.trace_id.as_deref(), provider = %job.provider.name());
    async move {
        let run = job.run.clone();
        let sink = job.sink.clone();
        let timeout_ms = job.timeout_ms;
        let (ending, dirs) = drive(&executor, job).await;
        // Before `run.completed`: a follow-up may be dispatched as soon as it is stored,
        // and must find the session this run reported.
        if let Some(dirs) = &dirs {
            dirs.record_session(run.run_id).await;
        }
        let succeeded = conclude(&run, &sink, ending, timeout_ms).await;
        if let Some(dirs) = dirs {
            dirs.clean_up(run.run_id, executor.settings.workspace_cleanup, succeeded)
                .await;
        }
        run.ended.cancel();
        executor.runs.finish(run.run_id);
    }
    .instrument(span)
    .await;
}

/// The directory a run worked in, and what to do with it once the run has ended.
struct RunDirs {
    conversation: ConversationDir,
    provider: String,
    session: SessionReport,
}

impl RunDirs {
    /// Records the session the provider reported, for the next run of the conversation.
    async fn record_session(&self, run_id: RunId) {
        let Some(session_id) = self.session.get() else {
            return;
        };
        let record = SessionRecord {
            provider: self.provider.clone(),
            session_id,
            run_id,
        };
        if let Err(error) = self.conversation.save_session(&record).await {
            tracing::warn!(run_id = %run_id, dir = %self.conversation.base.display(), %error, "cannot record the provider session; the next run of the conversation starts a fresh one");
        }
    }

    /// Applies the cleanup policy once the run has ended.
    async fn clean_up(self, run_id: RunId, cleanup: WorkspaceCleanup, succeeded: bool) {
        let delete = match cleanup {
            WorkspaceCleanup::Keep => false,
            WorkspaceCleanup::DeleteOnSuccess => succeeded,
            WorkspaceCleanup::Delete => true,
        };
        if !delete {
            return;
        }
        match self.conversation.remove().await {
            Ok(()) => tracing::debug!(run_id = %run_id, "run directory deleted"),
            Err(error) => {
                tracing::warn!(run_id = %run_id, dir = %self.conversation.base.display(), %error, "cannot delete the run directory");
            }
        }
    }
}

/// Why the command may not run because of an operator-only `providerOptions` key (see
/// [`switchyard_contracts::provider::OPERATOR_ONLY_OPTIONS`]), if it has one.
pub(crate) fn operator_only_option_of(command: &RunCommand) -> Option<String> {
    let options = command.provider_options.as_object()?;
    let key = operator_only_option(options.keys().map(String::as_str))?;
    Some(operator_only_message(
        &format!("providerOptions.{key}"),
        ProviderName::parse(&command.provider),
    ))
}

/// Prepares the run's directories and conversation, then runs the provider.
async fn drive(executor: &Executor, job: Supervised) -> (Ending, Option<RunDirs>) {
    let run_id = job.run.run_id;
    let limits = match executor
        .settings
        .budget
        .limits(&job.command.provider_options)
    {
        Ok(limits) => limits,
        Err(invalid) => {
            return (
                Ending::NotStarted(RunCompleted::failed(
                    FailureReason::ProviderError,
                    invalid.to_string(),
                )),
                None,
            );
        }
    };
    let conversation = ConversationDir::for_run(
        &executor.settings.workspace_root,
        job.command.conversation_id,
        run_id,
    );
    let mut dirs = conversation.dirs();
    // Where a run's credentials go is the operator's (`executor.credentials`), never
    // the command's: the control-plane refuses such options, and so does this last
    // line of defence, before anything is spawned.
    if let Some(detail) = operator_only_option_of(&job.command) {
        tracing::warn!(run_id = %run_id, %detail, "refusing a run that names its model endpoint");
        return (
            Ending::NotStarted(RunCompleted::failed(FailureReason::ProviderError, detail)),
            None,
        );
    }
    // A given directory replaces only the workspace: the CLI state stays in the
    // conversation's directory, and the cleanup policy only ever deletes that one
    // (`given_workspace` refuses a directory overlapping `workspace_root`).
    match workdirs::given_workspace(
        &job.command.provider_options,
        &executor.settings.allowed_workspace_dirs,
        &executor.settings.workspace_root,
    )
    .await
    {
        Ok(Some(given)) => {
            tracing::info!(run_id = %run_id, workspace = %given.display(), "the run works in its given directory");
            dirs.workspace = given;
        }
        Ok(None) => {}
        Err(detail) => {
            tracing::warn!(run_id = %run_id, %detail, "refusing the run's workspace directory");
            return (
                Ending::NotStarted(RunCompleted::failed(FailureReason::ProviderError, detail)),
                None,
            );
        }
    }
    if let Err(error) = dirs.create().await {
        tracing::error!(run_id = %run_id, dir = %conversation.base.display(), %error, "cannot create the run's directories");
        let mut completed = RunCompleted::failed(
            FailureReason::UnknownFailure,
            "the executor could not create the run's workspace directory",
        );
        completed.evidence.raw_lines = vec![format!("{}: {error}", conversation.base.display())];
        return (Ending::NotStarted(completed), None);
    }
    let provider = job.provider.name().as_str().to_owned();
    let resume = match job.command.conversation_id {
        Some(_) => Some(ConversationState {
            session_id: conversation.load_session(&provider).await,
        }),
        None => None,
    };
    let session = SessionReport::default();
    let prepared = Prepared {
        dirs,
        conversation: resume,
        session: session.clone(),
    };
    let mut changes = None;
    let ending = drive_provider(executor, job, prepared, limits, &mut changes).await;
    if let Some(changes) = changes {
        // Changes made by the last tool calls, or by a provider stopped mid-tool.
        changes.finish().await;
    }
    let run_dirs = RunDirs {
        conversation,
        provider,
        session,
    };
    (ending, Some(run_dirs))
}

/// What the run's context gets from its directory.
struct Prepared {
    dirs: WorkDirs,
    conversation: Option<ConversationState>,
    session: SessionReport,
}

async fn drive_provider(
    executor: &Executor,
    job: Supervised,
    prepared: Prepared,
    limits: Limits,
    changes: &mut Option<FileChanges>,
) -> Ending {
    let Supervised {
        run,
        provider,
        command,
        timeout_ms,
        sink,
        trace_id: _,
    } = job;
    let Prepared {
        dirs,
        conversation,
        session,
    } = prepared;
    let workspace = dirs.workspace.clone();
    let started = RunEventKind::RunStarted(RunStarted {
        provider: provider.name().as_str().to_owned(),
        model: command.model.clone(),
        workspace: Some(workspace.display().to_string()),
    });
    sink.set_budget(limits);
    if sink.emit_stored(started).await.is_err() {
        return Ending::Aborted;
    }
    tracing::info!(run_id = %run.run_id, timeout_ms, "run started");
    // Snapshotted before the provider runs, so every change it makes is seen.
    *changes = Some(FileChanges::start(workspace.clone(), &sink).await);

    let clock = Arc::new(ActiveClock::start());
    let human_loop_timeout = executor
        .settings
        .human_loop_timeout(&command.provider_options);
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
    let ctx = RunContext {
        command,
        workspace,
        dirs,
        conversation,
        session_id: session,
        evidence: run.evidence.clone(),
        events: sink.clone(),
        human_loop: HumanLoop::new(
            run.pending.clone(),
            clock.clone(),
            sink.clone(),
            run.stop.clone(),
        )
        .with_timeout(human_loop_timeout),
        stop: run.stop.clone(),
    };
    // A task of its own, so that it can be aborted after the stop grace; in the
    // executor's tracker like every task of a run.
    let mut task = executor.tasks.spawn(provider.run(ctx).in_current_span());
    let timed_out = async {
        match timeout {
            Some(limit) => clock.reached(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        joined = &mut task => return ending_of(joined),
        _ = sink.lost() => run.request_stop(StopCause::LogLost),
        _ = sink.over_budget() => {
            if let Some(exceeded) = sink.exceeded() {
                run.request_stop(StopCause::OverBudget(exceeded));
            }
        }
        _ = run.stop.cancelled() => {}
        _ = timed_out => run.request_stop(StopCause::Timeout),
    }
    let cause = run.cause();
    tracing::info!(run_id = %run.run_id, ?cause, "stopping the provider");
    if let StopCause::Shutdown(why) = cause {
        // Said before the provider winds down, so a client watching the stream learns
        // why at once (the closing `run.completed` repeats it).
        let diagnostic = RunEventKind::Diagnostic(Diagnostic {
            level: DiagnosticLevel::Warn,
            message: why.detail(),
            raw: None,
        });
        if let Err(error) = sink.emit(diagnostic).await {
            tracing::debug!(run_id = %run.run_id, %error, "could not record why the run is stopped");
        }
    }
    let grace = executor.settings.stop_grace();
    match tokio::time::timeout(grace, &mut task).await {
        Ok(joined) => ending_of(joined),
        Err(_) => {
            tracing::warn!(run_id = %run.run_id, grace_ms = grace.as_millis() as u64, "provider did not stop within the grace period; aborting it");
            task.abort();
            let _ = task.await;
            Ending::Aborted
        }
    }
}

fn ending_of(joined: Result<ProviderOutcome, tokio::task::JoinError>) -> Ending {
    match joined {
        Ok(outcome) => Ending::Returned(outcome),
        Err(error) if error.is_panic() => {
            let payload = error.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Ending::Panicked(message)
        }
        Err(_) => Ending::Aborted,
    }
}

/// The `run.completed` of a run, or `None` when nothing may be written any more.
fn completion(
    run: &RunState,
    ending: Ending,
    timeout_ms: u64,
    lost: Option<EmitError>,
) -> Option<RunCompleted> {
    match lost {
        Some(EmitError::Fenced) => return None,
        Some(EmitError::Unavailable) => {
            return Some(RunCompleted::failed(
                FailureReason::ExecutorLost,
                "the executor could not write the run's events to the event log",
            ));
        }
        _ => {}
    }
    if let Ending::NotStarted(completed) = ending {
        return Some(completed);
    }
    // Over budget fails the run even when the provider finished its turn: the event
    // that spent the budget may have been the provider's last (codex reports its usage
    // at the end), and whatever followed it was not written.
    if run.stop.is_cancelled()
        && let StopCause::OverBudget(exceeded) = run.cause()
    {
        let evidence = match ending {
            Ending::Returned(ProviderOutcome::Failed { evidence, .. }) => evidence,
            _ => Evidence::default(),
        };
        return Some(exceeded.completed(evidence));
    }
    // A provider that finished its work anyway (the stop raced its last step) succeeded:
    // its whole output is there. Otherwise a stop or timeout the supervisor initiated
    // decides the status, whatever the provider made of being interrupted (an
    // interrupted CLI often exits with an error).
    let succeeded = matches!(ending, Ending::Returned(ProviderOutcome::Succeeded));
    if run.stop.is_cancelled() && !succeeded {
        return Some(match run.cause() {
            // A failure: it carries what the provider saw, as a liveness limit's would.
            StopCause::Timeout => RunCompleted {
                evidence: match ending {
                    Ending::Returned(ProviderOutcome::Failed { evidence, .. })
                        if !evidence.is_empty() =>
                    {
                        evidence
                    }
                    _ => run.evidence.take().unwrap_or_default(),
                },
                ..RunCompleted::failed(
                    FailureReason::Timeout,
                    format!("the run exceeded its timeout of {timeout_ms} ms of active time"),
                )
            },
            StopCause::Requested(reason) => RunCompleted::failed(
                FailureReason::Stopped,
                match reason {
                    Some(reason) => format!("stopped on request: {reason}"),
                    None => "stopped on request".to_owned(),
                },
            ),
            StopCause::Shutdown(why) => RunCompleted::failed(FailureReason::Stopped, why.detail()),
            StopCause::LogLost => RunCompleted::failed(
                FailureReason::ExecutorLost,
                "the executor lost the run's event log",
            ),
            StopCause::OverBudget(exceeded) => exceeded.completed(Evidence::default()),
        });
    }
    Some(match ending {
        Ending::Returned(ProviderOutcome::Succeeded) => RunCompleted::succeeded(),
        Ending::Returned(ProviderOutcome::Failed {
            reason,
            detail,
            evidence,
        }) => RunCompleted {
            evidence,
            ..RunCompleted::failed(reason, detail)
        },
        Ending::Returned(ProviderOutcome::Stopped) => {
            RunCompleted::failed(FailureReason::Stopped, "the provider stopped on its own")
        }
        Ending::Panicked(message) => RunCompleted {
            evidence: Evidence {
                raw_lines: vec![message],
                ..Evidence::default()
            },
            ..RunCompleted::failed(
                FailureReason::ProviderCrashed,
                "the provider's task panicked",
            )
        },
        Ending::Aborted | Ending::NotStarted(_) => RunCompleted::failed(
            FailureReason::UnknownFailure,
            "the provider ended without an outcome",
        ),
    })
}

/// Writes the closing events: `run_ended` resolutions of open human-loop requests,
/// then `run.completed`. Nothing at all when the run was fenced. Returns whether the
/// run succeeded.
async fn conclude(run: &RunState, sink: &EventSink, ending: Ending, timeout_ms: u64) -> bool {
    let mut sealed = sink.seal().await;
    if let Some(exceeded) = sink.exceeded() {
        // The provider may have returned before the supervisor saw the budget spent.
        run.request_stop(StopCause::OverBudget(exceeded));
    }
    let open = run.pending.close();
    let Some(completed) = completion(run, ending, timeout_ms, sealed.lost_reason()) else {
        tracing::warn!(run_id = %run.run_id, "run fenced: another writer owns its log; writing nothing more");
        return false;
    };
    for resolution in human_loop::run_ended_resolutions(open) {
        if sealed.append(resolution).await.is_err() {
            break;
        }
    }
    let status = completed.status;
    let reason = completed.reason;
    let succeeded = reason.is_none();
    match sealed.append(RunEventKind::RunCompleted(completed)).await {
        Ok(()) => {
            tracing::info!(run_id = %run.run_id, status = status.as_str(), reason = reason.map(|r| r.as_str()), "run completed");
        }
        Err(EmitError::Fenced) => {
            tracing::warn!(run_id = %run.run_id, "run.completed fenced: another writer owns the run");
        }
        Err(error) => {
            // Left non-terminal: start-up reconciliation concludes it (executor_lost).
            tracing::error!(run_id = %run.run_id, %error, "could not write run.completed");
        }
    }
    succeeded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{Admission, Runs, Shutdown, Ticket};

    fn admitted(admission: Admission) -> Ticket {
        match admission {
            Admission::Admitted(ticket) => ticket,
            _ => panic!("expected a slot"),
        }
    }

    #[test]
    fn a_run_ended_by_its_timeout_carries_the_providers_evidence() {
        let runs = Runs::new(4);
        let ticket = admitted(runs.admit(RunId::now_v7(), 3));
        let run = ticket.run();
        run.request_stop(StopCause::Timeout);
        let evidence = Evidence {
            stderr_tail: vec!["model API: still waiting".into()],
            raw_lines: vec![r#"{"type":"system","subtype":"status"}"#.into()],
            exit_code: Some(143),
        };
        // The provider wound down (Stopped) after leaving its evidence.
        run.evidence.set(evidence.clone());
        let completed =
            completion(run, Ending::Returned(ProviderOutcome::Stopped), 300, None).unwrap();
        assert_eq!(completed.reason, Some(FailureReason::Timeout));
        assert_eq!(completed.evidence, evidence);
        // A provider that failed on its way down: its own evidence.
        let own = Evidence {
            raw_lines: vec!["last line".into()],
            ..Evidence::default()
        };
        let completed = completion(
            run,
            Ending::Returned(ProviderOutcome::Failed {
                reason: FailureReason::ProviderCrashed,
                detail: "killed".into(),
                evidence: own.clone(),
            }),
            300,
            None,
        )
        .unwrap();
        assert_eq!(completed.reason, Some(FailureReason::Timeout));
        assert_eq!(completed.evidence, own);
        // Aborted after the grace without a report: nothing to show, and nothing made up.
        let completed = completion(run, Ending::Aborted, 300, None).unwrap();
        assert!(completed.evidence.is_empty());
    }

    #[test]
    fn completion_follows_the_stop_cause_unless_the_provider_finished() {
        let runs = Runs::new(4);
        let stopped = admitted(runs.admit(RunId::now_v7(), 3));
        stopped.run().request_stop(StopCause::Timeout);
        stopped.run().request_stop(StopCause::Requested(None));
        let completed = completion(
            stopped.run(),
            Ending::Returned(ProviderOutcome::failed(
                FailureReason::ProviderCrashed,
                "sig",
            )),
            300,
            None,
        )
        .unwrap();
        assert_eq!(
            completed.reason,
            Some(FailureReason::Timeout),
            "first cause wins"
        );

        let finished = completion(
            stopped.run(),
            Ending::Returned(ProviderOutcome::Succeeded),
            300,
            None,
        )
        .unwrap();
        assert_eq!(finished, RunCompleted::succeeded());

        assert!(completion(stopped.run(), Ending::Aborted, 300, Some(EmitError::Fenced)).is_none());

        let shutdown = admitted(runs.admit(RunId::now_v7(), 3));
        runs.stop_all(Shutdown::DrainTimeout(1500));
        let completed = completion(shutdown.run(), Ending::Aborted, 0, None).unwrap();
        assert_eq!(completed.reason, Some(FailureReason::Stopped));
        let detail = completed.detail.unwrap();
        assert!(
            detail.starts_with("executor shutdown") && detail.contains("1500 ms"),
            "{detail}"
        );
        // A run admitted after the fact is stopped through the parent token.
        let late = admitted(runs.admit(RunId::now_v7(), 3));
        assert!(late.run().stop.is_cancelled());
        assert_eq!(late.run().cause(), StopCause::Shutdown(Shutdown::Immediate));
    }
}
