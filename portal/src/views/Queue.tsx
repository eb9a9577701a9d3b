import { ErrorNote, Loading, shortId, StatusBadge } from "../components/common";
import { Link } from "../router";
import { Time } from "../time";
import { useApi } from "../useApi";
import type { RunQueueView } from "../types";

const REASONS: Record<string, string> = {
  no_executor: "no executor is running",
  no_executor_for_provider: "no executor offers this provider",
  all_executors_full: "every executor for it is busy",
  all_executors_draining: "every executor for it is shutting down",
};

export function Queue() {
  const { data, error } = useApi<RunQueueView>("/api/run-queue", 2000);
  return (
    <main id="main">
      <h1>Run queue</h1>
      <ErrorNote error={error} />
      {!data && !error ? <Loading what="the queue" /> : null}
      {data ? (
        <>
          <dl className="facts counts">
            <dt>Waiting to be claimed</dt>
            <dd data-testid="queue-pending">{data.pending}</dd>
            <dt>Being dispatched</dt>
            <dd data-testid="queue-in-flight">{data.inFlight}</dd>
          </dl>
          {data.runs.length === 0 ? (
            <p className="muted">No run is waiting for an executor.</p>
          ) : (
            <table className="runs">
              <caption className="visually-hidden">Runs waiting for an executor, oldest first</caption>
              <thead>
                <tr>
                  <th scope="col">Created</th>
                  <th scope="col">Run</th>
                  <th scope="col">Provider</th>
                  <th scope="col">Status</th>
                  <th scope="col">Why it waits</th>
                </tr>
              </thead>
              <tbody>
                {data.runs.map((run) => (
                  <tr key={run.runId}>
                    <td data-label="Created">
                      <Time iso={run.createdAt} />
                    </td>
                    <td data-label="Run">
                      <Link to={`/runs/${run.runId}`}>{shortId(run.runId)}</Link>
                    </td>
                    <td data-label="Provider">{run.provider}</td>
                    <td data-label="Status">
                      <StatusBadge status={run.status} />
                    </td>
                    <td data-label="Why it waits">
                      {run.waitingReason ? REASONS[run.waitingReason] ?? run.waitingReason : "a slot is free; it is about to start"}
                      {run.waitingDetail ? <span className="muted"> — {run.waitingDetail}</span> : null}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      ) : null}
    </main>
  );
}
