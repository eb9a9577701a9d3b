import { useEffect, useRef, useState, type FormEvent } from "react";
import { ApiError, post, query } from "../api";
import { canAct, ErrorNote, shortId, StatusBadge } from "../components/common";
import { Details, EventLog, Timeline } from "../components/Timeline";
import { describeReason } from "../reasons";
import { Link, navigate } from "../router";
import type { RequestItem } from "../stream/reducer";
import { useRunStream, type Connection } from "../stream/useRunStream";
import { Time } from "../time";
import { useApi } from "../useApi";
import { TERMINAL, type Evidence, type Role, type RunView as Run, type StartRunResponse } from "../types";

export function RunView({ runId, role }: { runId: string; role: Role }) {
  const { state, connection } = useRunStream(runId);
  const run = useApi<Run>(`/api/runs/${encodeURIComponent(runId)}`);
  const conversation = useApi<{ runs: Run[] }>(
    run.data ? `/api/runs${query({ conversationId: run.data.conversationId, limit: 50 })}` : null,
  );
  const [tab, setTab] = useState<"conversation" | "events">("conversation");
  const [actionError, setActionError] = useState<string | null>(null);
  const [stopping, setStopping] = useState(false);

  // The projection catches up with the stream: read the run again when its status moves.
  const reload = run.reload;
  useEffect(() => {
    if (state.status) reload();
  }, [state.status, reload]);

  const status = state.status ?? run.data?.status ?? null;
  const finished = status !== null && TERMINAL.has(status);
  const actor = canAct(role);
  const pending = state.pending
    .map((id) => state.items[state.index.requests.get(id) ?? -1])
    .filter((item): item is RequestItem => item?.kind === "request");

  const stop = async () => {
    setActionError(null);
    setStopping(true);
    try {
      await post(`/api/runs/${encodeURIComponent(runId)}/stop`, {});
    } catch (e) {
      setActionError(e instanceof ApiError ? e.message : String(e));
      setStopping(false);
    }
  };

  const completed = state.completed;
  const failureReason = completed?.reason ?? run.data?.failureReason ?? null;
  const failureDetail = completed?.detail ?? run.data?.failureDetail ?? null;
  const evidence: Evidence | null = completed?.evidence ?? run.data?.evidence ?? null;
  const others = conversation.data?.runs.filter((r) => r.runId !== runId) ?? [];

  return (
    <main id="main" className="run-view">
      <p>
        <Link to="/runs">← Runs</Link>
      </p>
      <header className="run-header">
        <div className="title-row">
          <h1>
            Run <code title={runId}>{shortId(runId)}</code>
          </h1>
          {status ? <StatusBadge status={status} /> : null}
          <ConnectionBadge connection={connection} />
        </div>
        <dl className="facts run-facts">
          <dt>App</dt>
          <dd>{run.data?.appId ? <Link to={`/apps/${encodeURIComponent(run.data.appId)}`}>{run.data.appId}</Link> : "—"}</dd>
          <dt>Provider</dt>
          <dd>
            {run.data?.provider ?? "…"}
            {run.data?.model ? ` · ${run.data.model}` : ""}
            {run.data?.executionProfile ? ` · profile ${run.data.executionProfile}` : ""}
          </dd>
          <dt>Created</dt>
          <dd>
            <Time iso={run.data?.createdAt} style="full" />
          </dd>
          {run.data?.completedAt ? (
            <>
              <dt>Finished</dt>
              <dd>
                <Time iso={run.data.completedAt} style="full" />
              </dd>
            </>
          ) : null}
          <dt>Usage</dt>
          <dd>
            {state.usage.inputTokens.toLocaleString()} input / {state.usage.outputTokens.toLocaleString()} output tokens
          </dd>
          <dt>Events</dt>
          <dd data-testid="event-count">{state.frames.length.toLocaleString()}</dd>
        </dl>
        {actor && !finished ? (
          <div className="actions">
            <button type="button" className="danger" onClick={stop} disabled={stopping}>
              {stopping ? "Stopping…" : "Stop run"}
            </button>
          </div>
        ) : null}
        <ErrorNote error={run.error && run.error.status !== 404 ? run.error : null}>The run's record could not be loaded.</ErrorNote>
        {run.error?.status === 404 ? (
          <p className="error" role="alert">
            This run does not exist, or you may not see it.
          </p>
        ) : null}
        {actionError ? (
          <p className="error" role="alert">
            {actionError}
          </p>
        ) : null}
        {connection.phase === "failed" && connection.message ? (
          <p className="error" role="alert">
            The stream stopped: {connection.message}
          </p>
        ) : null}
      </header>

      {pending.length > 0 ? (
        <section className="decisions" aria-labelledby="decisions-title">
          <h2 id="decisions-title">Waiting for a decision</h2>
          {pending.map((request) => (
            <Decision key={request.requestId} runId={runId} request={request} canDecide={actor} />
          ))}
        </section>
      ) : null}

      {finished && status !== "succeeded" ? (
        <section className="failure" aria-labelledby="failure-title" data-testid="failure">
          <h2 id="failure-title">Why it {status === "stopped" ? "stopped" : status === "timed_out" ? "timed out" : "failed"}</h2>
          {failureReason ? (
            <p>
              <code data-testid="failure-reason">{failureReason}</code> {describeReason(failureReason)}
            </p>
          ) : null}
          {failureDetail ? <p className="detail">{failureDetail}</p> : null}
          <EvidenceView evidence={evidence} />
        </section>
      ) : null}

      <div className="tabs" role="tablist" aria-label="Run view">
        <button type="button" role="tab" id="tab-conversation" aria-controls="panel-conversation" aria-selected={tab === "conversation"} onClick={() => setTab("conversation")}>
          Conversation
        </button>
        <button type="button" role="tab" id="tab-events" aria-controls="panel-events" aria-selected={tab === "events"} onClick={() => setTab("events")}>
          Events ({state.frames.length.toLocaleString()})
        </button>
      </div>
      <section id="panel-conversation" role="tabpanel" aria-labelledby="tab-conversation" hidden={tab !== "conversation"}>
        {tab === "conversation" ? <Timeline items={state.items} /> : null}
      </section>
      <section id="panel-events" role="tabpanel" aria-labelledby="tab-events" hidden={tab !== "events"}>
        {tab === "events" ? <EventLog frames={state.frames} /> : null}
      </section>
      {state.duplicates > 0 ? (
        <p className="muted" data-testid="duplicates">
          {state.duplicates} repeated event(s) received and ignored.
        </p>
      ) : null}

      {finished && actor ? <FollowUp runId={runId} /> : null}
      {others.length > 0 ? (
        <section aria-labelledby="conversation-title">
          <h2 id="conversation-title">Other runs of this conversation</h2>
          <ul className="conversation-runs">
            {others.map((r) => (
              <li key={r.runId}>
                <Link to={`/runs/${r.runId}`}>{shortId(r.runId)}</Link> <StatusBadge status={r.status} /> <Time iso={r.createdAt} />
              </li>
            ))}
          </ul>
        </section>
      ) : null}
      <p className="visually-hidden" aria-live="polite">
        {status ? `Run ${status.replace(/_/g, " ")}` : ""}
        {pending.length > 0 ? `; ${pending.length} request(s) wait for a decision` : ""}
      </p>
    </main>
  );
}

