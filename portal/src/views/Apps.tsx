import { pretty } from "../components/Timeline";
import { ErrorNote, Loading } from "../components/common";
import { Link } from "../router";
import { Time } from "../time";
import { useApi } from "../useApi";
import type { AppView, RuntimeDefaults } from "../types";

export function Apps() {
  const { data, error } = useApi<{ apps: AppView[] }>("/api/apps");
  return (
    <main id="main">
      <h1>Apps</h1>
      <ErrorNote error={error} />
      {!data && !error ? <Loading what="apps" /> : null}
      {data && data.apps.length === 0 ? <p className="muted">No app is registered (or none you are a member of).</p> : null}
      <ul className="cards">
        {data?.apps.map((app) => (
          <li key={app.appId} className="card">
            <h2>
              <Link to={`/apps/${encodeURIComponent(app.appId)}`}>{app.name || app.appId}</Link>
            </h2>
            <p className="muted">
              <code>{app.appId}</code> · {app.runtimeDefaults.provider ?? "default provider"}
              {app.runtimeDefaults.model ? ` · ${app.runtimeDefaults.model}` : ""} · {Object.keys(app.executionProfiles).length} profile(s)
            </p>
          </li>
        ))}
      </ul>
    </main>
  );
}

export function AppDetail({ appId }: { appId: string }) {
  const { data: app, error } = useApi<AppView>(`/api/apps/${encodeURIComponent(appId)}`);
  return (
    <main id="main">
      <p>
        <Link to="/apps">← Apps</Link>
      </p>
      <ErrorNote error={error} />
      {!app && !error ? <Loading what="the app" /> : null}
      {app ? (
        <>
          <h1>{app.name || app.appId}</h1>
          <p className="muted">
            <code>{app.appId}</code> · registered <Time iso={app.createdAt} /> · updated <Time iso={app.updatedAt} />
          </p>
          <p>
            <Link className="button primary" to={`/start?app=${encodeURIComponent(app.appId)}`}>
              Start a run in this app
            </Link>{" "}
            <Link to={`/runs?appId=${encodeURIComponent(app.appId)}`}>Its runs</Link>
          </p>
          <h2>Runtime defaults</h2>
          <Defaults defaults={app.runtimeDefaults} />
          <h2>Execution profiles</h2>
          {Object.keys(app.executionProfiles).length === 0 ? <p className="muted">None.</p> : null}
          {Object.entries(app.executionProfiles).map(([name, profile]) => (
            <section key={name} className="card">
              <h3>{name}</h3>
              <Defaults defaults={profile} />
            </section>
          ))}
        </>
      ) : null}
    </main>
  );
}

function Defaults({ defaults }: { defaults: RuntimeDefaults }) {
  const options = defaults.providerOptions ?? {};
  return (
    <dl className="facts">
      <dt>Provider</dt>
      <dd>{defaults.provider ?? "—"}</dd>
      <dt>Model</dt>
      <dd>{defaults.model ?? "—"}</dd>
      <dt>Credential variables</dt>
      <dd>{defaults.credentialEnv && defaults.credentialEnv.length > 0 ? defaults.credentialEnv.map((v) => <code key={v}>{v} </code>) : "—"}</dd>
      <dt>Timeout</dt>
      <dd>{defaults.timeoutMs ? `${(defaults.timeoutMs / 1000).toLocaleString()} s` : "—"}</dd>
      <dt>Provider options</dt>
      <dd>{Object.keys(options).length > 0 ? <pre>{pretty(options)}</pre> : "—"}</dd>
    </dl>
  );
}
