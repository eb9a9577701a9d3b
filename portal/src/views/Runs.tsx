import { canAct, ErrorNote, Loading, shortId, StatusBadge } from "../components/common";
import { query } from "../api";
import { Link, navigate, type Location } from "../router";
import { Time, viewerZone } from "../time";
import { useApi } from "../useApi";
import { RUN_STATUSES, type AppView, type ProviderView, type Role, type RunView } from "../types";

const PAGE = 20;

/** Run history: filters and the page position live in the URL (shareable, back works). */
export function Runs({ location, role }: { location: Location; role: Role }) {
  const filters = {
    appId: location.search.get("appId") ?? "",
    status: location.search.get("status") ?? "",
    provider: location.search.get("provider") ?? "",
  };
  const before = location.search.get("before") ?? "";
  // One more than a page, to know whether an older page exists.
  const runs = useApi<{ runs: RunView[] }>(`/api/runs${query({ ...filters, before, limit: PAGE + 1 })}`, 5000);
  const apps = useApi<{ apps: AppView[] }>("/api/apps");
  const providers = useApi<{ providers: ProviderView[] }>("/api/providers");

  const go = (changes: Record<string, string>) => {
    const next = { ...filters, before, ...changes };
    navigate(`/runs${query(next)}`);
  };
  const shown = runs.data?.runs.slice(0, PAGE) ?? [];
  const hasOlder = (runs.data?.runs.length ?? 0) > PAGE;

  return (
    <main id="main">
      <div className="title-row">
        <h1>Runs</h1>
        {canAct(role) ? (
          <Link className="button primary" to="/start">
            Start a run
          </Link>
        ) : null}
      </div>
      <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter runs">
        <div className="field">
          <label htmlFor="filter-app">App</label>
          <select id="filter-app" value={filters.appId} onChange={(e) => go({ appId: e.target.value, before: "" })}>
            <option value="">All apps</option>
            {apps.data?.apps.map((a) => (
              <option key={a.appId} value={a.appId}>
                {a.appId}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="filter-status">Status</label>
          <select id="filter-status" value={filters.status} onChange={(e) => go({ status: e.target.value, before: "" })}>
            <option value="">Any status</option>
            {RUN_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s.replace(/_/g, " ")}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="filter-provider">Provider</label>
          <select id="filter-provider" value={filters.provider} onChange={(e) => go({ provider: e.target.value, before: "" })}>
            <option value="">Any provider</option>
            {providers.data?.providers.map((p) => (
              <option key={p.name} value={p.name}>
                {p.name}
              </option>
            ))}
          </select>
        </div>
      </form>
      <ErrorNote error={runs.error}>Runs could not be loaded.</ErrorNote>
      {!runs.data && !runs.error ? <Loading what="runs" /> : null}
      {runs.data && shown.length === 0 ? <p className="muted">No runs match.</p> : null}
      {shown.length > 0 ? (
        <table className="runs" data-testid="runs-table">
          <caption className="visually-hidden">Runs, newest first; times in {viewerZone()}</caption>
          <thead>
            <tr>
              <th scope="col">Created</th>
              <th scope="col">Run</th>
              <th scope="col">App</th>
              <th scope="col">Provider</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((run) => (
              <tr key={run.runId} data-run-id={run.runId}>
                <td data-label="Created">
                  <Time iso={run.createdAt} />
                </td>
                <td data-label="Run">
                  <Link to={`/runs/${run.runId}`}>
                    {shortId(run.runId)}
                    <span className="visually-hidden"> (run {run.runId})</span>
                  </Link>
                </td>
                <td data-label="App">{run.appId ?? <span className="muted">—</span>}</td>
                <td data-label="Provider">
                  {run.provider}
                  {run.model ? <span className="muted"> · {run.model}</span> : null}
                </td>
                <td data-label="Status">
                  <StatusBadge status={run.status} />
                  {run.failureReason ? <code className="reason"> {run.failureReason}</code> : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <nav className="pager" aria-label="Pages">
        <button type="button" onClick={() => go({ before: "" })} disabled={!before}>
          Back to newest
        </button>
        <button type="button" onClick={() => go({ before: shown[shown.length - 1]?.runId ?? "" })} disabled={!hasOlder}>
          Older
        </button>
      </nav>
    </main>
  );
}