function ConnectionBadge({ connection }: { connection: Connection }) {
  let text: string;
  let kind = "";
  switch (connection.phase) {
    case "connecting":
      text = "Connecting…";
      break;
    case "live":
      if (connection.reconnects > 0) {
        text = `Reconnected — resumed after event #${connection.resumedAfter}`;
        kind = "ok";
      } else if (connection.fromCache > 0) {
        text = `Live — resumed after event #${connection.resumedAfter}`;
        kind = "ok";
      } else {
        text = "Live";
        kind = "ok";
      }
      break;
    case "reconnecting":
      text = "Connection lost — reconnecting…";
      kind = "warn";
      break;
    case "ended":
      text = connection.reconnects > 0 ? `Complete (reconnected ${connection.reconnects}×)` : "Complete";
      break;
    case "failed":
      text = "Stream stopped";
      kind = "warn";
      break;
  }
  return (
    <span className={`badge connection ${kind}`} role="status" data-testid="connection" data-phase={connection.phase} data-reconnects={connection.reconnects}>
      {text}
    </span>
  );
}

function Decision({ runId, request, canDecide }: { runId: string; request: RequestItem; canDecide: boolean }) {
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState<null | "approve" | "deny">(null);
  const [error, setError] = useState<string | null>(null);
  const decide = async (decision: "approve" | "deny") => {
    setBusy(decision);
    setError(null);
    try {
      await post(`/api/runs/${encodeURIComponent(runId)}/human-loop/reply`, {
        requestId: request.requestId,
        decision,
        message: message.trim() || undefined,
      });
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
      setBusy(null);
    }
  };
  const id = `decision-${request.requestId}`;
  return (
    <article className="decision card" aria-labelledby={`${id}-prompt`} data-request-id={request.requestId}>
      <p id={`${id}-prompt`}>
        <span className="badge">{request.requestKind}</span> <strong>{request.prompt}</strong>
      </p>
      <Details details={request.details} />
      {canDecide ? (
        <>
          <label htmlFor={`${id}-message`}>Message to the agent (optional)</label>
          <input id={`${id}-message`} value={message} onChange={(e) => setMessage(e.target.value)} />
          <div className="actions">
            <button type="button" className="primary" onClick={() => decide("approve")} disabled={busy !== null}>
              {busy === "approve" ? "Approving…" : "Approve"}
            </button>
            <button type="button" className="danger" onClick={() => decide("deny")} disabled={busy !== null}>
              {busy === "deny" ? "Denying…" : "Deny"}
            </button>
          </div>
        </>
      ) : (
        <p className="muted">Viewers cannot answer requests.</p>
      )}
      {error ? (
        <p className="error" role="alert">
          {error}
        </p>
      ) : null}
    </article>
  );
}

