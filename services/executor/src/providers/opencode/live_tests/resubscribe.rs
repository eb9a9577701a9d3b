//! opencode's event stream cut mid-turn while the server lives on (through
//! [`EventProxy`]): the adapter re-subscribes, recovers what it missed from the REST
//! API, and the run goes on — or fails `provider_crashed` when it cannot get back in.

use super::proxy::{EventProxy, Gate};
use super::*;
use switchyard_contracts::event::DiagnosticLevel;

/// Bound on each wait of a test for something the run or the server does.
const WAIT: Duration = Duration::from_secs(60);

async fn live_via_proxy() -> (Live, EventProxy) {
    let mut live = Live::start().await;
    let proxy = EventProxy::start().await;
    live.route = Some(proxy.route());
    (live, proxy)
}

/// Waits for the run's first `message.delta`: the turn is streaming.
async fn streaming(log: &EventLog, run_id: RunId) -> Result<(), String> {
    let first_delta = async {
        let mut tail = Box::pin(log.tail(run_id, 0).await.unwrap());
        while let Some(Ok(stored)) = tail.next().await {
            if matches!(stored.decode().unwrap().kind, RunEventKind::MessageDelta(_)) {
                return Ok(());
            }
        }
        Err("the run's events ended without a delta".to_owned())
    };
    tokio::time::timeout(WAIT, first_delta)
        .await
        .unwrap_or_else(|_| Err("no delta".to_owned()))
}

/// Cuts the event stream; exactly the one subscription must have been live.
fn cut(proxy: &EventProxy, then: Gate) -> Result<(), String> {
    match proxy.cut(then) {
        1 => Ok(()),
        n => Err(format!("{n} event connections cut, expected 1")),
    }
}

fn completed_texts(events: &[RunEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RunEventKind::MessageCompleted(m) => Some(m.text.as_str()),
            _ => None,
        })
        .collect()
}

fn deltas(events: &[RunEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            RunEventKind::MessageDelta(d) => Some(d.text.as_str()),
            _ => None,
        })
        .collect()
}

fn count(events: &[RunEvent], type_name: &str) -> usize {
    events
        .iter()
        .filter(|e| e.kind.type_name() == type_name)
        .count()
}

/// The warning that the stream was re-subscribed.
fn resubscribed(events: &[RunEvent]) -> bool {
    events.iter().any(|e| {
        matches!(&e.kind, RunEventKind::Diagnostic(d)
            if d.level == DiagnosticLevel::Warn
                && d.message.contains("re-subscribed")
                && d.message.contains("unknown"))
    })
}

/// The final message is there once, whole, and the deltas add up to it exactly: nothing
/// missed while disconnected was lost, nothing seen twice was passed on twice.
fn assert_final_message_once(done: &Finished, expected: &str) {
    let texts = completed_texts(&done.events);
    let [text] = texts.as_slice() else {
        panic!("one message.completed expected: {texts:?}")
    };
    assert_eq!(text.trim(), expected.trim());
    assert_eq!(deltas(&done.events), *text);
}

fn slow_text(deltas: u32) -> String {
    (0..deltas).map(|i| format!("tick{i} ")).collect()
}

/// Runs `command` while `cutter` works the proxy; the run's end, once both are done.
async fn run_and_cut(
    live: &Live,
    command: RunCommand,
    dirs: WorkDirs,
    cutter: impl Future<Output = Result<(), String>>,
) -> Finished {
    let (done, cutter) = tokio::join!(
        live.run(command, dirs, None, HumanLoopDecision::Approve, None),
        cutter
    );
    print(&done);
    cutter.unwrap();
    done
}

fn print(done: &Finished) {
    eprintln!("{:?} after {:?}", done.outcome, done.elapsed);
    for event in &done.events {
        eprintln!("{}", serde_json::to_string(&event.kind).unwrap());
    }
}

#[tokio::test]
async fn live_a_cut_event_stream_is_resubscribed_and_the_turn_goes_on() {
    let (live, proxy) = live_via_proxy().await;
    let dirs = live.dirs("cut").await;
    let workspace = dirs.workspace.clone();
    let command = live.command("SCN_SLOW:30x100 count slowly", json!({}));
    let run_id = command.run_id;
    let cutter = async {
        streaming(&live.log, run_id).await?;
        cut(&proxy, Gate::Open)
    };
    let done = run_and_cut(&live, command, dirs, cutter).await;
    assert_eq!(done.outcome, ProviderOutcome::Succeeded);
    assert_final_message_once(&done, &slow_text(30));
    assert!(resubscribed(&done.events), "no re-subscription diagnostic");
    assert_eq!(proxy.subscriptions(), 2);
    assert!(processes_in(&workspace).is_empty());
}

#[tokio::test]
async fn live_a_turn_that_ends_while_disconnected_is_recovered() {
    let (live, proxy) = live_via_proxy().await;
    let dirs = live.dirs("ended").await;
    // 300 ms between deltas: the cut must come while the turn still streams, and the
    // test sees the first delta only through the event log, late on a loaded host.
    let command = live.command("SCN_SLOW:10x300 count slowly", json!({}));
    let run_id = command.run_id;
    let cutter = async {
        streaming(&live.log, run_id).await?;
        cut(&proxy, Gate::Hold)?;
        // The adapter's re-subscription waits at the proxy until the turn is over.
        proxy.overheard("\"session.idle\"", WAIT).await?;
        proxy.open();
        Ok::<_, String>(())
    };
    let done = run_and_cut(&live, command, dirs, cutter).await;
    assert_eq!(done.outcome, ProviderOutcome::Succeeded);
    assert_final_message_once(&done, &slow_text(10));
    assert!(resubscribed(&done.events), "no re-subscription diagnostic");
    assert_eq!(count(&done.events, "usage"), 1);
    assert_eq!(proxy.subscriptions(), 2);
}

#[tokio::test]
async fn live_a_permission_asked_while_disconnected_still_reaches_the_human() {
    let (live, proxy) = live_via_proxy().await;
    let dirs = live.dirs("ask").await;
    let workspace = dirs.workspace.clone();
    let command = live.command("Create hello.txt please", json!({}));
    let cutter = async {
        // Cut as the model is asked (it answers with the tool call at once): the
        // permission request comes while the adapter is not listening.
        live.model
            .wait_for_request(WAIT, |r| r.tool_names().iter().any(|t| t == "bash"))
            .await
            .map_err(|e| e.to_string())?;
        cut(&proxy, Gate::Hold)?;
        proxy.overheard("\"permission.asked\"", WAIT).await?;
        proxy.open();
        Ok::<_, String>(())
    };
    let done = run_and_cut(&live, command, dirs, cutter).await;
    assert_eq!(done.outcome, ProviderOutcome::Succeeded);
    assert_eq!(count(&done.events, "human_loop.requested"), 1);
    assert!(workspace.join(TOOL_FILE).is_file());
    assert_eq!(count(&done.events, "tool.started"), 1);
    assert_eq!(count(&done.events, "tool.completed"), 1);
    let texts = completed_texts(&done.events);
    assert!(
        matches!(texts.as_slice(), [text] if text.contains(FINAL_MARKER)),
        "{texts:?}"
    );
    assert!(resubscribed(&done.events), "no re-subscription diagnostic");
}

#[tokio::test]
async fn live_a_stream_that_cannot_be_resubscribed_is_provider_crashed() {
    let (live, proxy) = live_via_proxy().await;
    let dirs = live.dirs("refused").await;
    let workspace = dirs.workspace.clone();
    let command = live.command("SCN_SLOW:100x100 count slowly", json!({}));
    let run_id = command.run_id;
    let cutter = async {
        streaming(&live.log, run_id).await?;
        cut(&proxy, Gate::Refuse)
    };
    let done = run_and_cut(&live, command, dirs, cutter).await;
    let ProviderOutcome::Failed { reason, detail, .. } = &done.outcome else {
        panic!("{:?}", done.outcome)
    };
    assert_eq!(*reason, FailureReason::ProviderCrashed);
    assert!(detail.contains("event stream broke"), "{detail}");
    assert!(detail.contains("re-subscribing failed 5 times"), "{detail}");
    assert_eq!(proxy.subscriptions(), 6);
    assert!(!resubscribed(&done.events));
    assert!(processes_in(&workspace).is_empty());
}