function EvidenceView({ evidence }: { evidence: Evidence | null }) {
  if (!evidence) return <p className="muted">No evidence was kept.</p>;
  const stderr = evidence.stderrTail ?? [];
  const raw = evidence.rawLines ?? [];
  return (
    <div className="evidence" data-testid="evidence">
      {typeof evidence.exitCode === "number" ? <p>Exit code {evidence.exitCode}</p> : null}
      {stderr.length > 0 ? (
        <details open>
          <summary>Standard error (last {stderr.length} lines)</summary>
          <pre>{stderr.join("\n")}</pre>
        </details>
      ) : null}
      {raw.length > 0 ? (
        <details open={stderr.length === 0}>
          <summary>Last protocol lines ({raw.length})</summary>
          <pre>{raw.join("\n")}</pre>
        </details>
      ) : null}
      {stderr.length === 0 && raw.length === 0 && typeof evidence.exitCode !== "number" ? <p className="muted">No evidence was kept.</p> : null}
    </div>
  );
}

function FollowUp({ runId }: { runId: string }) {
  const [prompt, setPrompt] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // One key per prompt: a retry of the same follow-up cannot start it twice.
  const key = useRef({ prompt: "", key: "" });
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    if (key.current.prompt !== prompt) key.current = { prompt, key: crypto.randomUUID() };
    try {
      const started = await post<StartRunResponse>("/api/runs/start", { parentRunId: runId, prompt }, { "idempotency-key": key.current.key });
      navigate(`/runs/${started.runId}`);
    } catch (e) {
      setError(e instanceof ApiError ? `${e.message} (${e.code})` : String(e));
      setBusy(false);
    }
  };
  return (
    <form className="follow-up" onSubmit={submit} aria-labelledby="follow-up-title">
      <h2 id="follow-up-title">Continue the conversation</h2>
      <label htmlFor="follow-up-prompt">Follow-up prompt</label>
      <textarea id="follow-up-prompt" value={prompt} onChange={(e) => setPrompt(e.target.value)} rows={3} required />
      {error ? (
        <p className="error" role="alert">
          {error}
        </p>
      ) : null}
      <button type="submit" className="primary" disabled={busy || prompt.trim() === ""}>
        {busy ? "Sending…" : "Send follow-up"}
      </button>
    </form>
  );
}
